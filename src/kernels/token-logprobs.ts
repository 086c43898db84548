/**
 * Log-probabilities of given target tokens, the training loss's input (DPO sums them over the
 * response tokens of each sequence), and their gradient w.r.t. the logits:
 *   logp_t = logits[t, target_t] − lse_t,   lse_t = log Σ_c exp(logits[t, c])  (max-subtracted)
 *   dlogits[t, c] = dlogp_t · (onehot(target_t)[c] − softmax(logits_t)[c])
 * GPU: one workgroup per row, a logsumexp (online max/sum per invocation, then a workgroup max and
 * a rescaled tree sum, as softmax.wgsl). The backward recomputes lse rather than saving it: one more
 * pass over the logits, negligible next to the lm_head matmul that produced them, and no state to
 * keep between forward and backward. A row with dlogp = 0 (a prompt token, not trained) gets zeros.
 * Targets are per-step data in a storage buffer; a target >= V is the caller's bug (the reference
 * throws; the GPU clamps it to V − 1 rather than read out of bounds).
 *
 * Serial variant (CPU-class devices under the fused plan, src/kernels/plan.ts): the same shaders
 * with workgroups of ONE invocation per row and a barrier-free row log-sum-exp
 * (row_logsumexp_serial.wgsl). On SwiftShader the workgroup version's reductions cost 2.8 ms for 32
 * rows of 512 (a DPO step's log-prob unit, about one whole decode step).
 */
import fwdWgsl from '../../shaders/token_logprobs.wgsl?raw';
import bwdWgsl from '../../shaders/token_logprobs_bwd.wgsl?raw';
import type { GpuContext } from '../gpu/device.ts';
import { grid1d, makeDispatch, type KernelDispatch } from '../gpu/dispatch.ts';
import { ShapeError } from '../gpu/errors.ts';
import { requireBufferFits, requireDims, requireElements } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import rowLogSumExpWgsl from '../../shaders/row_logsumexp.wgsl?raw';
import rowLogSumExpSerialWgsl from '../../shaders/row_logsumexp_serial.wgsl?raw';
import { defineUniforms } from '../gpu/uniforms.ts';
import { reductionStyle } from './plan.ts';
import { reductionPrelude } from './softmax.ts';

function checkRef(kernel: string, logits: Float32Array, targets: ArrayLike<number>, T: number, V: number): void {
  requireDims(kernel, 'shape', { T, V });
  requireElements(kernel, 'logits', logits.length, T * V, [T, V]);
  requireElements(kernel, 'targets', targets.length, T, [T]);
  for (let t = 0; t < T; t++) {
    const id = targets[t];
    if (!Number.isInteger(id) || id < 0 || id >= V) throw new ShapeError(kernel, 'targets', `[${t}] = ${id} is not a token id < V = ${V}`);
  }
}

/** lse of row t in f64, max-subtracted. */
function rowLse(logits: Float32Array, t: number, V: number): number {
  let max = -Infinity;
  for (let c = 0; c < V; c++) max = Math.max(max, logits[t * V + c]);
  let sum = 0;
  for (let c = 0; c < V; c++) sum += Math.exp(logits[t * V + c] - max);
  return max + Math.log(sum);
}

/** CPU reference: logp [T] of each row's target. */
export function tokenLogprobsRef(logits: Float32Array, targets: ArrayLike<number>, T: number, V: number): Float32Array {
  checkRef('tokenLogprobsRef', logits, targets, T, V);
  const out = new Float32Array(T);
  for (let t = 0; t < T; t++) out[t] = logits[t * V + targets[t]] - rowLse(logits, t, V);
  return out;
}

/** CPU reference: dlogits [T, V] = dlogp_t · (onehot − softmax). */
export function tokenLogprobsBackwardRef(logits: Float32Array, targets: ArrayLike<number>, dlogp: Float32Array, T: number, V: number): Float32Array {
  checkRef('tokenLogprobsBackwardRef', logits, targets, T, V);
  requireElements('tokenLogprobsBackwardRef', 'dlogp', dlogp.length, T, [T]);
  const d = new Float32Array(T * V);
  for (let t = 0; t < T; t++) {
    const lse = rowLse(logits, t, V);
    for (let c = 0; c < V; c++) d[t * V + c] = dlogp[t] * ((c === targets[t] ? 1 : 0) - Math.exp(logits[t * V + c] - lse));
  }
  return d;
}

