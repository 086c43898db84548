import { describe, expect, it } from 'vitest';
import { GEMV_MAX_M, gemv, type GemvPlan } from '../../src/kernels/gemv.ts';
import { uploadWeight } from '../../src/kernels/quantize.ts';
import { dequantizeRef, matmulRef, rowScaleWords, rowWords, WEIGHT_FORMATS, type GpuWeight, type WeightFormat } from '../../src/kernels/weights.ts';
import { LimitsTooSmallError, ShapeError } from '../../src/gpu/errors.ts';
import { createStorage } from '../../src/gpu/buffers.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import { closeTo, download, downloadU32, randomF32, run, testGpu, upload } from './gpu.ts';

/** What the GPU multiplies by: the stored weight read back and dequantized on the CPU. */
async function storedWeight(ctx: GpuContext, w: GpuWeight): Promise<Float32Array> {
  const dw = rowWords(w.format, w.K), sw = rowScaleWords(w.format, w.K);
  const data = new Uint32Array(w.N * dw), scales = new Uint32Array(w.N * sw);
  for (const s of w.shards) {
    data.set(await downloadU32(ctx, s.data, s.rows * dw), s.rowStart * dw);
    if (s.scales) scales.set(await downloadU32(ctx, s.scales, s.rows * sw), s.rowStart * sw);
  }
  return dequantizeRef(w.format, w.N, w.K, data, scales);
}

/**
 * Run gemv and compare with matmulRef(x, dequantized W). The kernel multiplies by exactly the
 * dequantized weight, so the tolerance covers only f32 summation order (and, for q4, the scale
 * factored out of each group of 8): error grows like sqrt(K) ulps of the terms, |x|, |w| <= 1.
 */
const checked = new Set<string>();

async function check(ctx: GpuContext, format: WeightFormat, M: number, N: number, K: number, plan: Partial<GemvPlan> = {}): Promise<void> {
  const w = await uploadWeight(ctx, randomF32(N * K, N * 31 + K), N, K, format, `w${N}x${K}`);
  const x = randomF32(M * K, M + K);
  const xb = upload(ctx, x);
  const yb = createStorage(ctx, M * N * 4, 'y');
  const dispatches = gemv(ctx, { x: xb, w, y: yb, M }, plan);
  // A WGSL error then names its line instead of "invalid pipeline". Once per variant: a second
  // getCompilationInfo() on the same module never resolves in this Chromium.
  if (!checked.has(dispatches[0].label)) await ctx.pipelines.check(dispatches[0].label);
  checked.add(dispatches[0].label);
  await run(ctx, dispatches);
  const want = matmulRef(x, await storedWeight(ctx, w), M, N, K);
  expect(closeTo(await download(ctx, yb, M * N), want, { atol: 1e-5 * Math.sqrt(K), rtol: 1e-4 }, `gemv ${format} M=${M} N=${N} K=${K}`)).toBeNull();
}

// Asked up front: it.skipIf needs the answer while the tests are collected.
const hasShaderF16 = (await testGpu()).features.shaderF16;

const SHAPES: [number, number, number][] = [[1, 1, 1], [1, 7, 33], [3, 65, 100], [8, 129, 257], [2, 50, 64], [5, 17, 31]];

