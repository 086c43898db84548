/**
 * Sampling building blocks over logits [R, V] f32 (V up to a full vocabulary, e.g. 128256):
 * - topK: the k largest (value, id) pairs per row, sorted descending (ties: lowest id first);
 *   one workgroup per chunk of a row, then a merge pass over the chunks' candidates.
 * - argmax: topK with k = 1 (ties: lowest id), ids [R].
 * - sampleCandidates: temperature / top-k / top-p / min-p sampling on those candidates with a
 *   random number per row from a storage buffer. Temperature 0 is greedy.
 * NaN logits count as -inf everywhere. CPU references state the same rules.
 * On a CPU-class device under the fused plan (src/kernels/plan.ts) topK runs its serial variant
 * (shaders/topk_serial.wgsl): one invocation per row (rows > TOPK_CHUNK: per 1024-logit chunk,
 * then one per row for the merge), the
 * same rounds without workgroup memory or barriers, so the same output.
 */
import topkWgsl from '../../shaders/topk.wgsl?raw';
import topkSerialWgsl from '../../shaders/topk_serial.wgsl?raw';
import sampleWgsl from '../../shaders/sample.wgsl?raw';
import { createStorage } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/device.ts';
import { grid1d, makeDispatch, type KernelDispatch } from '../gpu/dispatch.ts';
import { ShapeError } from '../gpu/errors.ts';
import { requireBufferFits, requireDims } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';
import { reductionStyle, spreadWorkgroupSize } from './plan.ts';

/** Largest k topK accepts (its cost grows with k: one workgroup reduction per selected pair). */
export const TOPK_MAX = 256;
const TOPK_WG = 256;
/** Logits per workgroup in the first pass: 16 per invocation. */
export const TOPK_CHUNK = TOPK_WG * 16;
/**
 * Logits per invocation in the serial variant's first pass (CPU-class devices, fused plan) for rows
 * longer than TOPK_CHUNK; shorter rows are one invocation each, in one pass, as in the workgroup variant.
 */
export const TOPK_SERIAL_CHUNK = 1024;
const SAMPLE_WG = 64;

// ---------------------------------------------------------------- CPU references

const key = (v: number) => (Number.isNaN(v) ? -Infinity : v);

/** CPU reference: per row the k best (value, id) pairs, value descending then id ascending. */
export function topKRef(logits: Float32Array, R: number, V: number, k: number): { values: Float32Array; ids: Uint32Array } {
  const values = new Float32Array(R * k);
  const ids = new Uint32Array(R * k);
  for (let r = 0; r < R; r++) {
    const order = Array.from({ length: V }, (_, i) => i);
    order.sort((a, b) => key(logits[r * V + b]) - key(logits[r * V + a]) || a - b);
    for (let j = 0; j < k; j++) {
      values[r * k + j] = key(logits[r * V + order[j]]);
      ids[r * k + j] = order[j];
    }
  }
  return { values, ids };
}

/** CPU reference: index of the largest logit per row, the lowest index on ties (NaN = -inf). */
export function argmaxRef(logits: Float32Array, R: number, V: number): Uint32Array {
  const out = new Uint32Array(R);
  for (let r = 0; r < R; r++) {
    let best = 0;
    for (let i = 1; i < V; i++) if (key(logits[r * V + i]) > key(logits[r * V + best])) best = i;
    out[r] = best;
  }
  return out;
}

/** Per-row sampling settings (per request; several requests can share one batch). */
export interface SamplingSettings {
  temperature: number; // <= 0: greedy
  topP: number; // in [0, 1]; 1 disables
  minP: number; // in [0, 1]; 0 disables
  topK: number; // 0: all k candidates; else min(topK, k)
}

/**
 * Number of candidates kept and their softmax numerators, by the rules of sample.wgsl: top-k,
 * then the smallest prefix with mass >= topP (at least one), then min-p (p_j >= minP * p_max).
 */
