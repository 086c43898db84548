/**
 * AdamW family: torch.optim.AdamW over one flat parameter buffer, with torch's global-norm gradient
 * clipping and a NaN/Inf guard, in three dispatches built once and re-encoded every step:
 *
 *   1. adamw_norm_partial  partials[g] = Σ grads² over fixed contiguous chunks (tree sums)
 *   2. adamw_norm_final    one workgroup: norm = sqrt(Σ partials), clip coefficient, skip decision,
 *                          step counter t (GPU-resident, so a skipped step never advances it and
 *                          the host never has to read anything back to keep bias corrections right)
 *   3. adamw_apply         per element: clip, decoupled decay, moments, bias-corrected update;
 *                          leaves p, m, v alone on a skipped step; zeroes the consumed gradient
 *
 * The reduction is deterministic: fixed chunks, fixed trees, one final workgroup. The learning rate
 * is per-step data in a storage buffer (setLr → writeBuffer), the rest are uniforms.
 * Buffers (all f32 unless said): params/grads/m/v [n]; partials [groups]; hyper [4] (lr);
 * stats [4] (sumsq, norm, clip coefficient, lr used); state [4] u32 (t, skipped, last skipped, attempts).
 */
import reduceTreeWgsl from '../../shaders/reduce_tree.wgsl?raw';
import partialWgsl from '../../shaders/adamw_norm_partial.wgsl?raw';
import partialSerialWgsl from '../../shaders/adamw_norm_partial_serial.wgsl?raw';
import finalWgsl from '../../shaders/adamw_norm_final.wgsl?raw';
import applyWgsl from '../../shaders/adamw.wgsl?raw';
import { createStorage, readBuffer } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/device.ts';
import { ShapeError } from '../gpu/errors.ts';
import { grid1d, makeDispatch, releaseDispatches, type KernelDispatch } from '../gpu/dispatch.ts';
import { requireBufferFits, requireDims } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';
import { HyperparameterError } from '../learn/errors.ts';
import { reductionStyle } from './plan.ts';

export const AdamWParams = defineUniforms('Params', {
  n: 'u32', groups: 'u32', chunk: 'u32', clip: 'u32', zeroGrads: 'u32',
  beta1: 'f32', oneMinusBeta1: 'f32', beta2: 'f32', oneMinusBeta2: 'f32', lnBeta1: 'f32', lnBeta2: 'f32',
  eps: 'f32', weightDecay: 'f32', maxNorm: 'f32',
});
const WG = 256;
/** At most this many partial sums (the final pass is one workgroup striding over them). */
const MAX_GROUPS = 1024;
/** Invocations per workgroup of the serial pass 1 (one group each). */
const SERIAL_WG = 64;
/** torch's clip_grad_norm_ epsilon: coef = max_norm / (total_norm + 1e-6). */
export const CLIP_EPS = 1e-6;

export interface AdamWHyper {
  beta1: number; // torch default 0.9
  beta2: number; // 0.999
  eps: number; // 1e-8
  weightDecay: number; // 0.01 (torch.optim.AdamW's default; HF TrainingArguments defaults to 0)
  /** Clip the global gradient L2 norm to this; Infinity (or 0) disables clipping. HF default 1.0. */
  maxGradNorm: number;
}

export const ADAMW_DEFAULTS: AdamWHyper = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 };

export function validateAdamW(h: AdamWHyper): void {
  const bad = (field: string, v: number, rule: string) => new HyperparameterError(`adamw.${field}`, `= ${v}; ${rule}`);
  if (!(h.beta1 >= 0 && h.beta1 < 1)) throw bad('beta1', h.beta1, 'it must be in [0, 1)');
  if (!(h.beta2 >= 0 && h.beta2 < 1)) throw bad('beta2', h.beta2, 'it must be in [0, 1)');
  if (!(Number.isFinite(h.eps) && h.eps >= 0)) throw bad('eps', h.eps, 'it must be a finite number >= 0');
  if (!(Number.isFinite(h.weightDecay) && h.weightDecay >= 0)) throw bad('weightDecay', h.weightDecay, 'it must be a finite number >= 0');
  if (!(h.maxGradNorm >= 0)) throw bad('maxGradNorm', h.maxGradNorm, 'it must be >= 0 (0 or Infinity: no clipping)');
}

