/**
 * RMSNorm backward through a FROZEN weight (no dweight): for y = x · r · w with
 * r = rsqrt(mean(x²) + eps),
 *   dx_i = r · w_i · dy_i − x_i · (r³ / dim) · Σ_j dy_j · w_j · x_j.
 * One workgroup per row, two workgroup sums (Σ x² and Σ dy·w·x), the same reduction snippets as
 * the forward (subgroup fast path, workgroup-memory fallback). On a CPU-class device under the
 * fused plan: one invocation per row instead (shaders/rmsnorm_bwd_rows.wgsl, no barriers).
 */
import rmsnormBwdWgsl from '../../shaders/rmsnorm_bwd.wgsl?raw';
import rmsnormBwdRowsWgsl from '../../shaders/rmsnorm_bwd_rows.wgsl?raw';
import { bufferOf, type Binding } from '../gpu/binding.ts';
import type { GpuContext } from '../gpu/device.ts';
import { grid1d, makeDispatch, type KernelDispatch } from '../gpu/dispatch.ts';
import { ShapeError } from '../gpu/errors.ts';
import { requireBufferFits, requireDims, requireElements } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';
import { reductionStyle } from './plan.ts';
import { reduceSumSnippet, ROWS_WG } from './rmsnorm.ts';

/** CPU reference (f64 inside, f32 out). */
export function rmsNormBackwardRef(x: Float32Array, weight: Float32Array, dy: Float32Array, T: number, dim: number, eps: number): Float32Array {
  requireElements('rmsNormBackwardRef', 'x', x.length, T * dim, [T, dim]);
  requireElements('rmsNormBackwardRef', 'weight', weight.length, dim, [dim]);
  requireElements('rmsNormBackwardRef', 'dy', dy.length, T * dim, [T, dim]);
  const dx = new Float32Array(T * dim);
  for (let t = 0; t < T; t++) {
    const o = t * dim;
    let ss = 0;
    let dot = 0;
    for (let i = 0; i < dim; i++) {
      ss += x[o + i] * x[o + i];
      dot += dy[o + i] * weight[i] * x[o + i];
    }
    const r = 1 / Math.sqrt(ss / dim + eps);
    const c = (r * r * r * dot) / dim;
    for (let i = 0; i < dim; i++) dx[o + i] = r * weight[i] * dy[o + i] - x[o + i] * c;
  }
  return dx;
}

export const RmsNormBwdParams = defineUniforms('Params', { T: 'u32', dim: 'u32', eps: 'f32', accumulate: 'u32' });
const WG = 256;

export interface RmsNormBackwardArgs {
  x: Binding; // [T, dim] f32, the forward's input (a buffer or a range of rows, like dy and dx)
  weight: GPUBuffer; // [dim] f32 (frozen)
  dy: Binding; // [T, dim] f32, gradient of the forward's output
  dx: Binding; // [T, dim] f32 output; must not alias x, weight or dy
  T: number;
  dim: number;
  eps: number;
  /** Add into dx (e.g. the residual stream's gradient) instead of overwriting it. */
  accumulate?: boolean;
}

export function rmsNormBackward(ctx: GpuContext, a: RmsNormBackwardArgs): KernelDispatch {
  const kernel = 'rmsNormBackward';
  requireDims(kernel, 'shape', { T: a.T, dim: a.dim });
  if (!(a.eps >= 0 && Number.isFinite(a.eps))) throw new ShapeError(kernel, 'eps', `= ${a.eps}; it must be a finite number >= 0`);
  requireBufferFits(kernel, 'x', a.x, [a.T, a.dim]);
  requireBufferFits(kernel, 'weight', a.weight, [a.dim]);
  requireBufferFits(kernel, 'dy', a.dy, [a.T, a.dim]);
  requireBufferFits(kernel, 'dx', a.dx, [a.T, a.dim]);
  if ([bufferOf(a.x), a.weight, bufferOf(a.dy)].includes(bufferOf(a.dx))) throw new ShapeError(kernel, 'dx', 'must not alias x, weight or dy');
  const uniforms = RmsNormBwdParams.pack({ T: a.T, dim: a.dim, eps: a.eps, accumulate: a.accumulate ? 1 : 0 });
  if (reductionStyle(ctx) === 'serial') {
    const variant = `rmsnorm_bwd_rows_f32_wg${ROWS_WG}`;
    return makeDispatch(ctx, {
      variant,
      code: () => specialize(rmsnormBwdRowsWgsl, { PARAMS: RmsNormBwdParams.wgsl, WG: ROWS_WG }, variant),
      uniforms,
      storage: [a.x, a.weight, a.dy, a.dx], // x [T, dim], weight [dim], dy [T, dim], dx [T, dim]
      workgroups: grid1d(Math.ceil(a.T / ROWS_WG), ctx.limits.maxComputeWorkgroupsPerDimension),
    });
  }
  const reduce = reduceSumSnippet(ctx, WG);
  const variant = `rmsnorm_bwd_f32_wg${WG}_${reduce.tag}`;
  return makeDispatch(ctx, {
    variant,
    code: () => specialize(rmsnormBwdWgsl, { ENABLE: reduce.ENABLE, PARAMS: RmsNormBwdParams.wgsl, REDUCE: reduce.REDUCE, WG }, variant),
    uniforms,
    storage: [a.x, a.weight, a.dy, a.dx],
    workgroups: grid1d(a.T, ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}
