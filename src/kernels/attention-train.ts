/**
 * Attention for training: dense causal GQA attention of ONE sequence with contiguous (non-paged)
 * activations, forward (saving the per-row log-sum-exp) and backward (dq, dk, dv).
 * Layouts: q, out, dout [T, nHeads, hd]; k, v [T, nKvHeads, hd] (key j at position j); lse, delta
 * [T, nHeads]. Query i attends to keys 0..i; query head h reads KV head floor(h / (nHeads / nKvHeads)).
 * Key window (the inference kernels' mask, src/kernels/attention.ts keyVisible, one for the whole
 * sequence): query i sees key j <= i iff j < sinks or i - j < window (default: no sinks,
 * UNBOUNDED_WINDOW). The kernels visit only visible (query, key) pairs, so masked pairs get
 * exactly zero gradient; sinks and window are uniforms (a training step is one sequence).
 *
 * Backward (FlashAttention-2 recipe, scores recomputed from q, k and the saved lse):
 *   D_i = rowsum(dout_i ∘ out_i);  P_ij = exp(s_ij − lse_i);  dV_j = Σ_i P_ij dout_i;
 *   dP_ij = dout_i · v_j;  dS_ij = P_ij (dP_ij − D_i);  dq_i = scale Σ_j dS_ij k_j;  dk_j = scale Σ_i dS_ij q_i
 * GQA: dk/dv of a KV head sum over the query heads of its group.
 *
 * GPU kernels (f32, deterministic: no atomics, every sum in a fixed order):
 * - forward (shaders/attention_train_fwd.wgsl): one workgroup per (query, head), keys in tiles of WG
 *   with an online softmax, as the paged decode kernel; writes out and lse.
 * - backward, two dispatches in order: dq (shaders/attention_train_bwd_dq.wgsl), one workgroup per
 *   (query, head) over its keys, which also writes D into `delta`; then dk/dv
 *   (shaders/attention_train_bwd_dkdv.wgsl), one workgroup per (key, KV head) over the (query ≥ key,
 *   query head of the group) pairs, reading D. Each gradient row is owned by one workgroup, so no
 *   two workgroups ever add to the same element.
 * - serial variants (shaders/attention_train_*_serial.wgsl), chosen on a CPU-class device under the
 *   fused plan (src/kernels/plan.ts) when headDim % 4 == 0: the same three kernels with one
 *   invocation per (query, head) or (key, KV head), every sum a register loop in the same fixed
 *   order, no workgroup memory and no barrier.
 * Known cost: no query tiling, so every workgroup re-reads the K/V (or Q/dout) rows it needs
 * (O(T² · heads · hd) loads, mostly cache hits); fine for the short sequences of on-device tuning.
 */
import fwdWgsl from '../../shaders/attention_train_fwd.wgsl?raw';
import dqWgsl from '../../shaders/attention_train_bwd_dq.wgsl?raw';
import dkdvWgsl from '../../shaders/attention_train_bwd_dkdv.wgsl?raw';
import fwdSerialWgsl from '../../shaders/attention_train_fwd_serial.wgsl?raw';
import dqSerialWgsl from '../../shaders/attention_train_bwd_dq_serial.wgsl?raw';
import dkdvSerialWgsl from '../../shaders/attention_train_bwd_dkdv_serial.wgsl?raw';
import { createStorage } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/device.ts';
import { grid1d, makeDispatch, type KernelDispatch } from '../gpu/dispatch.ts';
import { ShapeError } from '../gpu/errors.ts';
import { requireBufferFits, requireDims, requireElements } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';
import { decodeWorkgroupSize, defaultScale, keyVisible, MAX_HEAD_DIM, SERIAL_WG, serialAttention, UNBOUNDED_WINDOW } from './attention.ts';
import { reductionPrelude } from './softmax.ts';

// ---------------------------------------------------------------------------------------------
// CPU references (f64 inside, f32 out)

