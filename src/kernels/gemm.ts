/**
 * Prefill matmul (tiled GEMM): y[M, N] = x[M, K] · Wᵀ for a GpuWeight in any storage format, one
 * dispatch per weight shard, each writing its own column range of y (uniform `rowStart`).
 *
 * Each workgroup computes a TM x TN tile of y, stepping along K by TK: it stages a tile of x and a
 * tile of W in workgroup memory (W dequantized from f16 / q4 to f32 while staging), and every
 * invocation accumulates a 4 x 4 block of y in registers. Any M, N, K works (edges are masked).
 *
 * No native-f16 (shader-f16) variant: the weights are dequantized to f32 in workgroup memory
 * anyway, so f16 arithmetic would only save tile memory, while unpack2x16float works everywhere.
 */
import tiledWgsl from '../../shaders/gemm_tiled.wgsl?raw';
import f32Wgsl from '../../shaders/gemm_w_f32.wgsl?raw';
import f16Wgsl from '../../shaders/gemm_w_f16.wgsl?raw';
import q4Wgsl from '../../shaders/gemm_w_q4.wgsl?raw';
import type { GpuContext, GpuLimits } from '../gpu/device.ts';
import { grid1d, makeDispatch, type Binding, type KernelDispatch } from '../gpu/dispatch.ts';
import { LimitsTooSmallError, ShapeError } from '../gpu/errors.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';
import { checkMatmul, type MatmulArgs } from './matmul-args.ts';
import { Q4_GROUP, Q4_OFFSET, rowScaleWords, rowWords, type WeightFormat, type WeightShard } from './weights.ts';

export const GemmParams = defineUniforms('Params', {
  M: 'u32', // rows of x and y
  N: 'u32', // columns of y (all shards): the row stride of y
  K: 'u32',
  rows: 'u32', // rows of W in this shard
  rowStart: 'u32', // first column of y this shard writes
  wWords: 'u32', // u32 (or f32) words per row of weight data
  sWords: 'u32', // u32 words per row of q4 scales (0 otherwise)
  tilesM: 'u32', // workgroup tiles along M
  tilesTotal: 'u32', // tilesM * tiles along this shard's rows
});

/** Workgroup tile shape. Each invocation owns a 4 x 4 block of y (vec4 accumulators), so tm, tn are multiples of 4. */
export interface GemmTile {
  readonly tm: number; // rows of y (tokens) per workgroup
  readonly tn: number; // columns of y (weight rows) per workgroup
  readonly tk: number; // K-step staged in workgroup memory; a multiple of 8 (one q4 word = 8 k)
}

/** Per-invocation register block (fixed by the vec4 accumulators in gemm_tiled.wgsl). */
const BLOCK = 4;

/** K-step of every GEMM_TILES entry; variant names mention tk only when a forced tile differs. */
const DEFAULT_TK = 16;

/** Candidate tiles, largest (most reuse per byte loaded) first. */
export const GEMM_TILES: readonly GemmTile[] = [
  { tm: 64, tn: 64, tk: DEFAULT_TK }, // 256 invocations, 8 KiB
  { tm: 32, tn: 64, tk: DEFAULT_TK }, // 128 invocations, 6 KiB
  { tm: 32, tn: 32, tk: DEFAULT_TK }, //  64 invocations, 4 KiB
];

/**
 * A tile is chosen only if it yields at least this many workgroups; otherwise smaller tiles keep
 * more compute units busy (M = 128 prefill with N = 576 gives just 18 tiles of 64 x 64). A guess at
 * "a few workgroups per compute unit" of a desktop GPU; WebGPU does not expose the unit count.
 */
export const GEMM_MIN_WORKGROUPS = 128;

export function gemmInvocations(t: GemmTile): number {
  return (t.tm / BLOCK) * (t.tn / BLOCK);
}

/** Workgroup memory of a tile: x [tk, tm] and W [tk, tn] in f32. */
export function gemmStorageBytes(t: GemmTile): number {
  return 4 * t.tk * (t.tm + t.tn);
}

/** The first limit `t` exceeds, or null when it fits. */
function tileMisfit(t: GemmTile, limits: GpuLimits): LimitsTooSmallError | null {
  const what = `gemm tile ${t.tm}x${t.tn}x${t.tk}`;
  const inv = gemmInvocations(t);
  if (inv > limits.maxComputeInvocationsPerWorkgroup) return new LimitsTooSmallError('maxComputeInvocationsPerWorkgroup', inv, limits.maxComputeInvocationsPerWorkgroup, what);
  if (inv > limits.maxComputeWorkgroupSizeX) return new LimitsTooSmallError('maxComputeWorkgroupSizeX', inv, limits.maxComputeWorkgroupSizeX, what);
  const bytes = gemmStorageBytes(t);
  if (bytes > limits.maxComputeWorkgroupStorageSize) return new LimitsTooSmallError('maxComputeWorkgroupStorageSize', bytes, limits.maxComputeWorkgroupStorageSize, what);
  return null;
}

