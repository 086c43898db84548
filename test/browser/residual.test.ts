import { describe, expect, it } from 'vitest';
import { biasAdd, biasAddRef, gatherRows, gatherRowsRef, residualAdd, residualAddRef } from '../../src/kernels/residual.ts';
import { ShapeError } from '../../src/gpu/errors.ts';
import { closeTo, download, randomF32, run, testGpu, upload } from './gpu.ts';

describe('residual add', () => {
  for (const n of [1, 7, 256, 1000, 4099]) {
    it(`matches the reference, n=${n}`, async () => {
      const ctx = await testGpu();
      const h = randomF32(n, n), d = randomF32(n, n + 1);
      const hb = upload(ctx, h), db = upload(ctx, d);
      await run(ctx, residualAdd(ctx, { h: hb, delta: db, n }));
      // f32 add is exact in both: tolerance only for the last ulp.
      expect(closeTo(await download(ctx, hb, n), residualAddRef(h, d), { atol: 1e-7, rtol: 1e-7 })).toBeNull();
    });
  }
  it('rejects a buffer too small before dispatch', async () => {
    const ctx = await testGpu();
    const hb = upload(ctx, new Float32Array(8)), db = upload(ctx, new Float32Array(4));
    expect(() => residualAdd(ctx, { h: hb, delta: db, n: 8 })).toThrow(ShapeError);
    expect(() => residualAdd(ctx, { h: hb, delta: db, n: 8 })).toThrow(/delta.*\[8\]/);
    expect(() => residualAdd(ctx, { h: hb, delta: db, n: 0 })).toThrow(/n = 0/);
  });
});

describe('bias add', () => {
  for (const [T, N] of [[1, 1], [3, 7], [5, 130], [2, 1000]]) {
    it(`matches the reference, T=${T} N=${N}`, async () => {
      const ctx = await testGpu();
      const y = randomF32(T * N, T + N), b = randomF32(N, 7 * N);
      const yb = upload(ctx, y), bb = upload(ctx, b);
      await run(ctx, biasAdd(ctx, { y: yb, bias: bb, T, N }));
      expect(closeTo(await download(ctx, yb, T * N), biasAddRef(y, b, T, N), { atol: 1e-7, rtol: 1e-7 })).toBeNull();
    });
  }
  it('rejects a short bias before dispatch', async () => {
    const ctx = await testGpu();
    expect(() => biasAdd(ctx, { y: upload(ctx, new Float32Array(12)), bias: upload(ctx, new Float32Array(4)), T: 2, N: 6 })).toThrow(/biasAdd: bias buffer of 16 bytes is too small for shape \[6\]/);
  });
});

describe('gather rows', () => {
  it('picks the rows named, exactly', async () => {
    const ctx = await testGpu();
    const T = 9, D = 37;
    const x = randomF32(T * D, 3);
    const rows = Uint32Array.from([8, 0, 4, 4, 20]); // 20 >= T reads the last row
    const out = ctx.device.createBuffer({ size: rows.length * D * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    await run(ctx, gatherRows(ctx, { x: upload(ctx, x), rows: upload(ctx, rows), out, T, D, R: rows.length }));
    expect(Array.from(await download(ctx, out, rows.length * D))).toEqual(Array.from(gatherRowsRef(x, rows, T, D)));
  });
  it('rejects an output too small', async () => {
    const ctx = await testGpu();
    expect(() => gatherRows(ctx, { x: upload(ctx, new Float32Array(8)), rows: upload(ctx, new Uint32Array(2)), out: upload(ctx, new Float32Array(3)), T: 2, D: 4, R: 2 })).toThrow(ShapeError);
  });
});
