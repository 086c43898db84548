/**
 * LoRA family (Hugging Face PEFT conventions). A LoRA on a Linear W [out, in] has A [r, in] and
 * B [out, r]; the layer computes y = x·Wᵀ + scale·(x·Aᵀ)·Bᵀ, scale = lora_alpha / r (or
 * lora_alpha / sqrt(r) with use_rslora).
 *
 * Serving: an "adapter bank" keeps several adapters resident for one Linear (one layer, one module):
 *   A bank [nSlots, r, in]  f32, slot s at element aOffset + s·r·in
 *   B bank [nSlots, out, r] f32, slot s at element bOffset + s·out·r
 *   scales [nSlots]         f32, the scale of the adapter in each slot (0 for an empty slot)
 *   ids    [M]              u32, per row of x: the slot of that row's adapter, or NO_ADAPTER
 * r is the bank's rank; an adapter of smaller rank is zero-padded (extra rows of A and columns of
 * B are 0 and add nothing), a module an adapter does not target holds zeros. The A and B banks of
 * all modules may share one buffer (offsets), which is what src/learn/bank.ts does. loraForward
 * adds the delta into the base matmul's output y in place, so one batch mixes adapters freely.
 *
 * Training (one adapter, A and B at element offsets of a flat parameter buffer, the gradients at
 * the same offsets of a flat gradient buffer): loraBackward ACCUMULATES dA and dB (+=, so
 * micro-batches and both sequences of a DPO pair add up; the optimizer zeroes them after the step)
 * and adds the input-gradient contribution into an existing dx.
 *
 * CPU references are the spec (exact signatures are composed by the whole-model gradient check).
 *
 * Variants: the reducing kernels (shrink, bwd_hg) split the reduced dimension over a workgroup
 * with a tree sum; on a CPU-class device under the fused plan (src/kernels/plan.ts) their serial
 * variants run instead: one invocation per (row, rank) cell looping in registers, no barriers.
 */
import reduceTreeWgsl from '../../shaders/reduce_tree.wgsl?raw';
import shrinkWgsl from '../../shaders/lora_shrink.wgsl?raw';
import shrinkSerialWgsl from '../../shaders/lora_shrink_serial.wgsl?raw';
import bwdHgSerialWgsl from '../../shaders/lora_bwd_hg_serial.wgsl?raw';
import expandWgsl from '../../shaders/lora_expand.wgsl?raw';
import bwdHgWgsl from '../../shaders/lora_bwd_hg.wgsl?raw';
import bwdDbWgsl from '../../shaders/lora_bwd_db.wgsl?raw';
import bwdDaWgsl from '../../shaders/lora_bwd_da.wgsl?raw';
import bwdDxWgsl from '../../shaders/lora_bwd_dx.wgsl?raw';
import type { GpuContext } from '../gpu/device.ts';
import { ShapeError } from '../gpu/errors.ts';
import { grid1d, makeDispatch, type KernelDispatch } from '../gpu/dispatch.ts';
import { requireBufferFits, requireDims, requireElements } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';
import { reductionStyle } from './plan.ts';

/** Row id meaning "this row has no adapter". */
export const NO_ADAPTER = 0xffffffff;

/**
 * One uniform layout for the whole family. aOffset/bOffset: element offsets of A and B (of slot 0
 * for a bank); nSlots: slots in the bank (1 in training); scale: the backward's (one adapter).
 */
export const LoraParams = defineUniforms('Params', { M: 'u32', inDim: 'u32', outDim: 'u32', r: 'u32', nSlots: 'u32', aOffset: 'u32', bOffset: 'u32', scale: 'f32' });
/** Lanes of the reducing kernels (shrink, bwd_hg) and of the elementwise ones. */
const WG_REDUCE = 64;
const WG = 64;

/** PEFT's scaling: lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA. */
export function loraScale(r: number, loraAlpha: number, useRslora: boolean): number {
  return useRslora ? loraAlpha / Math.sqrt(r) : loraAlpha / r;
}

// ---------------------------------------------------------------- CPU references (f64 sums)

/** h = x·Aᵀ [M, r], in f64. */
function shrinkRef(x: Float32Array, A: Float32Array, M: number, inDim: number, r: number): Float64Array {
  const h = new Float64Array(M * r);
  for (let m = 0; m < M; m++) {
    for (let j = 0; j < r; j++) {
      let s = 0;
      for (let i = 0; i < inDim; i++) s += x[m * inDim + i] * A[j * inDim + i];
      h[m * r + j] = s;
    }
  }
  return h;
}

function checkRef(fn: string, M: number, inDim: number, outDim: number, r: number, arrays: [string, ArrayLike<number>, number[]][]): void {
  requireDims(fn, 'shape', { M, inDim, outDim, r });
  for (const [name, arr, shape] of arrays) requireElements(fn, name, arr.length, shape.reduce((a, b) => a * b, 1), shape);
}

