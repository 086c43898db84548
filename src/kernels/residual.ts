/**
 * Residual add family: h += delta, elementwise over n floats.
 */
import residualWgsl from '../../shaders/residual.wgsl?raw';
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
