/**
 * Log-probabilities of sampled tokens and of the top candidates, computed on the GPU per row
 * (a logsumexp over the row's logits) so the host reads back 1 + 2L numbers per row, never the
 * logits. They are log-softmax values of the logits the sampler saw (after penalties, at
 * temperature 1): the model's distribution, not the truncated/tempered one sampled from.
 */
import logprobsWgsl from '../../shaders/logprobs.wgsl?raw';
import type { GpuContext } from '../gpu/device.ts';
import { grid1d, makeDispatch, type KernelDispatch } from '../gpu/dispatch.ts';
import { ShapeError } from '../gpu/errors.ts';
import { requireBufferFits, requireDims } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import rowLogSumExpWgsl from '../../shaders/row_logsumexp.wgsl?raw';
import { defineUniforms } from '../gpu/uniforms.ts';
import { reductionPrelude } from './softmax.ts';
import { topKRef } from './sampling.ts';

const WG = 64;

export interface RowLogprobs {
  /** Log-probability of the chosen token. */
  chosen: number;
  /** The L best tokens, most likely first. */
  top: { id: number; logprob: number }[];
}

/** CPU reference (f64 logsumexp; NaN logits count as -inf like top-k). */
export function logprobsRef(logits: Float32Array, R: number, V: number, chosen: ArrayLike<number>, L: number): RowLogprobs[] {
  const { values, ids } = topKRef(logits, R, V, Math.max(L, 1));
  const out: RowLogprobs[] = [];
  for (let r = 0; r < R; r++) {
    let m = -Infinity;
    for (let c = 0; c < V; c++) m = Math.max(m, logits[r * V + c]);
    let s = 0;
    for (let c = 0; c < V; c++) s += Math.exp(logits[r * V + c] - m);
    const lse = m + Math.log(s);
    const top = Array.from({ length: L }, (_, j) => ({ id: ids[r * Math.max(L, 1) + j], logprob: values[r * Math.max(L, 1) + j] - lse }));
    out.push({ chosen: logits[r * V + chosen[r]] - lse, top });
  }
  return out;
}

/** Words per row of the output: the chosen token's logprob, then L (id bits, logprob) pairs. */
export function logprobsRowWords(L: number): number {
  return 1 + 2 * L;
}

/** Unpack rows of the kernel's output (u32 words as read back: ids, and f32 bits of logprobs). */
export function unpackLogprobs(words: Uint32Array, R: number, L: number): RowLogprobs[] {
  const n = logprobsRowWords(L);
  const f = new Float32Array(words.buffer, words.byteOffset, words.length);
  return Array.from({ length: R }, (_, r) => ({
    chosen: f[r * n],
    top: Array.from({ length: L }, (_, j) => ({ id: words[r * n + 1 + 2 * j], logprob: f[r * n + 2 + 2 * j] })),
  }));
}

export const LogprobsParams = defineUniforms('Params', { R: 'u32', V: 'u32', k: 'u32', L: 'u32' });

export interface LogprobsArgs {
  logits: GPUBuffer; // [R, V] f32
  candValues: GPUBuffer; // [R, k] f32 top-k values, sorted descending
  candIds: GPUBuffer; // [R, k] u32
  chosen: GPUBuffer; // [R] u32 sampled ids
  out: GPUBuffer; // [R, 1 + 2L] u32: ids, and f32 bit patterns of logprobs
  R: number;
  V: number;
  k: number;
  /** Top candidates reported per row, <= k (0: the chosen token only). */
  L: number;
}

export function logprobs(ctx: GpuContext, a: LogprobsArgs): KernelDispatch {
  const kernel = 'logprobs';
  requireDims(kernel, 'shape', { R: a.R, V: a.V, k: a.k });
  if (!Number.isInteger(a.L) || a.L < 0 || a.L > a.k) throw new ShapeError(kernel, 'L', `= ${a.L}; it must be an integer in [0, k = ${a.k}]`);
  requireBufferFits(kernel, 'logits', a.logits, [a.R, a.V]);
  requireBufferFits(kernel, 'candValues', a.candValues, [a.R, a.k]);
  requireBufferFits(kernel, 'candIds', a.candIds, [a.R, a.k]);
  requireBufferFits(kernel, 'chosen', a.chosen, [a.R]);
  requireBufferFits(kernel, 'out', a.out, [a.R, logprobsRowWords(a.L)]);
  if ([a.logits, a.candValues, a.candIds, a.chosen].includes(a.out)) throw new ShapeError(kernel, 'out', 'must not alias an input');
  const red = reductionPrelude(ctx.features.subgroups);
  const variant = `logprobs_f32_wg${WG}_${red.tag}`;
  return makeDispatch(ctx, {
    variant,
    code: () => specialize(red.prefix + logprobsWgsl + rowLogSumExpWgsl, { PARAMS: LogprobsParams.wgsl, WG, MAX_FN: red.maxFn }, variant),
    uniforms: LogprobsParams.pack({ R: a.R, V: a.V, k: a.k, L: a.L }),
    storage: [a.logits, a.candValues, a.candIds, a.chosen, a.out],
    workgroups: grid1d(a.R, ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}
