import { describe, expect, it } from 'vitest';
import { residualAdd, residualAddRef } from '../../src/kernels/residual.ts';
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
