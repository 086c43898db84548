/**
 * RoPE backward. The forward rotates each (j, j + half) pair of a head vector by θ = pos · invFreq[j]
 * (HF rotate_half, src/kernels/rope.ts); a rotation is orthogonal, so its transpose, the map from
 * d(rotated) to d(unrotated), is the rotation by −θ:
 *   dx[j]        =  dy[j] · cos θ + dy[j + half] · sin θ
 *   dx[j + half] =  dy[j + half] · cos θ − dy[j] · sin θ
 *
 * The GPU kernel is the forward rope shader run with −invFreq: f32(pos) · (−f) is exactly
 * −(f32(pos) · f), and the shader's sin/cos (range reduction by round(), odd/even polynomials,
 * quadrant switch) are exactly odd/even in the angle, so the backward is the exact transpose of
 * the forward on every device, with no second copy of the sin/cos code. Callers upload the negated
 * frequencies once per model (uploadRopeBackwardInvFreq).
 */
import { uploadStorage } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/device.ts';
import type { KernelDispatch } from '../gpu/dispatch.ts';
import { ShapeError } from '../gpu/errors.ts';
import { requireBufferFits, requireDims, requireElements } from '../gpu/shape.ts';
import { rope, ropeRef } from './rope.ts';

export interface RopeShape {
  T: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
}

/** −invFreq (exact in f32). */
export function negateInvFreq(invFreq: Float32Array): Float32Array {
  return invFreq.map((f) => -f);
}

/**
 * CPU reference: dq [T, nHeads, headDim] and dk [T, nKvHeads, headDim] (gradients w.r.t. the
 * rotated q, k) mapped to gradients w.r.t. the unrotated q, k: rotation by −θ (copies).
 */
export function ropeBackwardRef(dq: Float32Array, dk: Float32Array, positions: Uint32Array, invFreq: Float32Array, shape: RopeShape): { dq: Float32Array; dk: Float32Array } {
  const { T, nHeads, nKvHeads, headDim } = shape;
  if (headDim % 2) throw new ShapeError('ropeBackwardRef', 'headDim', `= ${headDim}; rotate_half needs an even head size`);
  requireElements('ropeBackwardRef', 'dq', dq.length, T * nHeads * headDim, [T, nHeads, headDim]);
  requireElements('ropeBackwardRef', 'dk', dk.length, T * nKvHeads * headDim, [T, nKvHeads, headDim]);
  requireElements('ropeBackwardRef', 'positions', positions.length, T, [T]);
  requireElements('ropeBackwardRef', 'invFreq', invFreq.length, headDim / 2, [headDim / 2]);
  const r = ropeRef(dq, dk, positions, negateInvFreq(invFreq), shape);
  return { dq: r.q, dk: r.k };
}

/** Upload −invFreq [headDim/2] f32 once per model: the frequencies ropeBackward rotates with. */
export function uploadRopeBackwardInvFreq(ctx: GpuContext, invFreq: Float32Array): GPUBuffer {
  return uploadStorage(ctx, negateInvFreq(invFreq), 'rope.negInvFreq'); // [headDim/2] f32
}

export interface RopeBackwardArgs extends RopeShape {
  dq: GPUBuffer; // [T, nHeads, headDim] f32: gradient of the rotated q in, of the unrotated q out (in place)
  dk: GPUBuffer; // [T, nKvHeads, headDim] f32: same for k (in place)
  positions: GPUBuffer; // [T] u32, the positions the forward used
  negInvFreq: GPUBuffer; // [headDim/2] f32 from uploadRopeBackwardInvFreq (NOT the forward's buffer)
}

/** In-place backward rotation of dq and dk (guards named after this kernel, then the forward's dispatch). */
export function ropeBackward(ctx: GpuContext, a: RopeBackwardArgs): KernelDispatch {
  const kernel = 'ropeBackward';
  const { T, nHeads, nKvHeads, headDim } = a;
  requireDims(kernel, 'shape', { T, nHeads, nKvHeads, headDim });
  if (headDim % 2) throw new ShapeError(kernel, 'headDim', `= ${headDim}; rotate_half needs an even head size`);
  requireBufferFits(kernel, 'dq', a.dq, [T, nHeads, headDim]);
  requireBufferFits(kernel, 'dk', a.dk, [T, nKvHeads, headDim]);
  requireBufferFits(kernel, 'positions', a.positions, [T]);
  requireBufferFits(kernel, 'negInvFreq', a.negInvFreq, [headDim / 2]);
  if (a.dq === a.dk) throw new ShapeError(kernel, 'dk', 'must not alias dq');
  return rope(ctx, { q: a.dq, k: a.dk, positions: a.positions, invFreq: a.negInvFreq, T, nHeads, nKvHeads, headDim });
}
