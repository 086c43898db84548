/**
 * Attention family: scaled dot-product attention over the paged KV cache (src/kv/layout.ts), with
 * GQA (query head h reads KV head floor(h / (nHeads / nKvHeads))). The K/V rows of the tokens being
 * processed are written by kvWrite (src/kernels/kvcache.ts) before these kernels run, so every
 * query finds its own position in the cache too.
 *
 * Key window per sequence (Mistral's sliding window, StreamingLLM's "attention sinks + recent
 * window"): the query at position q of sequence s sees key position p iff
 *   p <= q  AND  (p < sinks[s]  OR  q - p < window[s])
 * i.e. the first sinks[s] positions plus the last window[s] positions up to q itself
 * (UNBOUNDED_WINDOW = 0xFFFFFFFF: plain causal; sinks 0: none). window must be >= 1, so a query
 * always sees itself (the kernels clamp it to 1 as well). sinks/window come per sequence from one
 * storage buffer `keyWindow` [nSeqs, 2] u32 = (sinks, window) (one buffer, not two: prefill
 * already binds 7 storage buffers of the 8 every WebGPU device has), so one batch mixes windows
 * and the dispatch is reused while they change. Without it the kernels are the unbounded variant
 * (the binding is not in their layout). The kernels visit only visible keys: decode walks the two
 * runs [0, sinks) and [q - window + 1, q] as one list, prefill streams the sinks and then the
 * keys from the earliest window start of its query tile, skipping the gap, tiles no query sees,
 * and (in the tiles it loads) positions no query sees. So a long chat with a small window costs
 * ~sinks + window per query, and a masked position's block is never read: the engine may free a
 * block outside every query's mask and leave NO_BLOCK in its table entry.
 *
 * Two kernels:
 *
 * - attentionDecode (shaders/attention_decode.wgsl): one query per sequence, a batch of sequences
 *   of different lengths per dispatch. A workgroup per (sequence, head) walks the visible
 *   positions (sinks, then the window) in tiles of WG, one position per invocation, with an online softmax (running max and denominator,
 *   rescaled per tile), so context length is unbounded by workgroup memory. The tile max is a
 *   workgroup reduction with a subgroup fast path; P·V is split over head dims.
 *
 * - attentionPrefill (shaders/attention_prefill.wgsl): causal attention for chunks of prompt
 *   tokens, several sequences per dispatch. Tokens come as a flat list [T] with per-token
 *   sequence (block-table row) and position in storage buffers, so the engine can batch mixed
 *   chunks ("seq 3 positions 32..47, then seq 5 positions 0..9") and reuse the dispatch while the
 *   values change. A workgroup takes QT consecutive tokens of the list and one head; each run of
 *   same-sequence tokens in that tile (a "segment") streams keys 0..max(pos) of its sequence (less
 *   the gap a window leaves, below) in tiles of KT positions through workgroup memory, so QT queries share every K/V load (the reason
 *   prefill is not just decode with T queries). Causality (and the window) is a mask per (query,
 *   key): key pos <= query pos, which covers earlier chunks already in the cache and the chunk
 *   itself; with a window the segment's keys are the sinks, then from the earliest window start
 *   of its queries to max(pos), and a tile no query of the segment sees is skipped. Positions
 *   need not be contiguous or sorted; tiles are fastest when a sequence's tokens are adjacent.
 *   Tile sizes shrink with headDim so K, V, Q and score tiles fit the 16 KiB of workgroup memory
 *   every WebGPU device has (QT*HD <= 1024 and KT*HD <= 1024). It has no subgroup path: its
 *   softmax statistics are per query row, one invocation scanning KT <= 32 scores, not a
 *   workgroup-wide reduction.
 *
 * - attentionDecode's serial variant (shaders/attention_serial.wgsl), chosen on a CPU-class
 *   device under the fused plan (src/kernels/plan.ts) when headDim % 4 == 0: one invocation per
 *   (sequence, head), the online softmax in registers, no workgroup memory and no barrier (each
 *   barrier is a fiber switch on such a device, and a decode's tiles are tiny).
 *
 * - attentionPrefill's serial variant (the same shader), chosen the same way: one invocation per
 *   (query token, head), the decode serial kernel's loop with the query's own sequence and position. Queries no longer share K/V loads through workgroup memory, but on
 *   SwiftShader the tiled kernel's barriers dominated: stories260K's attention of a 4-token chunk
 *   took 15 of a prefill pass's 19 GPU ms tiled (5 layers), which made every small prompt chunk
 *   (and every decode batched beside one) cost 4–6 decode steps.
 *
 * Known limits, by choice for now: decode runs one workgroup per (sequence, head) over all its
 * visible keys (no split-K "flash-decoding"), so a single long sequence uses few workgroups; GQA
 * heads of a group each load their KV head separately (neighbouring workgroups, so mostly from
 * cache). A prefill segment whose queries lie far apart (not the engine's contiguous chunks) with
 * a small window still steps through the tiles between their windows, skipping each (one check
 * per query per tile).
 *
 * Both use f32 storage and f32 arithmetic; masked scores use -1e30 (finite, so exp(a - b) never
 * sees inf - inf). Values the GPU cannot check (positions and lengths inside the table's capacity,
 * table entries < nBlocks) are the engine's contract: reads past the table are clamped to its
 * capacity, bad block ids fall under WebGPU's robust buffer access (garbage, never a crash). The
 * CPU references throw on them instead.
 */
