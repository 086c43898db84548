import { describe, expect, it } from 'vitest';
import { GEMV_MAX_M } from '../../src/kernels/gemv.ts';
import { chooseMatmul, matmul } from '../../src/kernels/matmul.ts';
import { gemm, GEMM_TILES, gemmVariant, chooseGemmTile, type GemmTile } from '../../src/kernels/gemm.ts';
import { matmulRef, WEIGHT_FORMATS } from '../../src/kernels/weights.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import { isCpuClassDevice, setKernelPlan } from '../../src/kernels/plan.ts';
import { LimitsTooSmallError, ShapeError } from '../../src/gpu/errors.ts';
import { closeTo, download, randomF32, run, testGpu, upload } from './gpu.ts';
import { makeWeight, type TestWeight } from './weight-helpers.ts';

/** A weight packed on the CPU, uploaded as shards of `split` rows, and what the GPU should multiply by. */
const SENTINEL = 12345; // y starts filled with it: an element the kernel forgets to write fails the check
const TAIL = 7; // extra elements past [M, N] that must keep the sentinel

/**
 * Run gemm and compare with matmulRef on the dequantized weight. The reference multiplies by the
 * exact values the kernel stages (dequantizeRef == the shader's unpacking), and sums in f64, so the
 * only difference is f32 rounding of the GPU's K-long sums in another order: about sqrt(K) * 2^-24
 * relative to sum |x·w| (≈ 1e-6 here for K ≤ 257, |x|, |w| ≤ 1). The tolerance holds for every
 * format for that reason; a wrong or missing term costs ~0.01-1, far above it.
 */
const TOL = { atol: 5e-5, rtol: 1e-5 };

async function checkGemm(ctx: GpuContext, tw: TestWeight, M: number, tile?: GemmTile): Promise<string[]> {
  const { N, K } = tw.weight;
  const x = randomF32(M * K, 1000 + M * 7 + K);
  const xb = upload(ctx, x, 'x');
  const yb = upload(ctx, new Float32Array(M * N + TAIL).fill(SENTINEL), 'y');
  const ds = gemm(ctx, { x: xb, w: tw.weight, y: yb, M }, { tile });
  await run(ctx, ds);
  const got = await download(ctx, yb, M * N + TAIL);
  expect(closeTo(got.subarray(0, M * N), matmulRef(x, tw.dequantized, M, N, K), TOL, `y[${M}, ${N}]`)).toBeNull();
  expect(Array.from(got.subarray(M * N))).toEqual(new Array(TAIL).fill(SENTINEL));
  return ds.map((d) => d.label);
}

const SHAPES: [number, number, number][] = [
  [9, 1, 1],
  [17, 33, 31],
  [64, 64, 64],
  [33, 70, 130],
  [100, 129, 257],
];