function checkRef(kernel: string, T: number, nHeads: number, nKvHeads: number, headDim: number, arrays: Record<string, [Float32Array, number]>): number {
  requireDims(kernel, 'shape', { T, nHeads, nKvHeads, headDim });
  if (nHeads % nKvHeads) throw new ShapeError(kernel, 'nHeads', `= ${nHeads} is not a multiple of nKvHeads = ${nKvHeads}`);
  for (const [name, [a, heads]] of Object.entries(arrays)) requireElements(kernel, name, a.length, T * heads * (name === 'lse' ? 1 : headDim), name === 'lse' ? [T, heads] : [T, heads, headDim]);
  return nHeads / nKvHeads;
}

/** One sequence's key window: the first `sinks` keys plus the last `window` up to the query. */
export interface TrainKeyWindow {
  sinks: number;
  window: number; // >= 1; UNBOUNDED_WINDOW: plain causal
}

const NO_WINDOW: TrainKeyWindow = { sinks: 0, window: UNBOUNDED_WINDOW };

/** A model's training key window: its sliding window (config.slidingWindow), no sinks; none: plain causal. */
export function slidingKeyWindow(slidingWindow: number | null): TrainKeyWindow {
  return { sinks: 0, window: slidingWindow ?? UNBOUNDED_WINDOW };
}

function checkWindow(kernel: string, w: TrainKeyWindow): void {
  if (!Number.isInteger(w.sinks) || w.sinks < 0 || w.sinks > 0xffffffff) throw new ShapeError(kernel, 'sinks', `= ${w.sinks} is not a u32`);
  if (!Number.isInteger(w.window) || w.window < 1 || w.window > UNBOUNDED_WINDOW) throw new ShapeError(kernel, 'window', `= ${w.window} is not a u32 >= 1 (a query must see itself)`);
}

function dot(a: Float32Array, ao: number, b: Float32Array, bo: number, n: number): number {
  let s = 0;
  for (let d = 0; d < n; d++) s += a[ao + d] * b[bo + d];
  return s;
}

/** Forward: out [T, nHeads, hd] and lse [T, nHeads] (log-sum-exp of the scaled, masked scores). */
export function causalAttentionRef(q: Float32Array, k: Float32Array, v: Float32Array, T: number, nHeads: number, nKvHeads: number, headDim: number, scale = defaultScale(headDim), window: TrainKeyWindow = NO_WINDOW): { out: Float32Array; lse: Float32Array } {
  const group = checkRef('causalAttentionRef', T, nHeads, nKvHeads, headDim, { q: [q, nHeads], k: [k, nKvHeads], v: [v, nKvHeads] });
  checkWindow('causalAttentionRef', window);
  const sees = (i: number, j: number) => keyVisible(j, i, window.sinks, window.window);
  const hd = headDim;
  const out = new Float32Array(T * nHeads * hd);
  const lse = new Float32Array(T * nHeads);
  const s = new Float64Array(T);
  const acc = new Float64Array(hd);
  for (let i = 0; i < T; i++) {
    for (let h = 0; h < nHeads; h++) {
      const g = Math.floor(h / group);
      const qo = (i * nHeads + h) * hd;
      let max = -Infinity;
      for (let j = 0; j <= i; j++) {
        if (!sees(i, j)) continue;
        s[j] = dot(q, qo, k, (j * nKvHeads + g) * hd, hd) * scale;
        max = Math.max(max, s[j]);
      }
      let sum = 0;
      acc.fill(0);
      for (let j = 0; j <= i; j++) {
        if (!sees(i, j)) continue;
        const p = Math.exp(s[j] - max);
        sum += p;
        const vo = (j * nKvHeads + g) * hd;
        for (let d = 0; d < hd; d++) acc[d] += p * v[vo + d];
      }
      for (let d = 0; d < hd; d++) out[qo + d] = acc[d] / sum;
      lse[i * nHeads + h] = max + Math.log(sum);
    }
  }
  return { out, lse };
}