import decodeWgsl from '../../shaders/attention_decode.wgsl?raw';
import prefillWgsl from '../../shaders/attention_prefill.wgsl?raw';
import serialWgsl from '../../shaders/attention_serial.wgsl?raw';
import type { GpuContext } from '../gpu/device.ts';
import { grid1d, makeDispatch, type KernelDispatch } from '../gpu/dispatch.ts';
import { LimitsTooSmallError, ShapeError } from '../gpu/errors.ts';
import { requireBufferFits, requireDims } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';
import { BLOCK_SIZE, cacheRowOffset, type PagedKvHost } from '../kv/layout.ts';
import { checkPagedKv, type PagedKvGpu } from './kvcache.ts';
import { reductionStyle, spreadWorkgroupSize } from './plan.ts';
import { reductionPrelude, softmaxRef } from './softmax.ts';

/** Largest head dimension the kernels accept (tiles and per-invocation accumulators are sized by it). */
export const MAX_HEAD_DIM = 256;

export function defaultScale(headDim: number): number {
  return 1 / Math.sqrt(headDim);
}

// ---------------------------------------------------------------------------------------------
// CPU references

/** Most keys: the window of a sequence without one (any key up to the query itself). */
export const UNBOUNDED_WINDOW = 0xffffffff;

/** Per-sequence key windows: sinks[s] first positions plus the last window[s] up to the query. */
export interface KeyWindows {
  sinks: ArrayLike<number>; // [nSeqs] u32, 0 = no sinks
  window: ArrayLike<number>; // [nSeqs] u32 >= 1, UNBOUNDED_WINDOW = plain causal
}

/** Does a query at position q see key position p, under (sinks, window)? The mask of every attention kernel. */
export function keyVisible(p: number, q: number, sinks = 0, window = UNBOUNDED_WINDOW): boolean {
  return p <= q && (p < sinks || q - p < window);
}

function checkWindowRef(fn: string, sinks: number, window: number, where: string): void {
  if (!Number.isInteger(sinks) || sinks < 0 || sinks > 0xffffffff) throw new RangeError(`${fn}: sinks ${sinks} of ${where} is not a u32`);
  if (!Number.isInteger(window) || window < 1 || window > UNBOUNDED_WINDOW) throw new RangeError(`${fn}: window ${window} of ${where} is not a u32 >= 1 (a query must see itself)`);
}

/**
 * Reference attention through the paged cache: token t (sequence tokenSeq[t], position
 * tokenPos[t]) attends to the positions 0..tokenPos[t] of its sequence that keyVisible allows
 * under windows (default: all of them). q and the result are [T, nHeads, headDim]. Straight loops
 * in f64, softmax subtracting the max. Masked positions are not read (their block may be NO_BLOCK);
 * a visible position without a block throws.
 */