/**
 * The largest tile that fits the limits and still gives GEMM_MIN_WORKGROUPS workgroups for an
 * [M, N] output; else the smallest tile that fits. Throws LimitsTooSmallError when none fits.
 */
export function chooseGemmTile(limits: GpuLimits, M: number, N: number): GemmTile {
  const fitting = GEMM_TILES.filter((t) => tileMisfit(t, limits) === null);
  if (fitting.length === 0) throw tileMisfit(GEMM_TILES[GEMM_TILES.length - 1], limits)!;
  const enough = fitting.find((t) => Math.ceil(M / t.tm) * Math.ceil(N / t.tn) >= GEMM_MIN_WORKGROUPS);
  return enough ?? fitting[fitting.length - 1];
}

export function gemmVariant(format: WeightFormat, t: GemmTile): string {
  const k = t.tk === DEFAULT_TK ? '' : `k${t.tk}`;
  return `gemm_${format}_f32_t${t.tm}x${t.tn}${k}_wg${gemmInvocations(t)}`;
}

const WEIGHT_SNIPPETS: Record<WeightFormat, string> = { f32: f32Wgsl, f16: f16Wgsl, q4: q4Wgsl };

/** The specialised WGSL of one variant. */
export function gemmShader(format: WeightFormat, t: GemmTile): string {
  const name = gemmVariant(format, t);
  const snippet = format === 'q4' ? specialize(q4Wgsl, { Q4_GROUP, Q4_OFFSET }, `${name} (q4 loader)`) : WEIGHT_SNIPPETS[format];
  return specialize(
    tiledWgsl,
    {
      PARAMS: GemmParams.wgsl,
      TM: t.tm,
      TN: t.tn,
      TK: t.tk,
      WG: gemmInvocations(t),
      XS_VEC4: (t.tk * t.tm) / 4,
      WS_VEC4: (t.tk * t.tn) / 4,
      WEIGHT_SNIPPET: snippet,
    },
    name,
  );
}

/** Storage bindings after x and y: the shard's data, plus its scales for q4. */
function weightBindings(format: WeightFormat, s: WeightShard): Binding[] {
  return format === 'q4' ? [s.data, s.scales!] : [s.data];
}

export interface GemmOptions {
  /** Force a tile instead of chooseGemmTile's pick (tests, benchmarks); it must fit the limits. */
  tile?: GemmTile;
}

/** A forced tile must have the shape the shader assumes and fit the device. */
function checkTile(t: GemmTile, limits: GpuLimits): void {
  const ok = [t.tm, t.tn].every((d) => Number.isInteger(d) && d > 0 && d % BLOCK === 0) && Number.isInteger(t.tk) && t.tk > 0 && t.tk % 8 === 0;
  if (!ok) throw new ShapeError('gemm', 'options.tile', `${t.tm}x${t.tn}x${t.tk} must have tm, tn multiples of ${BLOCK} and tk a multiple of 8`);
  const misfit = tileMisfit(t, limits);
  if (misfit) throw misfit;
}

/** y[M, N] = x[M, K] · Wᵀ, one dispatch per weight shard. */
export function gemm(ctx: GpuContext, a: MatmulArgs, options: GemmOptions = {}): KernelDispatch[] {
  checkMatmul('gemm', ctx, a);
  const { w, M } = a;
  if (options.tile) checkTile(options.tile, ctx.limits);
  const tile = options.tile ?? chooseGemmTile(ctx.limits, M, w.N);
  const variant = gemmVariant(w.format, tile);
  const tilesM = Math.ceil(M / tile.tm);
  return w.shards.map((s) => {
    const tilesTotal = tilesM * Math.ceil(s.rows / tile.tn);
    return makeDispatch(ctx, {
      variant,
      code: () => gemmShader(w.format, tile),
      uniforms: GemmParams.pack({
        M,
        N: w.N,
        K: w.K,
        rows: s.rows,
        rowStart: s.rowStart,
        wWords: rowWords(w.format, w.K),
        sWords: rowScaleWords(w.format, w.K),
        tilesM,
        tilesTotal,
      }),
      // x [M, K] f32, y [M, N] f32, shard data [rows, wWords] (+ scales [rows, sWords] for q4)
      storage: [a.x, a.y, ...weightBindings(w.format, s)],
      workgroups: grid1d(tilesTotal, ctx.limits.maxComputeWorkgroupsPerDimension),
    });
  });
}