/** Backward: dq [T, nHeads, hd], dk and dv [T, nKvHeads, hd] from the forward's out and lse. */
export function causalAttentionBackwardRef(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  out: Float32Array,
  lse: Float32Array,
  dout: Float32Array,
  T: number,
  nHeads: number,
  nKvHeads: number,
  headDim: number,
  scale = defaultScale(headDim),
  window: TrainKeyWindow = NO_WINDOW,
): { dq: Float32Array; dk: Float32Array; dv: Float32Array } {
  const group = checkRef('causalAttentionBackwardRef', T, nHeads, nKvHeads, headDim, {
    q: [q, nHeads], k: [k, nKvHeads], v: [v, nKvHeads], out: [out, nHeads], lse: [lse, nHeads], dout: [dout, nHeads],
  });
  checkWindow('causalAttentionBackwardRef', window);
  const hd = headDim;
  const dq = new Float64Array(T * nHeads * hd);
  const dk = new Float64Array(T * nKvHeads * hd);
  const dv = new Float64Array(T * nKvHeads * hd);
  for (let i = 0; i < T; i++) {
    for (let h = 0; h < nHeads; h++) {
      const g = Math.floor(h / group);
      const qo = (i * nHeads + h) * hd;
      const D = dot(dout, qo, out, qo, hd);
      for (let j = 0; j <= i; j++) {
        if (!keyVisible(j, i, window.sinks, window.window)) continue; // P = 0: no gradient
        const ko = (j * nKvHeads + g) * hd;
        const P = Math.exp(dot(q, qo, k, ko, hd) * scale - lse[i * nHeads + h]);
        const dS = P * (dot(dout, qo, v, ko, hd) - D);
        for (let d = 0; d < hd; d++) {
          dv[ko + d] += P * dout[qo + d];
          dq[qo + d] += scale * dS * k[ko + d];
          dk[ko + d] += scale * dS * q[qo + d];
        }
      }
    }
  }
  return { dq: Float32Array.from(dq), dk: Float32Array.from(dk), dv: Float32Array.from(dv) };
}

// ---------------------------------------------------------------------------------------------
// GPU kernels

export const AttentionTrainParams = defineUniforms('Params', { T: 'u32', nHeads: 'u32', nKvHeads: 'u32', scale: 'f32', sinks: 'u32', window: 'u32' });

interface AttentionTrainShape {
  T: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  /** Multiplies q·k; default 1/sqrt(headDim). */
  scale?: number;
  /** Key window of the sequence (default: none, plain causal). */
  window?: TrainKeyWindow;
}

/** Shape guards shared by forward and backward; returns the scale. */
function checkShape(kernel: string, a: AttentionTrainShape): number {
  checkWindow(kernel, a.window ?? NO_WINDOW);
  requireDims(kernel, 'shape', { T: a.T, nHeads: a.nHeads, nKvHeads: a.nKvHeads, headDim: a.headDim });
  if (a.nHeads % a.nKvHeads !== 0) throw new ShapeError(kernel, 'nHeads', `= ${a.nHeads} is not a multiple of nKvHeads = ${a.nKvHeads} (GQA groups must be whole)`);
  if (a.headDim > MAX_HEAD_DIM) throw new ShapeError(kernel, 'headDim', `= ${a.headDim} exceeds the supported maximum ${MAX_HEAD_DIM}`);
  const scale = a.scale ?? defaultScale(a.headDim);
  if (!Number.isFinite(scale)) throw new ShapeError(kernel, 'scale', `= ${scale} is not finite`);
  return scale;
}

/** Every buffer fits its shape, and no output is bound twice or also bound as an input. */
function checkBuffers(kernel: string, inputs: Record<string, [GPUBuffer, number[]]>, outputs: Record<string, [GPUBuffer, number[]]>): void {
  for (const [name, [b, shape]] of [...Object.entries(inputs), ...Object.entries(outputs)]) requireBufferFits(kernel, name, b, shape);
  const ins = Object.values(inputs).map(([b]) => b);
  const seen: GPUBuffer[] = [];
  for (const [name, [b]] of Object.entries(outputs)) {
    if (ins.includes(b) || seen.includes(b)) throw new ShapeError(kernel, name, 'must not alias another argument');
    seen.push(b);
  }
}