export function keptCandidates(values: ArrayLike<number>, s: SamplingSettings): { keep: number; weights: number[] } {
  const k = values.length;
  const n = s.topK > 0 && s.topK < k ? s.topK : k;
  const vmax = values[0];
  const weights = Array.from({ length: n }, (_, j) => Math.exp((values[j] - vmax) / s.temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  let keep = n;
  if (s.topP < 1) {
    let cum = 0;
    for (let j = 0; j < n; j++) {
      cum += weights[j];
      if (cum >= s.topP * total) {
        keep = j + 1;
        break;
      }
    }
  }
  if (s.minP > 0) {
    let m = 1;
    while (m < keep && weights[m] >= s.minP) m++;
    keep = m;
  }
  return { keep, weights };
}

/** CPU reference of sampleCandidates for one row: values sorted descending (from topKRef). */
export function sampleRowRef(values: ArrayLike<number>, ids: ArrayLike<number>, s: SamplingSettings, u: number): number {
  if (!(s.temperature > 0) || !(values[0] > -3.4028234663852886e38)) return ids[0];
  const { keep, weights } = keptCandidates(values, s);
  let kept = 0;
  for (let j = 0; j < keep; j++) kept += weights[j];
  const target = u * kept;
  let cum = 0;
  let last = 0; // rounding past the last sum: the last candidate of nonzero weight (masked ones have none)
  for (let j = 0; j < keep; j++) {
    if (weights[j] > 0) last = j;
    cum += weights[j];
    if (target < cum) return ids[j];
  }
  return ids[last];
}

/** CPU reference of sampleCandidates: candidates [R, k], settings and random numbers per row. */
export function sampleRef(values: Float32Array, ids: Uint32Array, R: number, k: number, settings: readonly SamplingSettings[], random: Float32Array): Uint32Array {
  const out = new Uint32Array(R);
  for (let r = 0; r < R; r++) out[r] = sampleRowRef(values.subarray(r * k, (r + 1) * k), ids.subarray(r * k, (r + 1) * k), settings[r], random[r]);
  return out;
}

/** Bytes of the settings buffer [R] of sample.wgsl's RowSettings {temperature f32, topP f32, minP f32, topK u32}. */
export function packSamplingSettings(settings: readonly SamplingSettings[]): ArrayBuffer {
  const buf = new ArrayBuffer(settings.length * 16);
  const dv = new DataView(buf);
  settings.forEach((s, r) => {
    if (!(s.temperature >= 0 && Number.isFinite(s.temperature))) throw new RangeError(`sampling row ${r}: temperature = ${s.temperature} must be finite and >= 0`);
    if (!(s.topP >= 0 && s.topP <= 1)) throw new RangeError(`sampling row ${r}: topP = ${s.topP} must be in [0, 1]`);
    if (!(s.minP >= 0 && s.minP <= 1)) throw new RangeError(`sampling row ${r}: minP = ${s.minP} must be in [0, 1]`);
    if (!Number.isInteger(s.topK) || s.topK < 0 || s.topK > 0xffffffff) throw new RangeError(`sampling row ${r}: topK = ${s.topK} must be an integer >= 0`);
    dv.setFloat32(r * 16, s.temperature, true);
    dv.setFloat32(r * 16 + 4, s.topP, true);
    dv.setFloat32(r * 16 + 8, s.minP, true);
    dv.setUint32(r * 16 + 12, s.topK, true);
  });
  return buf;
}

// ---------------------------------------------------------------- GPU kernels

export const TopKParams = defineUniforms('Params', { R: 'u32', rowLen: 'u32', chunk: 'u32', nChunks: 'u32', k: 'u32' });
export const SampleParams = defineUniforms('Params', { R: 'u32', k: 'u32' });

export interface TopKArgs {
  logits: GPUBuffer; // [R, V] f32
  values: GPUBuffer; // [R, k] f32 output, sorted descending
  ids: GPUBuffer; // [R, k] u32 output
  R: number;
  V: number;
  k: number;
}

function checkTopK(kernel: string, a: TopKArgs): void {
  requireDims(kernel, 'shape', { R: a.R, V: a.V, k: a.k });
  if (a.k > a.V || a.k > TOPK_MAX) throw new ShapeError(kernel, 'k', `= ${a.k}; it must be <= V (${a.V}) and <= ${TOPK_MAX}`);
  requireBufferFits(kernel, 'logits', a.logits, [a.R, a.V]);
  requireBufferFits(kernel, 'values', a.values, [a.R, a.k]);
  requireBufferFits(kernel, 'ids', a.ids, [a.R, a.k]);
  if (a.values === a.ids || a.values === a.logits || a.ids === a.logits) throw new ShapeError(kernel, 'values/ids', 'must be distinct buffers, not aliasing logits');
}

function topKPass(ctx: GpuContext, pairs: boolean, inValues: GPUBuffer, inIds: GPUBuffer, outValues: GPUBuffer, outIds: GPUBuffer, p: { R: number; rowLen: number; chunk: number; nChunks: number; k: number }): KernelDispatch {
  if (reductionStyle(ctx) === 'serial') {
    const wg = spreadWorkgroupSize(p.R * p.nChunks);
    const name = `topk_${pairs ? 'merge' : 'rows'}_serial_f32_wg${wg}`;
    return makeDispatch(ctx, {
      variant: name,
      code: () => specialize(topkSerialWgsl, { PARAMS: TopKParams.wgsl, PAIRS: pairs, WG: wg }, name),
      uniforms: TopKParams.pack(p),
      storage: [inValues, inIds, outValues, outIds], // [R, rowLen] in, [R, nChunks, k] out
      workgroups: grid1d(Math.ceil((p.R * p.nChunks) / wg), ctx.limits.maxComputeWorkgroupsPerDimension),
    });
  }
  const variant = `topk_${pairs ? 'merge' : 'rows'}_f32_wg${TOPK_WG}`;
  return makeDispatch(ctx, {
    variant,
    code: () => specialize(topkWgsl, { PARAMS: TopKParams.wgsl, PAIRS: pairs, WG: TOPK_WG }, variant),
    uniforms: TopKParams.pack(p),
    storage: [inValues, inIds, outValues, outIds],
    workgroups: grid1d(p.R * p.nChunks, ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}

/**
 * Top-k per row. Rows longer than TOPK_CHUNK take two dispatches: per-chunk top-k into scratch
 * buffers (allocated here, once) and a merge of the chunks' candidates.
 */
export function topK(ctx: GpuContext, a: TopKArgs): KernelDispatch[] {
  checkTopK('topK', a);
  const { R, V, k } = a;
  const chunkLen = reductionStyle(ctx) === 'serial' && V > TOPK_CHUNK ? TOPK_SERIAL_CHUNK : TOPK_CHUNK;
  const nChunks = Math.ceil(V / chunkLen);
  // Pass 1 reads logits only: its ids binding is the logits again (never read, see topk.wgsl).
  if (nChunks === 1) return [topKPass(ctx, false, a.logits, a.logits, a.values, a.ids, { R, rowLen: V, chunk: V, nChunks: 1, k })];
  const partValues = createStorage(ctx, R * nChunks * k * 4, 'topk.partValues'); // [R, nChunks, k] f32
  const partIds = createStorage(ctx, R * nChunks * k * 4, 'topk.partIds'); // [R, nChunks, k] u32
  return [
    topKPass(ctx, false, a.logits, a.logits, partValues, partIds, { R, rowLen: V, chunk: chunkLen, nChunks, k }),
    topKPass(ctx, true, partValues, partIds, a.values, a.ids, { R, rowLen: nChunks * k, chunk: nChunks * k, nChunks: 1, k }),
  ];
}

export interface ArgmaxArgs {
  logits: GPUBuffer; // [R, V] f32
  ids: GPUBuffer; // [R] u32 output
  R: number;
  V: number;
}

/** Greedy decoding: argmax per row (topK with k = 1; its value output goes to a scratch buffer). */
export function argmax(ctx: GpuContext, a: ArgmaxArgs): KernelDispatch[] {
  requireDims('argmax', 'shape', { R: a.R, V: a.V });
  requireBufferFits('argmax', 'logits', a.logits, [a.R, a.V]);
  requireBufferFits('argmax', 'ids', a.ids, [a.R]);
  if (a.ids === a.logits) throw new ShapeError('argmax', 'ids', 'must not alias logits');
  const values = createStorage(ctx, a.R * 4, 'argmax.values'); // [R] f32, the max logits
  return topK(ctx, { logits: a.logits, values, ids: a.ids, R: a.R, V: a.V, k: 1 });
}

export interface SampleArgs {
  values: GPUBuffer; // [R, k] f32 candidates sorted descending (topK output)
  ids: GPUBuffer; // [R, k] u32 candidate token ids
  settings: GPUBuffer; // [R] RowSettings (packSamplingSettings), 16 bytes per row
  random: GPUBuffer; // [R] f32 uniform in [0, 1), rewritten each step
  out: GPUBuffer; // [R] u32 chosen token ids
  R: number;
  k: number;
}

export function sampleCandidates(ctx: GpuContext, a: SampleArgs): KernelDispatch {
  requireDims('sampleCandidates', 'shape', { R: a.R, k: a.k });
  requireBufferFits('sampleCandidates', 'values', a.values, [a.R, a.k]);
  requireBufferFits('sampleCandidates', 'ids', a.ids, [a.R, a.k]);
  requireBufferFits('sampleCandidates', 'settings', a.settings, [a.R, 4]);
  requireBufferFits('sampleCandidates', 'random', a.random, [a.R]);
  requireBufferFits('sampleCandidates', 'out', a.out, [a.R]);
  if ([a.values, a.ids, a.settings, a.random].includes(a.out)) throw new ShapeError('sampleCandidates', 'out', 'must not alias an input');
  const variant = `sample_topk_f32_wg${SAMPLE_WG}`;
  return makeDispatch(ctx, {
    variant,
    code: () => specialize(sampleWgsl, { PARAMS: SampleParams.wgsl, WG: SAMPLE_WG }, variant),
    uniforms: SampleParams.pack({ R: a.R, k: a.k }),
    storage: [a.values, a.ids, a.settings, a.random, a.out],
    workgroups: grid1d(Math.ceil(a.R / SAMPLE_WG), ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}