describe('gemm', () => {
  for (const format of WEIGHT_FORMATS) {
    for (const [M, N, K] of SHAPES) {
      it(`${format}: matches the reference, M=${M} N=${N} K=${K}`, async () => {
        const ctx = await testGpu();
        const labels = await checkGemm(ctx, makeWeight(ctx, format, N, K, N * 31 + K), M);
        expect(labels).toEqual([gemmVariant(format, chooseGemmTile(ctx.limits, M, N))]);
      });
    }

    // Every tile size on a shape that is a multiple of no tile dimension, with several tiles each way.
    for (const tile of GEMM_TILES) {
      it(`${format}: tile ${tile.tm}x${tile.tn} matches the reference, M=70 N=135 K=75`, async () => {
        const ctx = await testGpu();
        const labels = await checkGemm(ctx, makeWeight(ctx, format, 135, 75, 77), 70, tile);
        expect(labels).toEqual([`gemm_${format}_f32_t${tile.tm}x${tile.tn}_wg${(tile.tm / 4) * (tile.tn / 4)}`]);
      });
    }

    it(`${format}: two shards (37 + 33 rows) write their own column ranges`, async () => {
      const ctx = await testGpu();
      const tw = makeWeight(ctx, format, 70, 45, 5, [37, 33]);
      const labels = await checkGemm(ctx, tw, 19);
      expect(labels.length).toBe(2);
      // A forced large tile: one workgroup column per shard, both partly outside their shard.
      await checkGemm(ctx, tw, 19, GEMM_TILES[0]);
    });
  }

  it('reuses one pipeline per variant across calls and shards', async () => {
    const ctx = await testGpu();
    const tw = makeWeight(ctx, 'q4', 40, 40, 9, [20, 20]);
    const xb = upload(ctx, new Float32Array(40 * 40)), yb = upload(ctx, new Float32Array(40 * 40));
    const a = gemm(ctx, { x: xb, w: tw.weight, y: yb, M: 40 });
    const before = ctx.pipelines.size;
    const b = gemm(ctx, { x: xb, w: tw.weight, y: yb, M: 40 });
    expect(ctx.pipelines.size).toBe(before);
    expect(a[0].pipeline).toBe(a[1].pipeline);
    expect(b[0].pipeline).toBe(a[0].pipeline);
  });

  it('falls back to a smaller tile under small limits, and refuses limits below the smallest', async () => {
    const small = await testGpu({ limitsCap: { maxComputeWorkgroupStorageSize: 4096 } });
    const labels = await checkGemm(small, makeWeight(small, 'f16', 33, 20, 3), 40);
    expect(labels).toEqual(['gemm_f16_f32_t32x32_wg64']);
    expect(() => gemm(small, { x: upload(small, new Float32Array(64)), w: makeWeight(small, 'f32', 8, 8, 1).weight, y: upload(small, new Float32Array(64)), M: 8 }, { tile: GEMM_TILES[0] })).toThrow(/maxComputeWorkgroupStorageSize >= 8192/);

    const tiny = await testGpu({ limitsCap: { maxComputeInvocationsPerWorkgroup: 32 } });
    const tw = makeWeight(tiny, 'f32', 8, 8, 1);
    expect(() => gemm(tiny, { x: upload(tiny, new Float32Array(64)), w: tw.weight, y: upload(tiny, new Float32Array(64)), M: 8 })).toThrow(LimitsTooSmallError);
  });

  it('rejects bad shapes before dispatch', async () => {
    const ctx = await testGpu();
    const tw = makeWeight(ctx, 'q4', 10, 40, 2);
    const x = upload(ctx, new Float32Array(5 * 40)), y = upload(ctx, new Float32Array(5 * 10));
    const before = ctx.pipelines.size;
    expect(() => gemm(ctx, { x, w: tw.weight, y, M: 6 })).toThrow(ShapeError);
    expect(() => gemm(ctx, { x, w: tw.weight, y, M: 6 })).toThrow(/gemm: x .*\[6, 40\]/);
    expect(() => gemm(ctx, { x, w: tw.weight, y, M: 0 })).toThrow(/M = 0/);
    expect(() => gemm(ctx, { x, w: tw.weight, y: x, M: 5 })).toThrow(/gemm: y must not alias x/);
    const noScales = { ...tw.weight, shards: [{ ...tw.weight.shards[0], scales: undefined }] };
    expect(() => gemm(ctx, { x, w: noScales, y, M: 5 })).toThrow(/no scales/);
    const gap = { ...tw.weight, N: 11 };
    expect(() => gemm(ctx, { x, w: gap, y: upload(ctx, new Float32Array(5 * 11)), M: 5 })).toThrow(/cover 10 rows of \[11, 40\]/);
    expect(() => gemm(ctx, { x, w: tw.weight, y, M: 5 }, { tile: { tm: 30, tn: 32, tk: 16 } })).toThrow(/options.tile 30x32x16/);
    expect(ctx.pipelines.size).toBe(before);
  });
});

describe('matmul chooser', () => {
  it(`routes M <= ${GEMV_MAX_M} to GEMV and larger M to the tiled GEMM, or to the small-M GEMM on a CPU-class device (fused plan)`, async () => {
    const ctx = await testGpu();
    expect(chooseMatmul(1)).toBe('gemv');
    expect(chooseMatmul(GEMV_MAX_M)).toBe('gemv');
    expect(chooseMatmul(GEMV_MAX_M + 1)).toBe('gemm');
    const cpu = isCpuClassDevice(ctx);
    expect(chooseMatmul(GEMV_MAX_M + 1, ctx, 40)).toBe(cpu ? 'gemm-small' : 'gemm');
    expect(chooseMatmul(GEMV_MAX_M + 1, ctx, 41)).toBe('gemm'); // K % 4 != 0: the small GEMM reads vec4 rows
    const tw = makeWeight(ctx, 'q4', 20, 40, 4, [12, 8]);
    const M = GEMV_MAX_M + 1;
    const x = randomF32(M * 40, 8);
    const xb = upload(ctx, x), yb = upload(ctx, new Float32Array(M * 20));
    expect(matmul(ctx, { x: xb, w: tw.weight, y: yb, M: GEMV_MAX_M }).map((d) => d.label.slice(0, 5))).toEqual(['gemv_', 'gemv_']);
    for (const plan of ['unfused', 'fused'] as const) {
      setKernelPlan(ctx, plan);
      try {
        const ds = matmul(ctx, { x: xb, w: tw.weight, y: yb, M });
        const kind = plan === 'fused' && cpu ? 'linear' : 'gemm_';
        expect(ds.map((d) => d.label.slice(0, 5))).toEqual([kind.slice(0, 5), kind.slice(0, 5)]);
        await run(ctx, ds);
        expect(closeTo(await download(ctx, yb, M * 20), matmulRef(x, tw.dequantized, M, 20, 40), TOL)).toBeNull();
      } finally {
        setKernelPlan(ctx, 'fused');
      }
    }
  });
});