/** CPU reference of the delta: scale·(x·Aᵀ)·Bᵀ, [M, out]. */
export function loraForwardRef(x: Float32Array, A: Float32Array, B: Float32Array, M: number, inDim: number, outDim: number, r: number, scale: number): Float32Array {
  checkRef('loraForwardRef', M, inDim, outDim, r, [['x', x, [M, inDim]], ['A', A, [r, inDim]], ['B', B, [outDim, r]]]);
  const h = shrinkRef(x, A, M, inDim, r);
  const out = new Float32Array(M * outDim);
  for (let m = 0; m < M; m++) {
    for (let o = 0; o < outDim; o++) {
      let s = 0;
      for (let j = 0; j < r; j++) s += h[m * r + j] * B[o * r + j];
      out[m * outDim + o] = scale * s;
    }
  }
  return out;
}

/**
 * CPU reference of the backward of delta = scale·(x·Aᵀ)·Bᵀ given dy = ∂loss/∂delta [M, out]:
 * dB = scale·dyᵀ·h, g = scale·dy·B, dA = gᵀ·x, dx = g·A (dx is only the LoRA path's contribution).
 */
export function loraBackwardRef(x: Float32Array, A: Float32Array, B: Float32Array, dy: Float32Array, M: number, inDim: number, outDim: number, r: number, scale: number): { dx: Float32Array; dA: Float32Array; dB: Float32Array } {
  checkRef('loraBackwardRef', M, inDim, outDim, r, [['x', x, [M, inDim]], ['A', A, [r, inDim]], ['B', B, [outDim, r]], ['dy', dy, [M, outDim]]]);
  const h = shrinkRef(x, A, M, inDim, r);
  const g = new Float64Array(M * r);
  for (let m = 0; m < M; m++) {
    for (let j = 0; j < r; j++) {
      let s = 0;
      for (let o = 0; o < outDim; o++) s += dy[m * outDim + o] * B[o * r + j];
      g[m * r + j] = scale * s;
    }
  }
  const dB = new Float32Array(outDim * r);
  for (let o = 0; o < outDim; o++) {
    for (let j = 0; j < r; j++) {
      let s = 0;
      for (let m = 0; m < M; m++) s += dy[m * outDim + o] * h[m * r + j];
      dB[o * r + j] = scale * s;
    }
  }
  const dA = new Float32Array(r * inDim);
  for (let j = 0; j < r; j++) {
    for (let i = 0; i < inDim; i++) {
      let s = 0;
      for (let m = 0; m < M; m++) s += g[m * r + j] * x[m * inDim + i];
      dA[j * inDim + i] = s;
    }
  }
  const dx = new Float32Array(M * inDim);
  for (let m = 0; m < M; m++) {
    for (let i = 0; i < inDim; i++) {
      let s = 0;
      for (let j = 0; j < r; j++) s += g[m * r + j] * A[j * inDim + i];
      dx[m * inDim + i] = s;
    }
  }
  return { dx, dA, dB };
}

/**
 * CPU reference of the banked serving path: y[m] + delta of the adapter in slot ids[m] (none when
 * ids[m] >= nSlots). aBank [nSlots, r, in], bBank [nSlots, out, r], scales [nSlots].
 */
export function loraForwardBankRef(y: Float32Array, x: Float32Array, aBank: Float32Array, bBank: Float32Array, scales: ArrayLike<number>, ids: ArrayLike<number>, M: number, inDim: number, outDim: number, r: number, nSlots: number): Float32Array {
  const out = y.slice(0, M * outDim);
  for (let m = 0; m < M; m++) {
    const s = ids[m];
    if (s >= nSlots) continue;
    const d = loraForwardRef(x.subarray(m * inDim, (m + 1) * inDim), aBank.subarray(s * r * inDim, (s + 1) * r * inDim), bBank.subarray(s * outDim * r, (s + 1) * outDim * r), 1, inDim, outDim, r, scales[s]);
    for (let o = 0; o < outDim; o++) out[m * outDim + o] += d[o];
  }
  return out;
}

// ---------------------------------------------------------------- GPU

export interface LoraForwardArgs {
  x: GPUBuffer; // [M, inDim] f32, the Linear's input
  y: GPUBuffer; // [M, outDim] f32, the base matmul's output; the delta is added in place
  h: GPUBuffer; // [M, r] f32 scratch (shared by all modules: dispatches run in order)
  A: GPUBuffer; // A bank [nSlots, r, inDim] f32 at element aOffset
  B: GPUBuffer; // B bank [nSlots, outDim, r] f32 at element bOffset
  scales: GPUBuffer; // [nSlots] f32
  ids: GPUBuffer; // [M] u32 slot per row, NO_ADAPTER for none (per-step data: written with writeBuffer)
  M: number;
  inDim: number;
  outDim: number;
  r: number;
  nSlots: number;
  aOffset?: number; // elements
  bOffset?: number; // elements
}

