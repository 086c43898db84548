/**
 * Input gradient of the matmul family through a FROZEN weight (LoRA training: no dW for the base).
 * The forward is y[M, N] = x[M, K] · Wᵀ (src/kernels/matmul-args.ts), so dx[M, K] = dy[M, N] · W.
 *
 * GPU kernel (shaders/matmul_input_grad.wgsl + one weight loader per format): a tiled GEMM whose
 * reduced dimension is the weight's rows. Each workgroup owns a TM x TK tile of dx and steps along
 * the shard's rows by TN, staging dy[TM, TN] and W[TN, TK] (dequantized to f32 from f16 / q4) in
 * workgroup memory; each invocation keeps a 4 x 4 block of dx in registers.
 *
 * A row-sharded weight: every shard's rows contribute to ALL of dx (the sum over n crosses shard
 * boundaries), so there is one dispatch per shard in order: the first writes dx (or adds to it with
 * `accumulate`), the later ones add. Dispatches in one pass are ordered, so the sum is deterministic
 * (no atomics) and the same from run to run.
 */
import gradWgsl from '../../shaders/matmul_input_grad.wgsl?raw';
import f32Wgsl from '../../shaders/matmul_input_grad_w_f32.wgsl?raw';
import f16Wgsl from '../../shaders/matmul_input_grad_w_f16.wgsl?raw';
import q4Wgsl from '../../shaders/matmul_input_grad_w_q4.wgsl?raw';
import type { GpuContext } from '../gpu/device.ts';
import { grid1d, makeDispatch, type Binding, type KernelDispatch } from '../gpu/dispatch.ts';
import { ShapeError } from '../gpu/errors.ts';
import { requireBufferFits, requireDims, requireElements } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';
import { checkWeightShards, Q4_GROUP, Q4_OFFSET, rowScaleWords, rowWords, type GpuWeight, type WeightFormat, type WeightShard } from './weights.ts';

/** CPU reference: dx[M, K] = dy[M, N] · W[N, K] (W dequantized to f32 first), sums in f64. */
export function matmulInputGradRef(dy: Float32Array, w: Float32Array, M: number, N: number, K: number): Float32Array {
  requireElements('matmulInputGradRef', 'dy', dy.length, M * N, [M, N]);
  requireElements('matmulInputGradRef', 'w', w.length, N * K, [N, K]);
  const dx = new Float32Array(M * K);
  const acc = new Float64Array(K);
  for (let m = 0; m < M; m++) {
    acc.fill(0);
    for (let n = 0; n < N; n++) {
      const g = dy[m * N + n];
      if (g === 0) continue;
      for (let k = 0; k < K; k++) acc[k] += g * w[n * K + k];
    }
    dx.set(acc, m * K);
  }
  return dx;
}

export const MatmulGradParams = defineUniforms('Params', {
  M: 'u32', // rows of dy and dx
  N: 'u32', // columns of dy (all shards): its row stride
  K: 'u32', // columns of dx
  rows: 'u32', // rows of W in this shard
  rowStart: 'u32', // first column of dy this shard reads
  wWords: 'u32', // u32 (or f32) words per row of weight data
  sWords: 'u32', // u32 words per row of q4 scales (0 otherwise)
  tilesM: 'u32', // workgroup tiles along M
  tilesTotal: 'u32', // tilesM * tiles along K
  accumulate: 'u32', // 1: dx += result, 0: dx = result
});

/** Tile: TM rows of dx x TK columns, stepping TN weight rows. TK = 32 = one q4 group, so a tile never splits a group. */
const TM = 32;
const TK = 32;
const TN = 16;
const WG = (TM / 4) * (TK / 4); // 64 invocations, each a 4 x 4 block

export function matmulInputGradVariant(format: WeightFormat): string {
  return `matmul_input_grad_${format}_t${TM}x${TK}x${TN}_wg${WG}`;
}

const LOADERS: Record<WeightFormat, string> = { f32: f32Wgsl, f16: f16Wgsl, q4: q4Wgsl };

function shader(format: WeightFormat): string {
  const name = matmulInputGradVariant(format);
  const loader = format === 'q4' ? specialize(q4Wgsl, { Q4_GROUP, Q4_OFFSET }, `${name} (q4 loader)`) : LOADERS[format];
  return specialize(gradWgsl, { PARAMS: MatmulGradParams.wgsl, TM, TK, TN, WG, WEIGHT_SNIPPET: loader }, name);
}

function weightBindings(format: WeightFormat, s: WeightShard): Binding[] {
  return format === 'q4' ? [s.data, s.scales!] : [s.data];
}

export interface MatmulInputGradArgs {
  dy: GPUBuffer; // [M, N] f32 gradient of the matmul's output
  w: GpuWeight; // [N, K] frozen weight, any format, possibly row-sharded
  dx: GPUBuffer; // [M, K] f32 gradient of the input (overwritten, or added to with accumulate)
  M: number;
  /** Add into dx instead of overwriting it (e.g. the q, k and v projections share one input). */
  accumulate?: boolean;
}

/** dx = dy · W (or dx += dy · W): one dispatch per weight shard, to be encoded in this order. */
export function matmulInputGrad(ctx: GpuContext, a: MatmulInputGradArgs): KernelDispatch[] {
  const kernel = 'matmulInputGrad';
  const { w, M } = a;
  requireDims(kernel, 'shape', { M, N: w.N, K: w.K });
  requireBufferFits(kernel, 'dy', a.dy, [M, w.N]);
  requireBufferFits(kernel, 'dx', a.dx, [M, w.K]);
  if (a.dx === a.dy) throw new ShapeError(kernel, 'dx', 'must not alias dy');
  checkWeightShards(kernel, `w '${w.label}'`, w);
  const variant = matmulInputGradVariant(w.format);
  const tilesM = Math.ceil(M / TM);
  const tilesTotal = tilesM * Math.ceil(w.K / TK);
  return w.shards.map((s, i) =>
    makeDispatch(ctx, {
      variant,
      code: () => shader(w.format),
      uniforms: MatmulGradParams.pack({
        M,
        N: w.N,
        K: w.K,
        rows: s.rows,
        rowStart: s.rowStart,
        wWords: rowWords(w.format, w.K),
        sWords: rowScaleWords(w.format, w.K),
        tilesM,
        tilesTotal,
        accumulate: i > 0 || a.accumulate ? 1 : 0,
      }),
      // dy [M, N] f32, dx [M, K] f32, shard data [rows, wWords] (+ scales [rows, sWords] for q4)
      storage: [a.dy, a.dx, ...weightBindings(w.format, s)],
      workgroups: grid1d(tilesTotal, ctx.limits.maxComputeWorkgroupsPerDimension),
    }),
  );
}
