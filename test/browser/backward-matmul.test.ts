/**
 * matmulInputGrad (dx = dy · W through a frozen weight) against matmulInputGradRef on the weight
 * the kernel actually reads (dequantizeRef of the packed data), in every format, single- and
 * multi-shard. The GPU sums N products in f32 in another order than the f64 reference: about
 * sqrt(N) · 2⁻²⁴ relative to Σ|dy·w| (< 1e-5 for N ≤ 70, |dy|, |w| ≤ 1), so TOL holds for every
 * format; a dropped shard or a wrong element costs 0.01-1.
 */
import { describe, expect, it } from 'vitest';
import { matmulInputGrad, matmulInputGradRef, matmulInputGradVariantFor } from '../../src/kernels/matmul-bwd.ts';
import { uploadWeight } from '../../src/kernels/quantize.ts';
import { dequantizeRef, packF16Ref, quantizeQ4Ref, WEIGHT_FORMATS } from '../../src/kernels/weights.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import { ShapeError } from '../../src/gpu/errors.ts';
import { closeTo, download, randomF32, run, testGpu, upload } from './gpu.ts';
import { makeWeight, type TestWeight } from './weight-helpers.ts';

const TOL = { atol: 5e-5, rtol: 1e-5 };
const SENTINEL = 12345;
const TAIL = 5; // elements past [M, K] that must keep the sentinel

async function check(ctx: GpuContext, tw: TestWeight, M: number, seed: number): Promise<void> {
  const { N, K } = tw.weight;
  const dy = randomF32(M * N, seed);
  const dxb = upload(ctx, new Float32Array(M * K + TAIL).fill(SENTINEL), 'dx');
  await run(ctx, matmulInputGrad(ctx, { dy: upload(ctx, dy, 'dy'), w: tw.weight, dx: dxb, M }));
  const got = await download(ctx, dxb, M * K + TAIL);
  expect(closeTo(got.subarray(0, M * K), matmulInputGradRef(dy, tw.dequantized, M, N, K), TOL, `dx[${M}, ${K}]`)).toBeNull();
  expect(Array.from(got.subarray(M * K))).toEqual(new Array(TAIL).fill(SENTINEL));
}

const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [5, 17, 33],
  [17, 70, 100],
  [33, 7, 65],
];

describe('matmulInputGrad', () => {
  for (const format of WEIGHT_FORMATS) {
    for (const [M, N, K] of SHAPES) {
      it(`${format}: matches the reference, M=${M} N=${N} K=${K}`, async () => {
        const ctx = await testGpu();
        await check(ctx, makeWeight(ctx, format, N, K, N * 13 + K), M, M + N + K);
      });
    }
    it(`${format}: hand-built shards [16, 1, 30, 23] add up (N=70, K=100)`, async () => {
      const ctx = await testGpu();
      const tw = makeWeight(ctx, format, 70, 100, 77, [16, 1, 30, 23]);
      expect(matmulInputGrad(ctx, { dy: upload(ctx, new Float32Array(5 * 70)), w: tw.weight, dx: upload(ctx, new Float32Array(5 * 100)), M: 5 }).map((d) => d.label)).toEqual(
        new Array(4).fill(matmulInputGradVariantFor(ctx, tw.weight, 5)),
      );
      await check(ctx, tw, 5, 78);
    });
    it(`${format}: weights sharded by uploadWeight under a 4 KiB binding cap`, async () => {
      const ctx = await testGpu({ limitsCap: { maxStorageBufferBindingSize: 4096 } });
      const [N, K, M] = [70, 100, 9];
      const w = randomF32(N * K, 91);
      const weight = await uploadWeight(ctx, w, N, K, format, `capped-${format}`);
      expect(weight.shards.length).toBeGreaterThan(1);
      // What the GPU packers produce is specified by the CPU packers (tested bit-exact elsewhere).
      const deq =
        format === 'f32' ? w : format === 'f16' ? dequantizeRef('f16', N, K, packF16Ref(w, N, K)) : (() => { const p = quantizeQ4Ref(w, N, K); return dequantizeRef('q4', N, K, p.data, p.scales); })();
      await check(ctx, { weight, dequantized: deq }, M, 92);
    });
  }

  it('accumulates into dx when asked, across shards too', async () => {
    const ctx = await testGpu();
    const [M, N, K] = [6, 40, 37];
    const tw = makeWeight(ctx, 'f16', N, K, 5, [13, 27]);
    const dy = randomF32(M * N, 6), base = randomF32(M * K, 7);
    const dxb = upload(ctx, base);
    await run(ctx, matmulInputGrad(ctx, { dy: upload(ctx, dy), w: tw.weight, dx: dxb, M, accumulate: true }));
    const want = matmulInputGradRef(dy, tw.dequantized, M, N, K).map((v, i) => v + base[i]);
    expect(closeTo(await download(ctx, dxb, M * K), want, TOL, 'dx')).toBeNull();
  });

  it('is deterministic from run to run (no atomics)', async () => {
    const ctx = await testGpu();
    const tw = makeWeight(ctx, 'q4', 64, 96, 8, [20, 44]);
    const dyb = upload(ctx, randomF32(17 * 64, 9));
    const a = upload(ctx, new Float32Array(17 * 96)), b = upload(ctx, new Float32Array(17 * 96));
    await run(ctx, matmulInputGrad(ctx, { dy: dyb, w: tw.weight, dx: a, M: 17 }), matmulInputGrad(ctx, { dy: dyb, w: tw.weight, dx: b, M: 17 }));
    expect(Array.from(await download(ctx, a, 17 * 96))).toEqual(Array.from(await download(ctx, b, 17 * 96)));
  });

  it('rejects bad shapes before dispatch', async () => {
    const ctx = await testGpu();
    const tw = makeWeight(ctx, 'f32', 8, 12, 1);
    const dy = upload(ctx, new Float32Array(3 * 8)), dx = upload(ctx, new Float32Array(3 * 12));
    expect(() => matmulInputGrad(ctx, { dy, w: tw.weight, dx, M: 3 })).not.toThrow();
    expect(() => matmulInputGrad(ctx, { dy, w: tw.weight, dx, M: 4 })).toThrow(ShapeError);
    expect(() => matmulInputGrad(ctx, { dy, w: tw.weight, dx, M: 4 })).toThrow(/dy.*\[4, 8\]/);
    expect(() => matmulInputGrad(ctx, { dy, w: tw.weight, dx: upload(ctx, new Float32Array(30)), M: 3 })).toThrow(/dx.*\[3, 12\]/);
    expect(() => matmulInputGrad(ctx, { dy, w: tw.weight, dx: dy, M: 2 })).toThrow(/alias/);
    expect(() => matmulInputGrad(ctx, { dy, w: tw.weight, dx, M: 0 })).toThrow(/M = 0/);
    const gap = { ...tw.weight, shards: [{ ...tw.weight.shards[0], rows: 5 }] };
    expect(() => matmulInputGrad(ctx, { dy, w: gap, dx, M: 3 })).toThrow(/shards cover 5 rows/);
  });
});
