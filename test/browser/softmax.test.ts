import { describe, expect, it } from 'vitest';
import { softmax, softmaxRef } from '../../src/kernels/softmax.ts';
import { ShapeError } from '../../src/gpu/errors.ts';
import { closeTo, download, randomF32, run, testGpu, upload } from './gpu.ts';

// f32: exp() on the GPU is accurate to a few ulp and the row sum is accumulated in a different
// order than the f64 reference; probabilities are <= 1, so 1e-6 absolute + 1e-5 relative covers it.
const F32_TOL = { atol: 1e-6, rtol: 1e-5 };

const fallback = { disableFeatures: { subgroups: true } };

describe('softmax', () => {
  for (const [name, options] of [['subgroups if available', {}], ['workgroup-memory fallback', fallback]] as const) {
    describe(name, () => {
      for (const [rows, cols] of [[1, 1], [3, 7], [5, 33], [2, 100], [7, 1000], [1, 4099]]) {
        it(`out of place [${rows}, ${cols}]`, async () => {
          const ctx = await testGpu(options);
          const x = randomF32(rows * cols, rows * 31 + cols, 8);
          const xb = upload(ctx, x), yb = upload(ctx, new Float32Array(rows * cols));
          await run(ctx, softmax(ctx, { x: xb, y: yb, rows, cols }));
          expect(closeTo(await download(ctx, yb, rows * cols), softmaxRef(x, rows, cols), F32_TOL)).toBeNull();
          // the input is left alone
          expect(closeTo(await download(ctx, xb, rows * cols), x, { atol: 0, rtol: 0 })).toBeNull();
        });
      }
      it('huge logits over many columns (a wrong row max would overflow exp)', async () => {
        const ctx = await testGpu(options);
        const rows = 3, cols = 3000;
        const x = randomF32(rows * cols, 77, 5000);
        const xb = upload(ctx, x);
        await run(ctx, softmax(ctx, { x: xb, rows, cols }));
        expect(closeTo(await download(ctx, xb, rows * cols), softmaxRef(x, rows, cols), F32_TOL)).toBeNull();
      });
      it('in place with a scalar temperature', async () => {
        const ctx = await testGpu(options);
        const rows = 4, cols = 257;
        const x = randomF32(rows * cols, 5, 20);
        const xb = upload(ctx, x);
        await run(ctx, softmax(ctx, { x: xb, rows, cols, temperature: 0.7 }));
        expect(closeTo(await download(ctx, xb, rows * cols), softmaxRef(x, rows, cols, 0.7), F32_TOL)).toBeNull();
      });
      it('per-row temperatures from a buffer, reused after the buffer changes', async () => {
        const ctx = await testGpu(options);
        const rows = 3, cols = 50;
        const x = randomF32(rows * cols, 9, 4);
        const temps = new Float32Array([0.5, 1, 2.5]);
        const xb = upload(ctx, x), yb = upload(ctx, new Float32Array(rows * cols)), tb = upload(ctx, temps);
        const d = softmax(ctx, { x: xb, y: yb, rows, cols, temperature: tb });
        await run(ctx, d);
        expect(closeTo(await download(ctx, yb, rows * cols), softmaxRef(x, rows, cols, temps), F32_TOL)).toBeNull();
        const temps2 = new Float32Array([3, 0.25, 1]);
        ctx.device.queue.writeBuffer(tb, 0, temps2);
        await run(ctx, d);
        expect(closeTo(await download(ctx, yb, rows * cols), softmaxRef(x, rows, cols, temps2), F32_TOL)).toBeNull();
      });
    });
  }
  it('uses the subgroup variant exactly when the device has subgroups', async () => {
    for (const options of [{}, fallback]) {
      const ctx = await testGpu(options);
      const d = softmax(ctx, { x: upload(ctx, new Float32Array(4)), rows: 1, cols: 4 });
      expect(d.label.endsWith(ctx.features.subgroups ? '_sg' : '_wgmem')).toBe(true);
    }
    expect((await testGpu(fallback)).features.subgroups).toBe(false);
  });
  it('stays finite for huge logits and ignores -inf entries', async () => {
    const ctx = await testGpu();
    const x = new Float32Array([1e4, 1e4 - 1, -Infinity, 0, -1e4, -Infinity, 5, 5]);
    const xb = upload(ctx, x);
    await run(ctx, softmax(ctx, { x: xb, rows: 2, cols: 4 }));
    const y = await download(ctx, xb, 8);
    expect(closeTo(y, softmaxRef(x, 2, 4), F32_TOL)).toBeNull();
    expect(y[2]).toBe(0);
  });
  it('rejects bad shapes and temperatures before dispatch', async () => {
    const ctx = await testGpu();
    const xb = upload(ctx, new Float32Array(12));
    expect(() => softmax(ctx, { x: xb, rows: 4, cols: 4 })).toThrow(ShapeError);
    expect(() => softmax(ctx, { x: xb, rows: 4, cols: 4 })).toThrow(/x.*\[4, 4\]/);
    expect(() => softmax(ctx, { x: xb, rows: 0, cols: 4 })).toThrow(/rows = 0/);
    expect(() => softmax(ctx, { x: xb, rows: 3, cols: 4, temperature: 0 })).toThrow(ShapeError);
    // 8 rows need 8 temperatures; a 16-byte buffer (the smallest createStorage makes) holds 4
    const x8 = upload(ctx, new Float32Array(32));
    expect(() => softmax(ctx, { x: x8, rows: 8, cols: 4, temperature: upload(ctx, new Float32Array(4)) })).toThrow(/temperature.*\[8\]/);
  });
});
