/**
 * RMSNorm family (HF LlamaRMSNorm): y = x * rsqrt(mean(x²) + eps) * weight over the last dim.
 * One workgroup per row; the sum of squares is a workgroup reduction with a subgroup fast path
 * and a workgroup-memory fallback (shaders/reduce_sum_*.wgsl, shared with other row reductions).
 * On a CPU-class device under the fused plan (src/kernels/plan.ts) the serial variant runs
 * instead: one invocation per row (shaders/rmsnorm_rows.wgsl), no workgroup memory or barrier.
 */
import rmsnormWgsl from '../../shaders/rmsnorm.wgsl?raw';
import rmsnormRowsWgsl from '../../shaders/rmsnorm_rows.wgsl?raw';
import reduceSubgroupWgsl from '../../shaders/reduce_sum_subgroup.wgsl?raw';
import reduceWorkgroupWgsl from '../../shaders/reduce_sum_workgroup.wgsl?raw';
import { bufferOf, type Binding } from '../gpu/binding.ts';
import type { GpuContext } from '../gpu/device.ts';
import { grid1d, makeDispatch, type KernelDispatch } from '../gpu/dispatch.ts';
import { ShapeError } from '../gpu/errors.ts';
import { requireBufferFits, requireDims } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';
import { reductionStyle } from './plan.ts';

export const RmsNormParams = defineUniforms('Params', { T: 'u32', dim: 'u32', eps: 'f32' });
const WG = 256;
/** Rows per workgroup of the serial variant (one invocation per row). */
export const ROWS_WG = 64;

/** CPU reference. Sums of squares in f64 (the careful spec); the result rounded to f32. */
export function rmsNormRef(x: Float32Array, weight: Float32Array, T: number, dim: number, eps: number): Float32Array {
  const y = new Float32Array(T * dim);
  for (let t = 0; t < T; t++) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[t * dim + i] * x[t * dim + i];
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) y[t * dim + i] = x[t * dim + i] * inv * weight[i];
  }
  return y;
}

/**
 * Whether the subgroup reduction can be used: the device has 'subgroups' and the browser's WGSL
 * knows the `subgroup_id` builtin (without it there is no portable way to index per-subgroup
 * partials). Absent in Node's `webgpu` package: there the fallback runs.
 */
export function canReduceWithSubgroups(ctx: GpuContext): boolean {
  if (!ctx.features.subgroups) return false;
  const gpu = (globalThis as { navigator?: { gpu?: { wgslLanguageFeatures?: ReadonlySet<string> } } }).navigator?.gpu;
  return gpu?.wgslLanguageFeatures?.has('subgroup_id') ?? false;
}

/** The {{ENABLE}} / {{REDUCE}} values of a kernel that uses workgroupSum(). */
export function reduceSumSnippet(ctx: GpuContext, wg: number): { ENABLE: string; REDUCE: string; tag: string } {
  const sub = canReduceWithSubgroups(ctx);
  const src = sub ? reduceSubgroupWgsl : reduceWorkgroupWgsl;
  return { ENABLE: sub ? 'enable subgroups;' : '', REDUCE: specialize(src, { WG: wg }, 'reduce_sum'), tag: sub ? 'sg' : 'wgmem' };
}

export interface RmsNormArgs {
  x: Binding; // [T, dim] f32 (a buffer or a range of rows)
  weight: GPUBuffer; // [dim] f32
  y: Binding; // [T, dim] f32 output, must not alias x (WebGPU forbids read + read_write views of one buffer)
  T: number;
  dim: number;
  eps: number; // rms_norm_eps from the config
}

export function rmsNorm(ctx: GpuContext, a: RmsNormArgs): KernelDispatch {
  requireDims('rmsNorm', 'shape', { T: a.T, dim: a.dim });
  if (!(a.eps >= 0 && Number.isFinite(a.eps))) throw new ShapeError('rmsNorm', 'eps', `= ${a.eps}; it must be a finite number >= 0`);
  requireBufferFits('rmsNorm', 'x', a.x, [a.T, a.dim]);
  requireBufferFits('rmsNorm', 'weight', a.weight, [a.dim]);
  requireBufferFits('rmsNorm', 'y', a.y, [a.T, a.dim]);
  if (bufferOf(a.y) === bufferOf(a.x)) throw new ShapeError('rmsNorm', 'y', 'must not alias x');
  if (reductionStyle(ctx) === 'serial') {
    // CPU-class device: one invocation per row, no barriers (src/kernels/plan.ts).
    const variant = `rmsnorm_rows_f32_wg${ROWS_WG}`;
    return makeDispatch(ctx, {
      variant,
      code: () => specialize(rmsnormRowsWgsl, { PARAMS: RmsNormParams.wgsl, WG: ROWS_WG }, variant),
      uniforms: RmsNormParams.pack({ T: a.T, dim: a.dim, eps: a.eps }),
      storage: [a.x, a.weight, a.y], // x [T, dim], weight [dim], y [T, dim]
      workgroups: grid1d(Math.ceil(a.T / ROWS_WG), ctx.limits.maxComputeWorkgroupsPerDimension),
    });
  }
  const reduce = reduceSumSnippet(ctx, WG);
  const variant = `rmsnorm_f32_wg${WG}_${reduce.tag}`;
  return makeDispatch(ctx, {
    variant,
    code: () => specialize(rmsnormWgsl, { ENABLE: reduce.ENABLE, PARAMS: RmsNormParams.wgsl, REDUCE: reduce.REDUCE, WG }, variant),
    uniforms: RmsNormParams.pack({ T: a.T, dim: a.dim, eps: a.eps }),
    storage: [a.x, a.weight, a.y],
    workgroups: grid1d(a.T, ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}