/** Two dispatches: shrink (h = x·A_sᵀ per row) then expand (y += scale_s·h·B_sᵀ per row). */
export function loraForward(ctx: GpuContext, a: LoraForwardArgs): KernelDispatch[] {
  const K = 'loraForward';
  const aOffset = a.aOffset ?? 0, bOffset = a.bOffset ?? 0;
  requireDims(K, 'shape', { M: a.M, inDim: a.inDim, outDim: a.outDim, r: a.r, nSlots: a.nSlots });
  requireOffsets(K, { aOffset, bOffset });
  requireBufferFits(K, 'x', a.x, [a.M, a.inDim]);
  requireBufferFits(K, 'y', a.y, [a.M, a.outDim]);
  requireBufferFits(K, 'h', a.h, [a.M, a.r]);
  requireBufferFits(K, 'A', a.A, [a.nSlots, a.r, a.inDim], aOffset * 4);
  requireBufferFits(K, 'B', a.B, [a.nSlots, a.outDim, a.r], bOffset * 4);
  requireBufferFits(K, 'scales', a.scales, [a.nSlots]);
  requireBufferFits(K, 'ids', a.ids, [a.M]);
  requireDistinct(K, { y: a.y, h: a.h }, { x: a.x, A: a.A, B: a.B, scales: a.scales, ids: a.ids });
  if (a.y === a.h) throw new ShapeError(K, 'h', 'must not alias y');
  const uniforms = LoraParams.pack({ M: a.M, inDim: a.inDim, outDim: a.outDim, r: a.r, nSlots: a.nSlots, aOffset, bOffset, scale: 0 });
  const maxWg = ctx.limits.maxComputeWorkgroupsPerDimension;
  const serial = reductionStyle(ctx) === 'serial';
  // x [M, inDim], A bank, ids [M], h [M, r]
  const shrink = serial
    ? makeDispatch(ctx, { variant: `lora_shrink_serial_f32_wg${WG}`, code: () => elementwise(shrinkSerialWgsl, 'lora_shrink_serial'), uniforms, storage: [a.x, a.A, a.ids, a.h], workgroups: grid1d(Math.ceil((a.M * a.r) / WG), maxWg) })
    : makeDispatch(ctx, { variant: `lora_shrink_f32_wg${WG_REDUCE}`, code: () => reducing(shrinkWgsl, 'lora_shrink'), uniforms, storage: [a.x, a.A, a.ids, a.h], workgroups: grid1d(a.M * a.r, maxWg) });
  return [
    shrink,
    makeDispatch(ctx, { variant: `lora_expand_f32_wg${WG}`, code: () => elementwise(expandWgsl, 'lora_expand'), uniforms, storage: [a.h, a.B, a.ids, a.scales, a.y], workgroups: grid1d(Math.ceil((a.M * a.outDim) / WG), maxWg) }),
  ];
}

export interface LoraBackwardArgs {
  x: GPUBuffer; // [M, inDim] f32, the Linear's input saved from the forward
  dy: GPUBuffer; // [M, outDim] f32, ∂loss/∂y of the Linear
  dx?: GPUBuffer; // [M, inDim] f32, ∂loss/∂x so far; the LoRA contribution is added. Omit when x needs no gradient.
  params: GPUBuffer; // flat parameters: A [r, inDim] at aOffset, B [outDim, r] at bOffset
  grads: GPUBuffer; // flat gradients, same offsets: dA, dB accumulated (+=)
  hg: GPUBuffer; // [2, M, r] f32 scratch
  M: number;
  inDim: number;
  outDim: number;
  r: number;
  scale: number;
  aOffset: number; // elements
  bOffset: number; // elements
}