function validateLr(lr: number): void {
  if (!(Number.isFinite(lr) && lr >= 0)) throw new HyperparameterError('lr', `= ${lr}; it must be a finite number >= 0`);
}

function clips(h: AdamWHyper): boolean {
  return h.maxGradNorm > 0 && Number.isFinite(h.maxGradNorm);
}

// ---------------------------------------------------------------- CPU reference

/** Optimizer state of the reference: what the GPU keeps in params/m/v and state. */
export interface AdamWRefState {
  params: Float32Array;
  m: Float32Array;
  v: Float32Array;
  step: number; // applied steps (t)
  skipped: number;
}

/** L2 norm of the gradients, summed in f64. */
export function gradNormRef(grads: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < grads.length; i++) s += grads[i] * grads[i];
  return Math.sqrt(s);
}

/**
 * One optimizer step on copies of `state` (torch semantics, f64 arithmetic, f32 storage). Returns
 * the new state, the pre-clip gradient norm and whether the step was skipped (non-finite norm).
 */
export function adamwStepRef(state: AdamWRefState, grads: ArrayLike<number>, lr: number, h: AdamWHyper): { state: AdamWRefState; gradNorm: number; skipped: boolean } {
  validateAdamW(h);
  validateLr(lr);
  const norm = gradNormRef(grads);
  const params = state.params.slice(), m = state.m.slice(), v = state.v.slice();
  if (!Number.isFinite(norm)) return { state: { params, m, v, step: state.step, skipped: state.skipped + 1 }, gradNorm: norm, skipped: true };
  const coef = clips(h) ? Math.min(1, h.maxGradNorm / (norm + CLIP_EPS)) : 1;
  const t = state.step + 1;
  const bc1 = 1 - h.beta1 ** t, bc2 = 1 - h.beta2 ** t;
  for (let i = 0; i < params.length; i++) {
    const g = grads[i] * coef;
    const w = params[i] * (1 - lr * h.weightDecay);
    m[i] = m[i] + (1 - h.beta1) * (g - m[i]);
    v[i] = h.beta2 * v[i] + (1 - h.beta2) * g * g;
    params[i] = w - (lr / bc1) * (m[i] / (Math.sqrt(v[i]) / Math.sqrt(bc2) + h.eps));
  }
  return { state: { params, m, v, step: t, skipped: state.skipped }, gradNorm: norm, skipped: false };
}

// ---------------------------------------------------------------- GPU

export interface AdamWBuffers {
  params: GPUBuffer; // [n] f32, updated in place
  grads: GPUBuffer; // [n] f32, read then zeroed (zeroGrads)
  m: GPUBuffer; // [n] f32 first moments (zero at start)
  v: GPUBuffer; // [n] f32 second moments (zero at start)
  n: number;
}

export interface AdamWStats {
  /** Applied steps so far (torch's `step`, the t of the bias corrections). */
  step: number;
  /** Steps skipped because the gradient norm was NaN or Inf. */
  skipped: number;
  lastSkipped: boolean;
  /** Steps attempted (applied + skipped). */
  attempts: number;
  /** The last step's global gradient L2 norm before clipping (TRL/HF's grad_norm). */
  gradNorm: number;
  clipCoef: number;
  lr: number;
}

export interface AdamW {
  readonly hyper: AdamWHyper;
  /** Norm, final and apply: encode them after the backward, every step; built once. */
  readonly dispatches: KernelDispatch[];
  readonly stats: GPUBuffer; // [4] f32
  readonly state: GPUBuffer; // [4] u32
  /** The learning rate of the next step(s): a 4-byte writeBuffer, no allocation. */
  setLr(lr: number): void;
  /** Small readback of the counters and the last norm (for metrics; never needed to keep going). */
  readStats(): Promise<AdamWStats>;
  destroy(): void;
}

export interface AdamWOptions {
  /** Zero the gradients after each step (default true: torch's step() then zero_grad()). */
  zeroGrads?: boolean;
}