describe('gemv', () => {
  for (const format of WEIGHT_FORMATS) {
    for (const [M, N, K] of SHAPES) {
      it(`matches the reference: ${format}, M=${M} N=${N} K=${K}`, async () => {
        await check(await testGpu(), format, M, N, K);
      });
    }
  }

  it('reads f16 subnormals, signs and q4 scales exactly', async () => {
    const ctx = await testGpu();
    // The kernels widen f16 with integer ops and a 2^112 rescale instead of unpack2x16float; check
    // the edge values against the reference with a one-hot x, so each output is a single weight.
    const K = 8, N = 8;
    const vals = [2 ** -24, -(2 ** -24), 3 * 2 ** -20, 2 ** -14, -(2 ** -14), 65504, -0.333, 1e-6];
    const wf = new Float32Array(N * K);
    for (let n = 0; n < N; n++) wf[n * K + n] = vals[n];
    for (const format of ['f16', 'q4'] as const) {
      const w = await uploadWeight(ctx, wf, N, K, format, `edge-${format}`);
      for (let k = 0; k < K; k++) {
        const x = new Float32Array(K);
        x[k] = 1;
        const xb = upload(ctx, x), yb = createStorage(ctx, N * 4, 'y');
        await run(ctx, gemv(ctx, { x: xb, w, y: yb, M: 1 }));
        // Exact: one nonzero product per output, no summation error.
        expect(Array.from(await download(ctx, yb, N))).toEqual(Array.from(matmulRef(x, await storedWeight(ctx, w), 1, N, K)));
      }
    }
  });

  it('uses one pipeline per (format, M) and one dispatch per shard', async () => {
    const ctx = await testGpu();
    const w = await uploadWeight(ctx, randomF32(12 * 8, 1), 12, 8, 'f16', 'w');
    const xb = upload(ctx, randomF32(8, 2)), yb = createStorage(ctx, 12 * 4, 'y');
    const a = gemv(ctx, { x: xb, w, y: yb, M: 1 });
    const b = gemv(ctx, { x: xb, w, y: yb, M: 1 });
    expect(a.length).toBe(1);
    expect(a[0].pipeline).toBe(b[0].pipeline);
    expect(a[0].label).toMatch(/^gemv_f16(_native)?_f32_m1_/);
  });

  // The fallback without subgroups: a device acquired with the feature turned off.
  for (const format of WEIGHT_FORMATS) {
    it(`workgroup-memory reduction matches too: ${format}`, async () => {
      const ctx = await testGpu({ disableFeatures: { subgroups: true } });
      expect(ctx.features.subgroups).toBe(false);
      await check(ctx, format, 3, 65, 100);
      await check(ctx, format, 8, 33, 70, { wg: 16, rows: 2 });
    });
  }

  it('reduces a workgroup wider than 4 invocations without subgroups', async () => {
    const ctx = await testGpu({ disableFeatures: { subgroups: true } });
    await check(ctx, 'q4', 2, 40, 300, { wg: 64, rows: 4 });
  });

  for (const format of WEIGHT_FORMATS) {
    it(`matches across shards under a small binding cap: ${format}`, async () => {
      const ctx = await testGpu({ limitsCap: { maxStorageBufferBindingSize: 4096 } });
      // 4096-byte bindings: f32 rows of 100 floats are 400 bytes, so 10 rows per shard.
      await check(ctx, format, 2, 70, 100);
    });
  }

  // SwiftShader has no shader-f16, so this only runs on real GPUs that have it.
  it.skipIf(!hasShaderF16)('native f16 variant matches the packed one', async () => {
    const ctx = await testGpu();
    for (const [M, N, K] of SHAPES) await check(ctx, 'f16', M, N, K, { f16: 'native' });
  });

  it('rejects bad shapes before dispatch', async () => {
    const ctx = await testGpu();
    const w = await uploadWeight(ctx, randomF32(6 * 10, 1), 6, 10, 'q4', 'w6x10');
    const xb = upload(ctx, randomF32(GEMV_MAX_M * 10 + 10, 2));
    const yb = createStorage(ctx, (GEMV_MAX_M + 1) * 6 * 4, 'y');
    const shapes = ctx.pipelines.size;
    expect(() => gemv(ctx, { x: xb, w, y: yb, M: 0 })).toThrow(ShapeError);
    expect(() => gemv(ctx, { x: xb, w, y: yb, M: 0 })).toThrow(/M = 0/);
    expect(() => gemv(ctx, { x: xb, w, y: yb, M: GEMV_MAX_M + 1 })).toThrow(ShapeError);
    expect(() => gemv(ctx, { x: xb, w, y: yb, M: GEMV_MAX_M + 1 })).toThrow(/M = 9/);
    const small = upload(ctx, randomF32(15, 3));
    expect(() => gemv(ctx, { x: small, w, y: yb, M: 2 })).toThrow(/x.*\[2, 10\]/);
    expect(() => gemv(ctx, { x: xb, w, y: xb, M: 1 })).toThrow(/alias/);
    // Plans that cannot work: a subgroup reduction over more than one subgroup, too much workgroup memory.
    if (ctx.features.subgroups) expect(() => gemv(ctx, { x: xb, w, y: yb, M: 1 }, { reduce: 'subgroup', wg: 256 })).toThrow(/wg = 256/);
    expect(() => gemv(ctx, { x: xb, w, y: yb, M: 8 }, { reduce: 'workgroup', wg: 64, rows: 128 })).toThrow(LimitsTooSmallError);
    expect(ctx.pipelines.size).toBe(shapes); // nothing was built
  });
});