/** Three or four dispatches: h and g, then dB += ..., dA += ..., and dx += ... when dx is given. */
export function loraBackward(ctx: GpuContext, a: LoraBackwardArgs): KernelDispatch[] {
  const K = 'loraBackward';
  requireDims(K, 'shape', { M: a.M, inDim: a.inDim, outDim: a.outDim, r: a.r });
  requireOffsets(K, { aOffset: a.aOffset, bOffset: a.bOffset });
  if (!Number.isFinite(a.scale)) throw new ShapeError(K, 'scale', `= ${a.scale}; it must be finite`);
  requireBufferFits(K, 'x', a.x, [a.M, a.inDim]);
  requireBufferFits(K, 'dy', a.dy, [a.M, a.outDim]);
  if (a.dx) requireBufferFits(K, 'dx', a.dx, [a.M, a.inDim]);
  requireBufferFits(K, 'params (A)', a.params, [a.r, a.inDim], a.aOffset * 4);
  requireBufferFits(K, 'params (B)', a.params, [a.outDim, a.r], a.bOffset * 4);
  requireBufferFits(K, 'grads (dA)', a.grads, [a.r, a.inDim], a.aOffset * 4);
  requireBufferFits(K, 'grads (dB)', a.grads, [a.outDim, a.r], a.bOffset * 4);
  requireBufferFits(K, 'hg', a.hg, [2, a.M, a.r]);
  if (overlaps(a.aOffset, a.r * a.inDim, a.bOffset, a.outDim * a.r)) throw new ShapeError(K, 'bOffset', `B [${a.outDim}, ${a.r}] at ${a.bOffset} overlaps A [${a.r}, ${a.inDim}] at ${a.aOffset}`);
  const written: Record<string, GPUBuffer> = { grads: a.grads, hg: a.hg };
  if (a.dx) written.dx = a.dx;
  requireDistinct(K, written, { x: a.x, dy: a.dy, params: a.params });
  if (a.grads === a.hg || a.dx === a.hg || a.dx === a.grads) throw new ShapeError(K, 'hg', 'grads, hg and dx must be three different buffers');
  const uniforms = LoraParams.pack({ M: a.M, inDim: a.inDim, outDim: a.outDim, r: a.r, nSlots: 1, aOffset: a.aOffset, bOffset: a.bOffset, scale: a.scale });
  const maxWg = ctx.limits.maxComputeWorkgroupsPerDimension;
  // x [M, inDim], dy [M, outDim], params (A and B), hg [2, M, r]
  const hg = reductionStyle(ctx) === 'serial'
    ? makeDispatch(ctx, { variant: `lora_bwd_hg_serial_f32_wg${WG}`, code: () => elementwise(bwdHgSerialWgsl, 'lora_bwd_hg_serial'), uniforms, storage: [a.x, a.dy, a.params, a.params, a.hg], workgroups: grid1d(Math.ceil((a.M * a.r) / WG), maxWg) })
    : makeDispatch(ctx, { variant: `lora_bwd_hg_f32_wg${WG_REDUCE}`, code: () => reducing(bwdHgWgsl, 'lora_bwd_hg'), uniforms, storage: [a.x, a.dy, a.params, a.params, a.hg], workgroups: grid1d(a.M * a.r, maxWg) });
  const out = [
    hg,
    makeDispatch(ctx, { variant: `lora_bwd_db_f32_wg${WG}`, code: () => elementwise(bwdDbWgsl, 'lora_bwd_db'), uniforms, storage: [a.dy, a.hg, a.grads], workgroups: grid1d(Math.ceil((a.outDim * a.r) / WG), maxWg) }),
    makeDispatch(ctx, { variant: `lora_bwd_da_f32_wg${WG}`, code: () => elementwise(bwdDaWgsl, 'lora_bwd_da'), uniforms, storage: [a.x, a.hg, a.grads], workgroups: grid1d(Math.ceil((a.r * a.inDim) / WG), maxWg) }),
  ];
  if (a.dx) out.push(makeDispatch(ctx, { variant: `lora_bwd_dx_f32_wg${WG}`, code: () => elementwise(bwdDxWgsl, 'lora_bwd_dx'), uniforms, storage: [a.hg, a.params, a.dx], workgroups: grid1d(Math.ceil((a.M * a.inDim) / WG), maxWg) }));
  return out;
}

function reducing(src: string, name: string): string {
  return specialize(`${reduceTreeWgsl}\n${src}`, { PARAMS: LoraParams.wgsl, WG: WG_REDUCE }, name);
}

function elementwise(src: string, name: string): string {
  return specialize(src, { PARAMS: LoraParams.wgsl, WG }, name);
}

function requireOffsets(kernel: string, offsets: Record<string, number>): void {
  for (const [k, v] of Object.entries(offsets)) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new ShapeError(kernel, k, `= ${v}; it must be an element offset (integer >= 0)`);
  }
}

function overlaps(a0: number, an: number, b0: number, bn: number): boolean {
  return a0 < b0 + bn && b0 < a0 + an;
}

/** WebGPU forbids a buffer bound read_write and read in one dispatch: written buffers must differ from read ones. */
function requireDistinct(kernel: string, written: Record<string, GPUBuffer>, read: Record<string, GPUBuffer>): void {
  for (const [w, wb] of Object.entries(written)) {
    for (const [r, rb] of Object.entries(read)) if (wb === rb) throw new ShapeError(kernel, w, `must not alias ${r}`);
  }
}