function values(a: AttentionTrainShape, extra: Record<string, string | number> = {}): { WG: number; values: Record<string, string | number> } {
  const WG = decodeWorkgroupSize(a.headDim);
  return { WG, values: { PARAMS: AttentionTrainParams.wgsl, HEAD_DIM: a.headDim, WG, DIMS_PER_THREAD: Math.ceil(a.headDim / WG), ...extra } };
}

export interface CausalAttentionForwardArgs extends AttentionTrainShape {
  q: GPUBuffer; // [T, nHeads, hd] f32 (after RoPE)
  k: GPUBuffer; // [T, nKvHeads, hd] f32 (after RoPE)
  v: GPUBuffer; // [T, nKvHeads, hd] f32
  out: GPUBuffer; // [T, nHeads, hd] f32 output
  lse: GPUBuffer; // [T, nHeads] f32 output, saved for the backward
}

export function causalAttentionForwardTrain(ctx: GpuContext, a: CausalAttentionForwardArgs): KernelDispatch {
  const kernel = 'causalAttentionForwardTrain';
  const scale = checkShape(kernel, a);
  const { T, nHeads, nKvHeads, headDim: hd } = a;
  checkBuffers(kernel, { q: [a.q, [T, nHeads, hd]], k: [a.k, [T, nKvHeads, hd]], v: [a.v, [T, nKvHeads, hd]] }, { out: [a.out, [T, nHeads, hd]], lse: [a.lse, [T, nHeads]] });
  const { sinks, window } = a.window ?? NO_WINDOW;
  const uniforms = AttentionTrainParams.pack({ T, nHeads, nKvHeads, scale, sinks, window });
  if (serialAttention(ctx, hd)) {
    const variant = `attention_train_fwd_serial_f32_hd${hd}_wg${SERIAL_WG}`;
    return makeDispatch(ctx, {
      variant,
      code: () => specialize(fwdSerialWgsl, { PARAMS: AttentionTrainParams.wgsl, HD4: hd / 4, WG: SERIAL_WG }, variant),
      uniforms,
      storage: [a.q, a.k, a.v, a.out, a.lse], // q, out [T, nHeads, hd]; k, v [T, nKvHeads, hd]; lse [T, nHeads]
      workgroups: grid1d(Math.ceil((T * nHeads) / SERIAL_WG), ctx.limits.maxComputeWorkgroupsPerDimension),
    });
  }
  const red = reductionPrelude(ctx.features.subgroups);
  const v = values(a, { MAX_FN: red.maxFn });
  const variant = `attention_train_fwd_f32_hd${hd}_wg${v.WG}_${red.tag}`;
  return makeDispatch(ctx, {
    variant,
    code: () => specialize(red.prefix + fwdWgsl, v.values, variant),
    uniforms,
    storage: [a.q, a.k, a.v, a.out, a.lse],
    workgroups: grid1d(T * nHeads, ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}

export interface CausalAttentionBackwardArgs extends AttentionTrainShape {
  q: GPUBuffer; // [T, nHeads, hd] f32, as in the forward
  k: GPUBuffer; // [T, nKvHeads, hd] f32
  v: GPUBuffer; // [T, nKvHeads, hd] f32
  out: GPUBuffer; // [T, nHeads, hd] f32, the forward's output
  lse: GPUBuffer; // [T, nHeads] f32, the forward's log-sum-exp
  dout: GPUBuffer; // [T, nHeads, hd] f32, gradient of out
  dq: GPUBuffer; // [T, nHeads, hd] f32 output
  dk: GPUBuffer; // [T, nKvHeads, hd] f32 output
  dv: GPUBuffer; // [T, nKvHeads, hd] f32 output
  /** [T, nHeads] f32 scratch for D_i = rowsum(dout ∘ out); allocated once here when omitted. */
  delta?: GPUBuffer;
}

/** Two dispatches, to be encoded in this order: dq (also writes delta), then dk/dv (reads it). */
export function causalAttentionBackward(ctx: GpuContext, a: CausalAttentionBackwardArgs): KernelDispatch[] {
  const kernel = 'causalAttentionBackward';
  const scale = checkShape(kernel, a);
  const { T, nHeads, nKvHeads, headDim: hd } = a;
  const qShape = [T, nHeads, hd], kvShape = [T, nKvHeads, hd];
  const outputs: Record<string, [GPUBuffer, number[]]> = { dq: [a.dq, qShape], dk: [a.dk, kvShape], dv: [a.dv, kvShape] };
  if (a.delta) outputs.delta = [a.delta, [T, nHeads]];
  checkBuffers(kernel, { q: [a.q, qShape], k: [a.k, kvShape], v: [a.v, kvShape], out: [a.out, qShape], lse: [a.lse, [T, nHeads]], dout: [a.dout, qShape] }, outputs);
  // Allocated only once the guards passed, and once per dispatch pair (not per step).
  const delta = a.delta ?? createStorage(ctx, T * nHeads * 4, 'attention_train.delta'); // [T, nHeads] f32
  const { sinks, window } = a.window ?? NO_WINDOW;
  const uniforms = AttentionTrainParams.pack({ T, nHeads, nKvHeads, scale, sinks, window });
  const maxWg = ctx.limits.maxComputeWorkgroupsPerDimension;
  if (serialAttention(ctx, hd)) {
    const serialValues = { PARAMS: AttentionTrainParams.wgsl, HD4: hd / 4, WG: SERIAL_WG };
    const dqName = `attention_train_bwd_dq_serial_f32_hd${hd}_wg${SERIAL_WG}`;
    const kvName = `attention_train_bwd_dkdv_serial_f32_hd${hd}_wg${SERIAL_WG}`;
    return [
      // reads q, k, v, out, dout, lse; writes dq [T, nHeads, hd] and delta [T, nHeads]
      makeDispatch(ctx, { variant: dqName, code: () => specialize(dqSerialWgsl, serialValues, dqName), uniforms, storage: [a.q, a.k, a.v, a.out, a.dout, a.lse, a.dq, delta], workgroups: grid1d(Math.ceil((T * nHeads) / SERIAL_WG), maxWg) }),
      // reads q, k, v, dout, lse, delta; writes dk, dv [T, nKvHeads, hd]
      makeDispatch(ctx, { variant: kvName, code: () => specialize(dkdvSerialWgsl, serialValues, kvName), uniforms, storage: [a.q, a.k, a.v, a.dout, a.lse, delta, a.dk, a.dv], workgroups: grid1d(Math.ceil((T * nKvHeads) / SERIAL_WG), maxWg) }),
    ];
  }
  const red = reductionPrelude(false); // only workgroupSum is needed: the tree (fixed order)
  const spec = values(a);
  const dqVariant = `attention_train_bwd_dq_f32_hd${hd}_wg${spec.WG}`;
  const dq = makeDispatch(ctx, {
    variant: dqVariant,
    code: () => specialize(red.prefix + dqWgsl, spec.values, dqVariant),
    uniforms,
    storage: [a.q, a.k, a.v, a.out, a.dout, a.lse, a.dq, delta],
    workgroups: grid1d(T * nHeads, ctx.limits.maxComputeWorkgroupsPerDimension),
  });
  const kvVariant = `attention_train_bwd_dkdv_f32_hd${hd}_wg${spec.WG}`;
  const dkdv = makeDispatch(ctx, {
    variant: kvVariant,
    code: () => specialize(dkdvWgsl, spec.values, kvVariant),
    uniforms,
    storage: [a.q, a.k, a.v, a.dout, a.lse, delta, a.dk, a.dv],
    workgroups: grid1d(T * nKvHeads, ctx.limits.maxComputeWorkgroupsPerDimension),
  });
  return [dq, dkdv];
}