export const TokenLogprobsParams = defineUniforms('Params', { T: 'u32', V: 'u32' });

/** Threads per row: vocabularies are large, except in tests. */
function workgroupSize(V: number): number {
  return V <= 512 ? 64 : 256;
}

/** The variant's name, WGSL and workgroup size: serial (one invocation per row) or a workgroup per row. */
function rowKernel(ctx: GpuContext, name: string, body: string, V: number): { variant: string; code: () => string } {
  if (reductionStyle(ctx) === 'serial') {
    const variant = `${name}_serial_f32`;
    return { variant, code: () => specialize(body + rowLogSumExpSerialWgsl, { PARAMS: TokenLogprobsParams.wgsl, WG: 1 }, variant) };
  }
  const WG = workgroupSize(V);
  const red = reductionPrelude(ctx.features.subgroups);
  const variant = `${name}_f32_wg${WG}_${red.tag}`;
  return { variant, code: () => specialize(red.prefix + body + rowLogSumExpWgsl, { PARAMS: TokenLogprobsParams.wgsl, WG, MAX_FN: red.maxFn }, variant) };
}

function checkCommon(kernel: string, a: { logits: GPUBuffer; targets: GPUBuffer; T: number; V: number }): void {
  requireDims(kernel, 'shape', { T: a.T, V: a.V });
  requireBufferFits(kernel, 'logits', a.logits, [a.T, a.V]);
  requireBufferFits(kernel, 'targets', a.targets, [a.T]);
}

export interface TokenLogprobsArgs {
  logits: GPUBuffer; // [T, V] f32
  targets: GPUBuffer; // [T] u32 token ids (the next token of each position)
  logp: GPUBuffer; // [T] f32 output
  T: number;
  V: number;
}

export function tokenLogprobs(ctx: GpuContext, a: TokenLogprobsArgs): KernelDispatch {
  const kernel = 'tokenLogprobs';
  checkCommon(kernel, a);
  requireBufferFits(kernel, 'logp', a.logp, [a.T]);
  if (a.logp === a.logits || a.logp === a.targets) throw new ShapeError(kernel, 'logp', 'must not alias logits or targets');
  return makeDispatch(ctx, {
    ...rowKernel(ctx, 'token_logprobs', fwdWgsl, a.V),
    uniforms: TokenLogprobsParams.pack({ T: a.T, V: a.V }),
    storage: [a.logits, a.targets, a.logp],
    workgroups: grid1d(a.T, ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}

export interface TokenLogprobsBackwardArgs {
  logits: GPUBuffer; // [T, V] f32
  targets: GPUBuffer; // [T] u32
  dlogp: GPUBuffer; // [T] f32 gradient of each logp (0 for untrained positions)
  dlogits: GPUBuffer; // [T, V] f32 output (may NOT alias logits: WebGPU forbids read + write views of one buffer)
  T: number;
  V: number;
}

export function tokenLogprobsBackward(ctx: GpuContext, a: TokenLogprobsBackwardArgs): KernelDispatch {
  const kernel = 'tokenLogprobsBackward';
  checkCommon(kernel, a);
  requireBufferFits(kernel, 'dlogp', a.dlogp, [a.T]);
  requireBufferFits(kernel, 'dlogits', a.dlogits, [a.T, a.V]);
  if ([a.logits, a.targets, a.dlogp].includes(a.dlogits)) throw new ShapeError(kernel, 'dlogits', 'must not alias logits, targets or dlogp');
  return makeDispatch(ctx, {
    ...rowKernel(ctx, 'token_logprobs_bwd', bwdWgsl, a.V),
    uniforms: TokenLogprobsParams.pack({ T: a.T, V: a.V }),
    storage: [a.logits, a.targets, a.dlogp, a.dlogits],
    workgroups: grid1d(a.T, ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}
