/**
 * GEMV: the decode matmul y[M, N] = x[M, K] · Wᵀ for a few tokens (M <= GEMV_MAX_M), W a GpuWeight
 * in 'f32', 'f16' (packed) or 'q4'. One dispatch per weight shard; each writes its rows' columns
 * [rowStart, rowStart + rows) of y.
 *
 * Shape of the work (shaders/gemv.wgsl): a workgroup owns ROWS weight rows; its WG invocations
 * split K so that neighbouring invocations read neighbouring words (coalesced on GPUs); x is read
 * once per chunk and reused for the ROWS rows; per-row and per-token statements are unrolled here
 * in TS because loops over private arrays are about 6x slower on SwiftShader. The partial sums are
 * reduced with subgroupAdd when the workgroup fits in one subgroup (no barrier: on SwiftShader,
 * WG = 4 = its subgroup), else through workgroup memory with one barrier.
 */
import gemvMain from '../../shaders/gemv.wgsl?raw';
import gemvF32 from '../../shaders/gemv_f32.wgsl?raw';
import gemvF16 from '../../shaders/gemv_f16.wgsl?raw';
import gemvF16Native from '../../shaders/gemv_f16_native.wgsl?raw';
import gemvQ4 from '../../shaders/gemv_q4.wgsl?raw';
import reduceSubgroup from '../../shaders/gemv_reduce_subgroup.wgsl?raw';
import reduceWorkgroup from '../../shaders/gemv_reduce_workgroup.wgsl?raw';
import type { GpuContext } from '../gpu/device.ts';
import { LimitsTooSmallError, MissingFeatureError, ShapeError } from '../gpu/errors.ts';
import { grid1d, makeDispatch, type Binding, type KernelDispatch } from '../gpu/dispatch.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';
import { checkMatmul, type MatmulArgs } from './matmul-args.ts';
import { rowScaleWords, rowWords, type WeightFormat } from './weights.ts';

/** Most tokens one GEMV handles; larger batches go to the GEMM. */
export const GEMV_MAX_M = 8;

/**
 * K, N: the matmul's; rows, rowStart: this shard's rows of W (= columns of y); rowWords,
 * scaleWords: u32 words per weight row of data and of q4 scales; chunks: chunks per row (the
 * unit one invocation handles per step, ELEMENTS_PER_CHUNK elements).
 */
export const GemvParams = defineUniforms('Params', { K: 'u32', N: 'u32', rows: 'u32', rowStart: 'u32', rowWords: 'u32', scaleWords: 'u32', chunks: 'u32' });

/** How a GEMV variant is laid out; chosen by gemvPlan, overridable for benchmarks and tests. */
export interface GemvPlan {
  /** 'native' reads 'f16' weights as vec2<f16> (needs shader-f16); 'packed' unpacks u32 words. */
  f16: 'packed' | 'native';
  reduce: 'subgroup' | 'workgroup';
  /** Invocations per workgroup (they split K). With reduce 'subgroup' it must not exceed the smallest subgroup. */
  wg: number;
  /** Weight rows per workgroup. */
  rows: number;
}

/** Rows per workgroup by batch size: enough rows to reuse each x load, few enough accumulators (rows*M) to stay in registers. */
const ROWS_FOR_M = [0, 16, 8, 8, 8, 4, 4, 4, 4];

/** The default plan on this device for M tokens. */
export function gemvPlan(ctx: GpuContext, M: number): GemvPlan {
  // The device's smallest subgroup (4 on SwiftShader, 32 on most GPUs): a workgroup that size is
  // one subgroup. Unknown (older browsers): no subgroup reduction, since a workgroup could span several.
  const minSubgroup = smallestSubgroup(ctx);
  return {
    f16: ctx.features.shaderF16 ? 'native' : 'packed',
    reduce: ctx.features.subgroups && minSubgroup !== undefined ? 'subgroup' : 'workgroup',
    wg: Math.min(64, Math.max(4, minSubgroup ?? 32)),
    rows: ROWS_FOR_M[Math.min(M, GEMV_MAX_M)],
  };
}

function smallestSubgroup(ctx: GpuContext): number | undefined {
  return ctx.device.adapterInfo?.subgroupMinSize || undefined;
}

const ELEMENTS_PER_CHUNK: Record<WeightFormat, number> = { f32: 1, f16: 2, q4: 32 };
const FORMAT_SOURCES: Record<WeightFormat | 'f16_native', string> = { f32: gemvF32, f16: gemvF16, f16_native: gemvF16Native, q4: gemvQ4 };