export function attentionRef(q: Float32Array, kv: PagedKvHost, tokenSeq: ArrayLike<number>, tokenPos: ArrayLike<number>, nHeads: number, scale = defaultScale(kv.headDim), windows?: KeyWindows): Float32Array {
  const { headDim: hd, nKvHeads } = kv;
  const group = nHeads / nKvHeads;
  if (!Number.isInteger(group)) throw new RangeError(`attentionRef: nHeads ${nHeads} is not a multiple of nKvHeads ${nKvHeads}`);
  const T = tokenSeq.length;
  const out = new Float32Array(T * nHeads * hd);
  for (let t = 0; t < T; t++) {
    const s = tokenSeq[t];
    const sinks = windows ? windows.sinks[s] : 0;
    const window = windows ? windows.window[s] : UNBOUNDED_WINDOW;
    if (windows) checkWindowRef('attentionRef', sinks, window, `sequence ${s}`);
    const keys: number[] = [];
    for (let j = 0; j <= tokenPos[t]; j++) if (keyVisible(j, tokenPos[t], sinks, window)) keys.push(j);
    const n = keys.length;
    for (let h = 0; h < nHeads; h++) {
      const kvHead = Math.floor(h / group);
      const qOff = (t * nHeads + h) * hd;
      const scores = new Float64Array(n);
      let max = -Infinity;
      for (let i = 0; i < n; i++) {
        const kOff = cacheRowOffset(kv, s, keys[i], kvHead);
        let dot = 0;
        for (let d = 0; d < hd; d++) dot += q[qOff + d] * kv.kCache[kOff + d];
        scores[i] = dot * scale;
        max = Math.max(max, scores[i]);
      }
      let sum = 0;
      for (let i = 0; i < n; i++) {
        scores[i] = Math.exp(scores[i] - max);
        sum += scores[i];
      }
      for (let d = 0; d < hd; d++) {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += scores[i] * kv.vCache[cacheRowOffset(kv, s, keys[i], kvHead) + d];
        out[qOff + d] = acc / sum;
      }
    }
  }
  return out;
}

/** Reference decode: sequence s's query at position seqLens[s] - 1; q is [nSeqs, nHeads, headDim]. */
export function attentionDecodeRef(q: Float32Array, kv: PagedKvHost, seqLens: ArrayLike<number>, nHeads: number, scale?: number, windows?: KeyWindows): Float32Array {
  const seqs = Array.from({ length: seqLens.length }, (_, s) => s);
  const pos = Array.from(seqLens, (len) => len - 1);
  return attentionRef(q, kv, seqs, pos, nHeads, scale, windows);
}

/**
 * Dense reference for one sequence, used to cross-check the paged one: keys/values are contiguous
 * [nPos, nKvHeads, headDim] (key j at position j), queries [Tq, nHeads, headDim] at positions
 * qPos, under one key window (sinks, window) (default: plain causal). Built differently on
 * purpose: a full masked score row (-Infinity where keyVisible says no) through softmaxRef, then
 * the weighted sum.
 */
