import { describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/device.ts';
import { isCpuClassDevice, reductionStyle, setReductionStyle } from '../../src/kernels/plan.ts';
import { canReduceWithSubgroups, rmsNorm, rmsNormRef } from '../../src/kernels/rmsnorm.ts';
import { ShapeError } from '../../src/gpu/errors.ts';
import { closeTo, download, randomF32, run, testGpu, upload } from './gpu.ts';

// f32 everywhere; the GPU sums squares in f32 in a different order than the f64 reference and
// uses inverseSqrt (a few ulp): relative error ~1e-6 for dim up to a few thousand.
const TOL = { atol: 1e-6, rtol: 2e-5 };

const devices = [
  { name: 'default (subgroups when available)', options: {} },
  { name: 'workgroup-memory fallback', options: { disableFeatures: { subgroups: true } } },
];

describe('rmsnorm', () => {
  for (const dev of devices) {
    describe(dev.name, () => {
      for (const [T, dim] of [[1, 1], [3, 7], [2, 64], [1, 576], [5, 2049]] as const) {
        it(`matches the reference, T=${T} dim=${dim}`, async () => {
          const ctx = await testGpu(dev.options);
          const x = randomF32(T * dim, T * 100 + dim, 3), w = randomF32(dim, dim + 7, 1.5);
          const eps = 1e-5;
          const xb = upload(ctx, x), wb = upload(ctx, w), yb = upload(ctx, new Float32Array(T * dim));
          await run(ctx, rmsNorm(ctx, { x: xb, weight: wb, y: yb, T, dim, eps }));
          expect(closeTo(await download(ctx, yb, T * dim), rmsNormRef(x, w, T, dim, eps), TOL)).toBeNull();
        });
      }
    });
  }
  it('picks the variant its device and plan allow', async () => {
    const fallback = await testGpu(devices[1].options);
    expect(canReduceWithSubgroups(fallback)).toBe(false);
    const norm = (ctx: GpuContext) => rmsNorm(ctx, { x: upload(ctx, new Float32Array(4)), weight: upload(ctx, new Float32Array(4)), y: upload(ctx, new Float32Array(4)), T: 1, dim: 4, eps: 1e-6 }).label;
    const ctx = await testGpu();
    try {
      setReductionStyle(fallback, 'workgroup');
      expect(norm(fallback)).toBe('rmsnorm_f32_wg256_wgmem');
      // Chromium with SwiftShader has subgroups and the subgroup_id builtin: the fast path is tested too.
      setReductionStyle(ctx, 'workgroup');
      expect(norm(ctx)).toBe(canReduceWithSubgroups(ctx) ? 'rmsnorm_f32_wg256_sg' : 'rmsnorm_f32_wg256_wgmem');
      setReductionStyle(ctx, 'serial');
      expect(norm(ctx)).toBe('rmsnorm_rows_f32_wg64');
    } finally {
      setReductionStyle(fallback, undefined);
      setReductionStyle(ctx, undefined);
    }
    // By default: serial on a CPU-class device under the fused plan, the workgroup reduction elsewhere.
    expect(reductionStyle(ctx)).toBe(isCpuClassDevice(ctx) ? 'serial' : 'workgroup');
  });
  it('eps dominates an all-zero row (no NaN)', async () => {
    const ctx = await testGpu();
    const xb = upload(ctx, new Float32Array(7)), wb = upload(ctx, new Float32Array(7).fill(1)), yb = upload(ctx, new Float32Array(7).fill(5));
    await run(ctx, rmsNorm(ctx, { x: xb, weight: wb, y: yb, T: 1, dim: 7, eps: 1e-6 }));
    expect(Array.from(await download(ctx, yb, 7))).toEqual(new Array(7).fill(0));
  });
  it('rejects bad shapes before dispatch', async () => {
    const ctx = await testGpu();
    const xb = upload(ctx, new Float32Array(12)), wb = upload(ctx, new Float32Array(4)), yb = upload(ctx, new Float32Array(12));
    expect(() => rmsNorm(ctx, { x: xb, weight: wb, y: yb, T: 3, dim: 6, eps: 1e-5 })).toThrow(ShapeError);
    expect(() => rmsNorm(ctx, { x: xb, weight: wb, y: yb, T: 3, dim: 6, eps: 1e-5 })).toThrow(/x.*\[3, 6\]/);
    expect(() => rmsNorm(ctx, { x: xb, weight: wb, y: yb, T: 3, dim: 4, eps: 1e-5 })).not.toThrow();
    expect(() => rmsNorm(ctx, { x: xb, weight: wb, y: yb, T: 2, dim: 5, eps: 1e-5 })).toThrow(/weight.*\[5\]/);
    expect(() => rmsNorm(ctx, { x: xb, weight: wb, y: xb, T: 3, dim: 4, eps: 1e-5 })).toThrow(/alias/);
    expect(() => rmsNorm(ctx, { x: xb, weight: wb, y: yb, T: 0, dim: 4, eps: 1e-5 })).toThrow(/T = 0/);
  });
});