/** y = x · Wᵀ: one dispatch per shard of W. */
export function gemv(ctx: GpuContext, a: MatmulArgs, override: Partial<GemvPlan> = {}): KernelDispatch[] {
  checkMatmul('gemv', ctx, a);
  if (a.M > GEMV_MAX_M) throw new ShapeError('gemv', 'x', `has M = ${a.M} rows; GEMV handles at most ${GEMV_MAX_M} (use the GEMM)`);
  const plan = { ...gemvPlan(ctx, a.M), ...override };
  if (plan.f16 === 'native' && !ctx.features.shaderF16) throw new MissingFeatureError('shader-f16', 'gemv with native f16 weights');
  if (plan.reduce === 'subgroup' && !ctx.features.subgroups) throw new MissingFeatureError('subgroups', 'gemv with subgroup reduction');
  if (plan.reduce === 'subgroup' && !(plan.wg <= (smallestSubgroup(ctx) ?? 0))) {
    throw new ShapeError('gemv', 'plan', `has wg = ${plan.wg}, more than the smallest subgroup (${smallestSubgroup(ctx) ?? 'unknown'}): subgroupAdd would not see the whole workgroup`);
  }
  const partialBytes = a.M * plan.rows * plan.wg * 4; // workgroup-memory reduction: [M * rows, wg] f32
  if (plan.reduce === 'workgroup' && partialBytes > ctx.limits.maxComputeWorkgroupStorageSize) {
    throw new LimitsTooSmallError('maxComputeWorkgroupStorageSize', partialBytes, ctx.limits.maxComputeWorkgroupStorageSize, `gemv M=${a.M} rows=${plan.rows} wg=${plan.wg}`);
  }
  const { w, M } = a;
  const source = w.format === 'f16' && plan.f16 === 'native' ? 'f16_native' : w.format;
  // Whether the last chunk of a row runs past K (odd K for f16, K % 32 for q4): then x reads are masked.
  const kTail = w.K % ELEMENTS_PER_CHUNK[w.format] !== 0;
  const variant = `gemv_${source}_f32_m${M}_r${plan.rows}_wg${plan.wg}_${plan.reduce === 'subgroup' ? 'sg' : 'wgmem'}${kTail ? '_ktail' : ''}`;
  const code = () => gemvSource(source, M, kTail, plan, variant);
  return w.shards.map((s) => {
    const storage: Binding[] = [a.x, a.y, s.data]; // x [M, K] f32, y [M, N] f32, W data [rows, rowWords]
    if (w.format === 'q4') storage.push(s.scales!); // [rows, scaleWords] u32 of packed f16
    return makeDispatch(ctx, {
      variant,
      code,
      uniforms: GemvParams.pack({ K: w.K, N: w.N, rows: s.rows, rowStart: s.rowStart, rowWords: rowWords(w.format, w.K), scaleWords: rowScaleWords(w.format, w.K), chunks: Math.ceil(w.K / ELEMENTS_PER_CHUNK[w.format]) }),
      storage,
      workgroups: grid1d(Math.ceil(s.rows / plan.rows), ctx.limits.maxComputeWorkgroupsPerDimension),
    });
  });
}

/** The specialised WGSL of one variant: skeleton + format + reduction, with the unrolled blocks. */
function gemvSource(source: keyof typeof FORMAT_SOURCES, M: number, kTail: boolean, plan: GemvPlan, variant: string): string {
  const R = plan.rows;
  const rows = range(R);
  const tokens = range(M);
  const enables = [source === 'f16_native' ? 'enable f16;' : '', plan.reduce === 'subgroup' ? 'enable subgroups;' : ''].join('\n');
  const all = [gemvMain, FORMAT_SOURCES[source], plan.reduce === 'subgroup' ? reduceSubgroup : reduceWorkgroup].join('\n');
  return specialize(
    all,
    {
      ENABLES: enables,
      PARAMS: GemvParams.wgsl,
      M,
      ROWS: R,
      WG: plan.wg,
      K_TAIL: kTail,
      ROW_INDICES: rows.map((r) => `  let r${r} = min(row0 + ${r}u, p.rows - 1u);`).join('\n'),
      ACC_DECL: rows.flatMap((r) => tokens.map((m) => `  var acc${r}_${m} = 0.0;`)).join('\n'),
      X_LOADS: tokens.map((m) => `    let x${m} = load_x(${m}u, c);`).join('\n'),
      ACCUMULATE: rows
        .map((r) => [`    let w${r} = load_w(r${r}, c);`, ...tokens.map((m) => `    acc${r}_${m} += dot_chunk(w${r}, x${m});`)].join('\n'))
        .join('\n'),
      STAGE: rows.flatMap((r) => tokens.map((m) => `  stage(${r * M + m}u, acc${r}_${m}, lid);`)).join('\n'),
    },
    variant,
  );
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
