/**
 * The fused linear (src/kernels/linear.ts) against linearRef, the unfused composition of the
 * families' own references (gather, rmsNormRef, matmulRef, bias, siluGateRef, residual add), on
 * random shapes including odd M and N, every weight format, every fusion and row-sharded weights.
 */
import { describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/device.ts';
import { LimitsTooSmallError, ShapeError } from '../../src/gpu/errors.ts';
import { linear, linearRef, linearRowBlock, splitColumnsRef, type LinearArgs } from '../../src/kernels/linear.ts';
import { WEIGHT_FORMATS, type WeightFormat } from '../../src/kernels/weights.ts';
import { closeTo, download, randomF32, run, testGpu, upload } from './gpu.ts';
import { makeWeight } from './weight-helpers.ts';

/**
 * f32 sums of K products in another order than the f64 reference (plus, with the norm, the
 * prologue's own rounding): ~sqrt(K)·2^-24 relative; a wrong or missing term costs ~1e-2 or more.
 */
const TOL = { atol: 5e-5, rtol: 2e-5 };
const SENTINEL = 12345;

type Fusion = 'plain' | 'norm' | 'bias' | 'gather+norm' | 'silu-gate' | 'norm+silu-gate' | 'residual' | 'base' | 'norm+bias+split';

async function check(ctx: GpuContext, format: WeightFormat, M: number, N: number, K: number, fusion: Fusion, split?: number[]): Promise<void> {
  const seed = M * 1000 + N * 7 + K;
  const tw = makeWeight(ctx, format, N, K, seed, split);
  const xRows = fusion === 'gather+norm' ? M + 3 : M;
  const x = randomF32(xRows * K, seed + 1);
  const normW = randomF32(K, seed + 2).map((v) => 1 + 0.5 * v);
  const bias = randomF32(N, seed + 3);
  const index = Uint32Array.from({ length: M }, (_, m) => (m * 5 + 2) % xRows);
  const yInit = randomF32(M * N, seed + 4);
  const useNorm = fusion.includes('norm');
  const useBias = fusion.includes('bias');
  const pair = fusion.includes('silu-gate') ? makeWeight(ctx, format, N, K, seed + 5, split) : undefined;
  const residual = fusion === 'residual';
  const xb = upload(ctx, x, 'x');
  const yb = upload(ctx, residual ? yInit : new Float32Array(M * N).fill(SENTINEL), 'y');
  const args: LinearArgs = { x: xb, w: tw.weight, y: yb, M, residual };
  if (fusion === 'base') args.base = upload(ctx, yInit, 'base');
  if (useNorm) args.norm = { weight: upload(ctx, normW, 'normW'), eps: 1e-5 };
  if (useBias) args.bias = upload(ctx, bias, 'bias');
  if (fusion === 'gather+norm') args.rows = { index: upload(ctx, index, 'index'), xRows };
  if (pair) args.up = pair.weight;
  const cols: [number, number] = [Math.max(1, Math.floor(N / 2)), Math.max(1, Math.floor(N / 4))];
  let y1: GPUBuffer | undefined, y2: GPUBuffer | undefined;
  if (fusion === 'norm+bias+split') {
    y1 = upload(ctx, new Float32Array(M * cols[1]).fill(SENTINEL), 'y1');
    y2 = upload(ctx, new Float32Array(M * (N - cols[0] - cols[1])).fill(SENTINEL), 'y2');
    args.split = { cols, y1, y2 };
  }
  await run(ctx, linear(ctx, args));
  const want = linearRef({
    x, w: tw.dequantized, N, K, M,
    rows: args.rows ? index : undefined,
    norm: useNorm ? { weight: normW, eps: 1e-5 } : undefined,
    bias: useBias ? bias : undefined,
    up: pair?.dequantized,
    residual: residual || fusion === 'base' ? yInit : undefined,
  });
  const what = `${format} ${fusion} M=${M} N=${N} K=${K}`;
  if (args.split) {
    const [w0, w1, w2] = splitColumnsRef(want, M, N, cols[0], cols[1]);
    expect(closeTo(await download(ctx, yb, w0.length), w0, TOL, `${what} y`)).toBeNull();
    expect(closeTo(await download(ctx, y1!, w1.length), w1, TOL, `${what} y1`)).toBeNull();
    expect(closeTo(await download(ctx, y2!, w2.length), w2, TOL, `${what} y2`)).toBeNull();
  } else {
    expect(closeTo(await download(ctx, yb, M * N), want, TOL, what)).toBeNull();
  }
}

describe('fused linear vs the unfused reference', () => {
  const SHAPES: [number, number, number][] = [
    [1, 13, 12],
    [2, 37, 36],
    [3, 64, 64],
    [13, 29, 68],
    [37, 70, 132],
  ];
  for (const format of WEIGHT_FORMATS) {
    for (const [M, N, K] of SHAPES) {
      it(`${format} plain, M=${M} N=${N} K=${K}`, async () => check(await testGpu(), format, M, N, K, 'plain'));
    }
    for (const fusion of ['norm', 'bias', 'gather+norm', 'silu-gate', 'norm+silu-gate', 'residual', 'base', 'norm+bias+split'] as const) {
      it(`${format} ${fusion}: M=1 and M=5, odd N`, async () => {
        const ctx = await testGpu();
        await check(ctx, format, 1, 23, 36, fusion);
        await check(ctx, format, 5, 41, 68, fusion);
      });
    }
    it(`${format}: two shards (21 + 16 rows), each writing its own columns`, async () => {
      const ctx = await testGpu();
      await check(ctx, format, 6, 37, 40, 'plain', [21, 16]);
      await check(ctx, format, 1, 37, 40, 'norm+silu-gate', [21, 16]);
      await check(ctx, format, 3, 37, 40, 'residual', [21, 16]);
    });
  }

  it('picks 1, 2 or 4 rows per invocation', () => {
    expect([1, 2, 3, 4, 9].map(linearRowBlock)).toEqual([1, 2, 4, 4, 4]);
  });

  it('rejects bad arguments before dispatch', async () => {
    const ctx = await testGpu();
    const tw = makeWeight(ctx, 'f32', 8, 12, 1);
    const x = upload(ctx, new Float32Array(4 * 12)), y = upload(ctx, new Float32Array(4 * 8));
    expect(() => linear(ctx, { x, w: makeWeight(ctx, 'f32', 8, 13, 2).weight, y, M: 1 })).toThrow(ShapeError); // K % 4 != 0
    expect(() => linear(ctx, { x, w: tw.weight, y: x, M: 1 })).toThrow(ShapeError); // y aliases x
    expect(() => linear(ctx, { x, w: tw.weight, y, M: 5 })).toThrow(ShapeError); // x too small
    expect(() => linear(ctx, { x, w: tw.weight, y, M: 1, up: makeWeight(ctx, 'f32', 7, 12, 3).weight })).toThrow(ShapeError);
    expect(() => linear(ctx, { x, w: tw.weight, y, M: 1, up: tw.weight, residual: true })).toThrow(ShapeError);
    expect(() => linear(ctx, { x, w: tw.weight, y, M: 1, base: y })).toThrow(ShapeError); // base aliases y
    expect(() => linear(ctx, { x, w: tw.weight, y, M: 1, base: x, residual: true })).toThrow(ShapeError);
    expect(() => linear(ctx, { x, w: tw.weight, y, M: 1, split: { cols: [4, 4], y1: upload(ctx, new Float32Array(4)), y2: upload(ctx, new Float32Array(4)) } })).toThrow(ShapeError); // nothing left for y2
    expect(() => linear(ctx, { x, w: tw.weight, y, M: 1, norm: { weight: upload(ctx, new Float32Array(12)), eps: -1 } })).toThrow(ShapeError);
    const small = await testGpu({ limitsCap: { maxStorageBuffersPerShaderStage: 4 } });
    const ts = makeWeight(small, 'q4', 8, 32, 4);
    const xs = upload(small, new Float32Array(32)), ys = upload(small, new Float32Array(8));
    expect(() => linear(small, { x: xs, w: ts.weight, y: ys, M: 1, norm: { weight: upload(small, new Float32Array(32)), eps: 1e-5 }, bias: upload(small, new Float32Array(8)) })).toThrow(LimitsTooSmallError);
  });
});
