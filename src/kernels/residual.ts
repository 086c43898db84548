/**
 * Add family: the residual add (h += delta, elementwise over n floats), the broadcast bias add
 * (y[t, :] += bias, Qwen2's q/k/v bias) and the row gather (out[i] = x[rows[i]]).
 */
import residualWgsl from '../../shaders/residual.wgsl?raw';
import biasAddWgsl from '../../shaders/bias_add.wgsl?raw';
import gatherRowsWgsl from '../../shaders/gather_rows.wgsl?raw';
import { ShapeError } from '../gpu/errors.ts';
import type { GpuContext } from '../gpu/device.ts';
import { grid1d, makeDispatch, type KernelDispatch } from '../gpu/dispatch.ts';
import { requireBufferFits, requireDims } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';

export const ResidualParams = defineUniforms('Params', { n: 'u32' });
const WG = 256;

/** CPU reference: h[i] + delta[i]. */
export function residualAddRef(h: Float32Array, delta: Float32Array): Float32Array {
  const out = new Float32Array(h.length);
  for (let i = 0; i < h.length; i++) out[i] = h[i] + delta[i];
  return out;
}

export interface ResidualArgs {
  h: GPUBuffer; // [n] f32, updated in place
  delta: GPUBuffer; // [n] f32
  n: number;
}

export function residualAdd(ctx: GpuContext, a: ResidualArgs): KernelDispatch {
  requireDims('residualAdd', 'n', { n: a.n });
  requireBufferFits('residualAdd', 'h', a.h, [a.n]);
  requireBufferFits('residualAdd', 'delta', a.delta, [a.n]);
  const variant = `residual_add_f32_wg${WG}`;
  return makeDispatch(ctx, {
    variant,
    code: () => specialize(residualWgsl, { PARAMS: ResidualParams.wgsl, WG }, variant),
    uniforms: ResidualParams.pack({ n: a.n }),
    storage: [a.h, a.delta],
    workgroups: grid1d(Math.ceil(a.n / WG), ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}

export const BiasAddParams = defineUniforms('Params', { T: 'u32', N: 'u32' });

/** CPU reference: y[t, n] + bias[n]. */
export function biasAddRef(y: Float32Array, bias: Float32Array, T: number, N: number): Float32Array {
  const out = new Float32Array(T * N);
  for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) out[t * N + n] = y[t * N + n] + bias[n];
  return out;
}

export interface BiasAddArgs {
  y: GPUBuffer; // [T, N] f32, updated in place
  bias: GPUBuffer; // [N] f32
  T: number;
  N: number;
}

export function biasAdd(ctx: GpuContext, a: BiasAddArgs): KernelDispatch {
  requireDims('biasAdd', 'shape', { T: a.T, N: a.N });
  requireBufferFits('biasAdd', 'y', a.y, [a.T, a.N]);
  requireBufferFits('biasAdd', 'bias', a.bias, [a.N]);
  if (a.y === a.bias) throw new ShapeError('biasAdd', 'bias', 'must not alias y');
  const variant = `bias_add_f32_wg${WG}`;
  return makeDispatch(ctx, {
    variant,
    code: () => specialize(biasAddWgsl, { PARAMS: BiasAddParams.wgsl, WG }, variant),
    uniforms: BiasAddParams.pack({ T: a.T, N: a.N }),
    storage: [a.y, a.bias],
    workgroups: grid1d(Math.ceil((a.T * a.N) / WG), ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}

export const GatherRowsParams = defineUniforms('Params', { T: 'u32', D: 'u32', R: 'u32' });

/** CPU reference: rows of x [T, D] picked by `rows` (an index >= T reads row T-1, as the shader). */
export function gatherRowsRef(x: Float32Array, rows: ArrayLike<number>, T: number, D: number): Float32Array {
  const out = new Float32Array(rows.length * D);
  for (let i = 0; i < rows.length; i++) out.set(x.subarray(Math.min(rows[i], T - 1) * D, (Math.min(rows[i], T - 1) + 1) * D), i * D);
  return out;
}

export interface GatherRowsArgs {
  x: GPUBuffer; // [T, D] f32
  rows: GPUBuffer; // [R] u32 row indices (per-step data: storage)
  out: GPUBuffer; // [R, D] f32
  T: number;
  D: number;
  R: number;
}

export function gatherRows(ctx: GpuContext, a: GatherRowsArgs): KernelDispatch {
  requireDims('gatherRows', 'shape', { T: a.T, D: a.D, R: a.R });
  requireBufferFits('gatherRows', 'x', a.x, [a.T, a.D]);
  requireBufferFits('gatherRows', 'rows', a.rows, [a.R]);
  requireBufferFits('gatherRows', 'out', a.out, [a.R, a.D]);
  if (a.out === a.x) throw new ShapeError('gatherRows', 'out', 'must not alias x');
  const variant = `gather_rows_f32_wg${WG}`;
  return makeDispatch(ctx, {
    variant,
    code: () => specialize(gatherRowsWgsl, { PARAMS: GatherRowsParams.wgsl, WG }, variant),
    uniforms: GatherRowsParams.pack({ T: a.T, D: a.D, R: a.R }),
    storage: [a.x, a.rows, a.out],
    workgroups: grid1d(Math.ceil((a.R * a.D) / WG), ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}