/** An optimizer over `b`, owning its small buffers (partials, hyper, stats, state). */
export function createAdamW(ctx: GpuContext, b: AdamWBuffers, hyper: AdamWHyper, options: AdamWOptions = {}): AdamW {
  const K = 'adamw';
  validateAdamW(hyper);
  requireDims(K, 'n', { n: b.n });
  for (const [name, buf] of Object.entries({ params: b.params, grads: b.grads, m: b.m, v: b.v })) requireBufferFits(K, name, buf, [b.n]);
  const bufs = [b.params, b.grads, b.m, b.v];
  if (new Set(bufs).size !== 4) throw new ShapeError(K, 'buffers', 'params, grads, m and v must be four different buffers');
  const groups = Math.min(MAX_GROUPS, Math.ceil(b.n / WG));
  const chunk = Math.ceil(b.n / groups);
  const partials = createStorage(ctx, groups * 4, 'adamw.partials'); // [groups] f32
  const hyperBuf = createStorage(ctx, 16, 'adamw.hyper'); // [4] f32: lr
  const stats = createStorage(ctx, 16, 'adamw.stats'); // [4] f32
  const state = createStorage(ctx, 16, 'adamw.state'); // [4] u32, zero-initialised: t = 0
  const uniforms = AdamWParams.pack({
    n: b.n, groups, chunk, clip: clips(hyper) ? 1 : 0, zeroGrads: options.zeroGrads === false ? 0 : 1,
    beta1: hyper.beta1, oneMinusBeta1: 1 - hyper.beta1, beta2: hyper.beta2, oneMinusBeta2: 1 - hyper.beta2,
    // ln(0) is -Infinity (beta = 0: plain RMSprop-like); any finite very negative number gives the same 1 - beta^t = 1.
    lnBeta1: Math.max(Math.log(hyper.beta1), -1e30), lnBeta2: Math.max(Math.log(hyper.beta2), -1e30),
    eps: hyper.eps, weightDecay: hyper.weightDecay, maxNorm: clips(hyper) ? hyper.maxGradNorm : 0,
  });
  const lrHost = new Float32Array(1); // reused by setLr
  const maxWg = ctx.limits.maxComputeWorkgroupsPerDimension;
  const reducing = (src: string, name: string) => () => specialize(`${reduceTreeWgsl}\n${src}`, { PARAMS: AdamWParams.wgsl, WG }, name);
  // Pass 1 (grads [n] -> partials [groups]): a workgroup per group with a tree sum, or on a
  // CPU-class device under the fused plan one invocation per group (no barriers).
  const partial = reductionStyle(ctx) === 'serial'
    ? makeDispatch(ctx, { variant: `adamw_norm_partial_serial_wg${SERIAL_WG}`, code: () => specialize(partialSerialWgsl, { PARAMS: AdamWParams.wgsl, WG: SERIAL_WG }, 'adamw_norm_partial_serial'), uniforms, storage: [b.grads, partials], workgroups: grid1d(Math.ceil(groups / SERIAL_WG), maxWg) })
    : makeDispatch(ctx, { variant: `adamw_norm_partial_wg${WG}`, code: reducing(partialWgsl, 'adamw_norm_partial'), uniforms, storage: [b.grads, partials], workgroups: grid1d(groups, maxWg) });
  const dispatches = [
    partial,
    makeDispatch(ctx, { variant: `adamw_norm_final_wg${WG}`, code: reducing(finalWgsl, 'adamw_norm_final'), uniforms, storage: [partials, hyperBuf, stats, state], workgroups: [1, 1, 1] }),
    makeDispatch(ctx, { variant: `adamw_apply_wg${WG}`, code: () => specialize(applyWgsl, { PARAMS: AdamWParams.wgsl, WG }, 'adamw_apply'), uniforms, storage: [b.params, b.grads, b.m, b.v, stats, state], workgroups: grid1d(Math.ceil(b.n / WG), maxWg) }),
  ];
  return {
    hyper,
    dispatches,
    stats,
    state,
    setLr(lr: number) {
      validateLr(lr);
      lrHost[0] = lr;
      ctx.device.queue.writeBuffer(hyperBuf, 0, lrHost);
    },
    async readStats() {
      const s = new Float32Array(await readBuffer(ctx, stats, 16));
      const u = new Uint32Array(await readBuffer(ctx, state, 16));
      return { step: u[0], skipped: u[1], lastSkipped: u[2] !== 0, attempts: u[3], gradNorm: s[1], clipCoef: s[2], lr: s[3] };
    },
    destroy() {
      releaseDispatches(dispatches);
      for (const x of [partials, hyperBuf, stats, state]) x.destroy();
    },
  };
}
