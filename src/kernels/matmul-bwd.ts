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
 *
 * Small-M variant (CPU-class devices under the fused plan, src/kernels/plan.ts; K % 4 == 0): no
 * workgroup memory and no barrier. One invocation owns MB rows x 4 columns of dx (one vec4 of k)
 * and walks the shard's rows n in registers: per n, MB scalars of dy and one vec4 of W.
 */
import gradWgsl from '../../shaders/matmul_input_grad.wgsl?raw';
import f32Wgsl from '../../shaders/matmul_input_grad_w_f32.wgsl?raw';
import f16Wgsl from '../../shaders/matmul_input_grad_w_f16.wgsl?raw';
import q4Wgsl from '../../shaders/matmul_input_grad_w_q4.wgsl?raw';
import type { GpuContext } from '../gpu/device.ts';
import { bufferOf } from '../gpu/binding.ts';
import { grid1d, makeDispatch, type Binding, type KernelDispatch } from '../gpu/dispatch.ts';
import { ShapeError } from '../gpu/errors.ts';
import { requireBufferFits, requireDims, requireElements } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';
import { linearRowBlock, vec4WeightLoader } from './linear.ts';
import { reductionStyle } from './plan.ts';
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

const SMALL_WG = 64;

/** The small-M variant's WGSL: MB rows x one vec4 of k per invocation. */
function smallShader(format: WeightFormat, MB: number, name: string): string {
  const rows = Array.from({ length: MB }, (_, i) => i);
  const src = `// Input gradient, small-M variant ${name} (src/kernels/matmul-bwd.ts):
//   dx[m, k .. k + 3] (+)= sum_n dy[m, rowStart + n] * W[n, k .. k + 3], one invocation per ${MB} rows x 4 k.
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;         // [M, N]
@group(0) @binding(2) var<storage, read_write> dx: array<vec4f>; // [M, K]
${vec4WeightLoader(format, 'wa', 3)}

fn store(m: u32, k4: u32, v: vec4f) {
  if (m >= p.M) { return; }
  let i = m * (p.K / 4u) + k4;
  if (p.accumulate != 0u) { dx[i] = dx[i] + v; } else { dx[i] = v; }
}

@compute @workgroup_size(${SMALL_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let blk = (wid.x + wid.y * nwg.x) * ${SMALL_WG}u + lid;
  if (blk >= p.tilesTotal) { return; }
  let m0 = (blk % p.tilesM) * ${MB}u;
  let k4 = blk / p.tilesM;
  let k = 4u * k4;
${rows.map((i) => `  let r${i} = min(m0 + ${i}u, p.M - 1u) * p.N + p.rowStart;\n  var acc${i} = vec4f(0.0);`).join('\n')}
  for (var n = 0u; n < p.rows; n++) {
    let w = load_wa(n, k);
${rows.map((i) => `    acc${i} += dy[r${i} + n] * w;`).join('\n')}
  }
${rows.map((i) => `  store(m0 + ${i}u, k4, acc${i});`).join('\n')}
}
`;
  return specialize(src, { PARAMS: MatmulGradParams.wgsl }, name);
}

/** The variant name matmulInputGrad uses for w and M on this device and plan. */
export function matmulInputGradVariantFor(ctx: GpuContext, w: GpuWeight, M: number): string {
  return smallInputGrad(ctx, w) ? `matmul_input_grad_small_${w.format}_m${linearRowBlock(M)}x4_wg${SMALL_WG}` : matmulInputGradVariant(w.format);
}

/**
 * Largest packed-f16 / q4 weight (N·K elements) the small-M variant takes: it dequantizes each W
 * element once per MB = 4 rows, the tiled kernel once per 32 (staged in workgroup memory), which
 * wins for large quantized weights (q4 [1536, 576] at M = 96 on SwiftShader: 381 ms tiled, 575 ms
 * small; f32: 645 ms tiled, 373 ms small).
 */
export const SMALL_INPUT_GRAD_MAX_PACKED = 1 << 16;

/** Whether the small-M variant serves this call on this device and plan. */
export function smallInputGrad(ctx: GpuContext, w: GpuWeight): boolean {
  if (reductionStyle(ctx) !== 'serial' || w.K % 4 !== 0) return false;
  return w.format === 'f32' || w.N * w.K <= SMALL_INPUT_GRAD_MAX_PACKED;
}

export interface MatmulInputGradArgs {
  dy: Binding; // [M, N] f32 gradient of the matmul's output (a buffer or a range of rows, like dx)
  w: GpuWeight; // [N, K] frozen weight, any format, possibly row-sharded
  dx: Binding; // [M, K] f32 gradient of the input (overwritten, or added to with accumulate)
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
  if (bufferOf(a.dx) === bufferOf(a.dy)) throw new ShapeError(kernel, 'dx', 'must not alias dy');
  checkWeightShards(kernel, `w '${w.label}'`, w);
  if (smallInputGrad(ctx, w)) {
    const MB = linearRowBlock(M);
    const name = matmulInputGradVariantFor(ctx, w, M);
    const blocksM = Math.ceil(M / MB);
    const blocksTotal = blocksM * (w.K / 4);
    return w.shards.map((s, i) =>
      makeDispatch(ctx, {
        variant: name,
        code: () => smallShader(w.format, MB, name),
        uniforms: MatmulGradParams.pack({ M, N: w.N, K: w.K, rows: s.rows, rowStart: s.rowStart, wWords: rowWords(w.format, w.K), sWords: rowScaleWords(w.format, w.K), tilesM: blocksM, tilesTotal: blocksTotal, accumulate: i > 0 || a.accumulate ? 1 : 0 }),
        // dy [M, N] f32, dx [M, K] f32, shard data [rows, wWords] (+ scales [rows, sWords] for q4)
        storage: [a.dy, a.dx, ...weightBindings(w.format, s)],
        workgroups: grid1d(Math.ceil(blocksTotal / SMALL_WG), ctx.limits.maxComputeWorkgroupsPerDimension),
      }),
    );
  }
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