export function attentionDenseRef(q: Float32Array, k: Float32Array, v: Float32Array, qPos: ArrayLike<number>, nPos: number, nHeads: number, nKvHeads: number, headDim: number, scale = defaultScale(headDim), window: { sinks: number; window: number } = { sinks: 0, window: UNBOUNDED_WINDOW }): Float32Array {
  checkWindowRef('attentionDenseRef', window.sinks, window.window, 'the sequence');
  const Tq = qPos.length;
  const out = new Float32Array(Tq * nHeads * headDim);
  const scores = new Float32Array(nPos);
  for (let t = 0; t < Tq; t++) {
    for (let h = 0; h < nHeads; h++) {
      const kvHead = Math.floor((h * nKvHeads) / nHeads);
      const qRow = q.subarray((t * nHeads + h) * headDim, (t * nHeads + h + 1) * headDim);
      for (let j = 0; j < nPos; j++) {
        if (!keyVisible(j, qPos[t], window.sinks, window.window)) {
          scores[j] = -Infinity;
          continue;
        }
        const kRow = k.subarray((j * nKvHeads + kvHead) * headDim, (j * nKvHeads + kvHead + 1) * headDim);
        scores[j] = qRow.reduce((acc, x, d) => acc + x * kRow[d], 0) * scale;
      }
      const probs = softmaxRef(scores, 1, nPos);
      for (let d = 0; d < headDim; d++) {
        let acc = 0;
        for (let j = 0; j <= qPos[t]; j++) acc += probs[j] * v[(j * nKvHeads + kvHead) * headDim + d];
        out[(t * nHeads + h) * headDim + d] = acc;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Tiling (pure functions, tested in Node)

/** Decode workgroup: about one invocation per head dim (32..128, a power of two for the tree). */
export function decodeWorkgroupSize(headDim: number): number {
  return Math.min(128, Math.max(32, 2 ** Math.ceil(Math.log2(headDim))));
}

export interface PrefillTiling {
  wg: number; // invocations per workgroup
  queryTile: number; // QT query tokens per workgroup
  keyTile: number; // KT key positions per step
  accPerThread: number; // ceil(QT * HD / wg)
  sharedBytes: number; // workgroup memory used (Q, K, V, score tiles, 3 per-query rows, keyLive)
}

const PREFILL_WG = 64;

/** Largest power of two <= x (x >= 1). */
function floorPow2(x: number): number {
  return 2 ** Math.floor(Math.log2(x));
}

export function prefillTiling(headDim: number): PrefillTiling {
  const fit = floorPow2(Math.max(1, Math.floor(1024 / headDim)));
  const queryTile = Math.min(16, fit);
  const keyTile = Math.min(32, fit);
  const floats = queryTile * headDim + 2 * keyTile * headDim + queryTile * keyTile + 3 * queryTile + keyTile;
  return { wg: PREFILL_WG, queryTile, keyTile, accPerThread: Math.ceil((queryTile * headDim) / PREFILL_WG), sharedBytes: floats * 4 };
}

// ---------------------------------------------------------------------------------------------
// GPU kernels

/** Most invocations per workgroup of the serial attention variants (one (query, head) each); fewer for small counts. */
export const SERIAL_WG = 32;

/** Whether the serial (barrier-free, one invocation per output row) attention variants run here. */
export function serialAttention(ctx: GpuContext, headDim: number): boolean {
  return reductionStyle(ctx) === 'serial' && headDim % 4 === 0;
}

/**
 * How a query row of shaders/attention_serial.wgsl finds its sequence `seq` and key count `len`
 * (bindings 5.. after q, the caches and the block table; out and keyWindow follow the query's own).
 */
const SERIAL_DECODE = {
  QUERY_BINDINGS: [
    '@group(0) @binding(5) var<storage, read> seqLens: array<u32>;          // [nSeqs], current token included',
    '@group(0) @binding(6) var<storage, read_write> out: array<vec4f>;      // [nSeqs, nHeads, HD]',
    '@group(0) @binding(7) var<storage, read> keyWindow: array<vec2u>;      // [nSeqs] (sinks, window); bound only in the windowed variant',
  ].join('\n'),
  ROWS: 'p.nSeqs',
  QUERY_OF: 'let seq = row;\n  let len = min(seqLens[seq], cap);',
};
const SERIAL_PREFILL = {
  QUERY_BINDINGS: [
    '@group(0) @binding(5) var<storage, read> tokenSeq: array<u32>;         // [T] block-table row of each token',
    '@group(0) @binding(6) var<storage, read> tokenPos: array<u32>;         // [T] position of each token',
    '@group(0) @binding(7) var<storage, read_write> out: array<vec4f>;      // [T, nHeads, HD]',
    '@group(0) @binding(8) var<storage, read> keyWindow: array<vec2u>;      // [nSeqs] (sinks, window); bound only in the windowed variant',
  ].join('\n'),
  ROWS: 'p.T',
  QUERY_OF: 'let seq = tokenSeq[row];\n  let len = min(tokenPos[row] + 1u, cap); // keys 0..its position',
};

export const DecodeParams = defineUniforms('Params', { nSeqs: 'u32', nHeads: 'u32', nKvHeads: 'u32', maxBlocksPerSeq: 'u32', scale: 'f32' });
export const PrefillParams = defineUniforms('Params', { T: 'u32', nHeads: 'u32', nKvHeads: 'u32', maxBlocksPerSeq: 'u32', scale: 'f32' });

interface HeadArgs {
  nHeads: number;
  /** Multiplies q·k; default 1/sqrt(headDim). */
  scale?: number;
}

/**
 * The {{WINDOW_OF}} placeholder: the (sinks, window) of sequence `seq`, read from keyWindow in the
 * windowed variant, constant (no sinks, unbounded) otherwise (keyWindow is then not statically
 * used, so it is not in the pipeline's layout).
 */
function windowOf(windowed: boolean): string {
  return windowed ? 'keyWindow[seq]' : `vec2u(0u, ${UNBOUNDED_WINDOW}u)`;
}

/** Guards shared by both kernels: heads, head size, scale, q/out sizes for `rows` query tokens. */
function checkAttention(kernel: string, a: PagedKvGpu & HeadArgs & { q: GPUBuffer; out: GPUBuffer; keyWindow?: GPUBuffer }, rowsName: string, rows: number): number {
  requireDims(kernel, 'shape', { [rowsName]: rows, nHeads: a.nHeads, nKvHeads: a.nKvHeads, headDim: a.headDim });
  if (a.nHeads % a.nKvHeads !== 0) throw new ShapeError(kernel, 'nHeads', `= ${a.nHeads} is not a multiple of nKvHeads = ${a.nKvHeads} (GQA groups must be whole)`);
  if (a.headDim > MAX_HEAD_DIM) throw new ShapeError(kernel, 'headDim', `= ${a.headDim} exceeds the supported maximum ${MAX_HEAD_DIM}`);
  checkPagedKv(kernel, a);
  requireBufferFits(kernel, 'q', a.q, [rows, a.nHeads, a.headDim]);
  requireBufferFits(kernel, 'out', a.out, [rows, a.nHeads, a.headDim]);
  if (a.out === a.q) throw new ShapeError(kernel, 'out', 'must not alias q');
  const scale = a.scale ?? defaultScale(a.headDim);
  if (!Number.isFinite(scale)) throw new ShapeError(kernel, 'scale', `= ${scale} is not finite`);
  if (a.keyWindow) {
    requireBufferFits(kernel, 'keyWindow', a.keyWindow, [a.nSeqs, 2]);
    if (a.keyWindow === a.out) throw new ShapeError(kernel, 'keyWindow', 'must not alias out');
  }
  return scale;
}

export interface AttentionDecodeArgs extends PagedKvGpu, HeadArgs {
  q: GPUBuffer; // [nSeqs, nHeads, headDim] f32, row s is the newest token of block-table row s
  seqLens: GPUBuffer; // [nSeqs] u32, lengths INCLUDING the newest token (its K/V already written)
  out: GPUBuffer; // [nSeqs, nHeads, headDim] f32
  /** [nSeqs, 2] u32 (sinks, window) per block-table row (values the engine's contract: window >= 1); absent: unbounded causal. */
  keyWindow?: GPUBuffer;
}

export function attentionDecode(ctx: GpuContext, a: AttentionDecodeArgs): KernelDispatch {
  const kernel = 'attentionDecode';
  const scale = checkAttention(kernel, a, 'nSeqs', a.nSeqs);
  requireBufferFits(kernel, 'seqLens', a.seqLens, [a.nSeqs]);
  const uniforms = DecodeParams.pack({ nSeqs: a.nSeqs, nHeads: a.nHeads, nKvHeads: a.nKvHeads, maxBlocksPerSeq: a.maxBlocksPerSeq, scale });
  // q [nSeqs, nHeads, hd], K/V caches [nBlocks, 16, nKvHeads, hd], block table [nSeqs, maxBlocksPerSeq], seqLens [nSeqs], out [nSeqs, nHeads, hd], keyWindow [nSeqs, 2]
  const storage = [a.q, a.kCache, a.vCache, a.blockTable, a.seqLens, a.out, ...(a.keyWindow ? [a.keyWindow] : [])];
  const win = a.keyWindow ? '_win' : '';
  if (serialAttention(ctx, a.headDim)) {
    const wg = spreadWorkgroupSize(a.nSeqs * a.nHeads, SERIAL_WG);
    const variant = `attention_decode_serial_f32_hd${a.headDim}_wg${wg}${win}`;
    return makeDispatch(ctx, {
      variant,
      code: () => specialize(serialWgsl, { PARAMS: DecodeParams.wgsl, HD4: a.headDim / 4, WG: wg, BLOCK_SIZE, WINDOW_OF: windowOf(!!a.keyWindow), ...SERIAL_DECODE }, variant),
      uniforms,
      storage,
      workgroups: grid1d(Math.ceil((a.nSeqs * a.nHeads) / wg), ctx.limits.maxComputeWorkgroupsPerDimension),
    });
  }
  const WG = decodeWorkgroupSize(a.headDim);
  const red = reductionPrelude(ctx.features.subgroups);
  const variant = `attention_decode_f32_hd${a.headDim}_wg${WG}_${red.tag}${win}`;
  const values = { PARAMS: DecodeParams.wgsl, HEAD_DIM: a.headDim, WG, DIMS_PER_THREAD: Math.ceil(a.headDim / WG), BLOCK_SIZE, MAX_FN: red.maxFn, WINDOW_OF: windowOf(!!a.keyWindow) };
  return makeDispatch(ctx, {
    variant,
    code: () => specialize(red.prefix + decodeWgsl, values, variant),
    uniforms,
    storage,
    workgroups: grid1d(a.nSeqs * a.nHeads, ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}

export interface AttentionPrefillArgs extends PagedKvGpu, HeadArgs {
  q: GPUBuffer; // [T, nHeads, headDim] f32
  tokenSeq: GPUBuffer; // [T] u32, block-table row (< nSeqs) of each token
  tokenPos: GPUBuffer; // [T] u32, position of each token; it attends to 0..pos of its sequence
  out: GPUBuffer; // [T, nHeads, headDim] f32
  T: number;
  /** [nSeqs, 2] u32 (sinks, window) per block-table row (values the engine's contract: window >= 1); absent: unbounded causal. */
  keyWindow?: GPUBuffer;
}

export function attentionPrefill(ctx: GpuContext, a: AttentionPrefillArgs): KernelDispatch {
  const kernel = 'attentionPrefill';
  const scale = checkAttention(kernel, a, 'T', a.T);
  requireBufferFits(kernel, 'tokenSeq', a.tokenSeq, [a.T]);
  requireBufferFits(kernel, 'tokenPos', a.tokenPos, [a.T]);
  // q [T, nHeads, hd], K/V caches [nBlocks, 16, nKvHeads, hd], block table [nSeqs, maxBlocksPerSeq], tokenSeq/tokenPos [T], out [T, nHeads, hd], keyWindow [nSeqs, 2]
  const storage = [a.q, a.kCache, a.vCache, a.blockTable, a.tokenSeq, a.tokenPos, a.out, ...(a.keyWindow ? [a.keyWindow] : [])];
  const uniforms = PrefillParams.pack({ T: a.T, nHeads: a.nHeads, nKvHeads: a.nKvHeads, maxBlocksPerSeq: a.maxBlocksPerSeq, scale });
  if (serialAttention(ctx, a.headDim)) {
    const wg = spreadWorkgroupSize(a.T * a.nHeads, SERIAL_WG);
    const variant = `attention_prefill_serial_f32_hd${a.headDim}_wg${wg}${a.keyWindow ? '_win' : ''}`;
    return makeDispatch(ctx, {
      variant,
      code: () => specialize(serialWgsl, { PARAMS: PrefillParams.wgsl, HD4: a.headDim / 4, WG: wg, BLOCK_SIZE, WINDOW_OF: windowOf(!!a.keyWindow), ...SERIAL_PREFILL }, variant),
      uniforms,
      storage,
      workgroups: grid1d(Math.ceil((a.T * a.nHeads) / wg), ctx.limits.maxComputeWorkgroupsPerDimension),
    });
  }
  const tiling = prefillTiling(a.headDim);
  const maxShared = ctx.limits.maxComputeWorkgroupStorageSize;
  if (tiling.sharedBytes > maxShared) throw new LimitsTooSmallError('maxComputeWorkgroupStorageSize', tiling.sharedBytes, maxShared, `${kernel} tiles for headDim ${a.headDim}`);
  const variant = `attention_prefill_f32_hd${a.headDim}_q${tiling.queryTile}_k${tiling.keyTile}_wg${tiling.wg}${a.keyWindow ? '_win' : ''}`;
  const values = {
    PARAMS: PrefillParams.wgsl,
    HEAD_DIM: a.headDim,
    WG: tiling.wg,
    QUERY_TILE: tiling.queryTile,
    KEY_TILE: tiling.keyTile,
    ACC_PER_THREAD: tiling.accPerThread,
    BLOCK_SIZE,
    WINDOW_OF: windowOf(!!a.keyWindow),
  };
  const nTiles = Math.ceil(a.T / tiling.queryTile);
  return makeDispatch(ctx, {
    variant,
    code: () => specialize(prefillWgsl, values, variant),
    uniforms,
    storage,
    workgroups: grid1d(nTiles * a.nHeads, ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}
