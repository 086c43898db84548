/**
 * SiLU-gate family (the Llama MLP's SwiGLU): out = silu(gate) * up, elementwise over [T, intermediate].
 * Out of place so gate and up survive for the LoRA backward pass.
 */
import siluGateWgsl from '../../shaders/silu_gate.wgsl?raw';
import type { GpuContext } from '../gpu/device.ts';
import { grid1d, makeDispatch, type KernelDispatch } from '../gpu/dispatch.ts';
import { ShapeError } from '../gpu/errors.ts';
import { requireBufferFits, requireDims } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';

export const SiluGateParams = defineUniforms('Params', { n: 'u32' });
const WG = 256;

/** silu(x) = x * sigmoid(x), with exp only of -|x| so large |x| never overflows. */
export function siluRef(x: number): number {
  const e = Math.exp(-Math.abs(x));
  return x * (x >= 0 ? 1 / (1 + e) : e / (1 + e));
}

/** CPU reference: silu(gate[i]) * up[i]. */
export function siluGateRef(gate: Float32Array, up: Float32Array): Float32Array {
  const out = new Float32Array(gate.length);
  for (let i = 0; i < gate.length; i++) out[i] = siluRef(gate[i]) * up[i];
  return out;
}

export interface SiluGateArgs {
  gate: GPUBuffer; // [n] f32 (n = T * intermediate)
  up: GPUBuffer; // [n] f32
  out: GPUBuffer; // [n] f32, must not alias gate or up
  n: number;
}

export function siluGate(ctx: GpuContext, a: SiluGateArgs): KernelDispatch {
  requireDims('siluGate', 'n', { n: a.n });
  requireBufferFits('siluGate', 'gate', a.gate, [a.n]);
  requireBufferFits('siluGate', 'up', a.up, [a.n]);
  requireBufferFits('siluGate', 'out', a.out, [a.n]);
  if (a.out === a.gate || a.out === a.up) throw new ShapeError('siluGate', 'out', 'must not alias gate or up');
  const variant = `silu_gate_f32_wg${WG}`;
  return makeDispatch(ctx, {
    variant,
    code: () => specialize(siluGateWgsl, { PARAMS: SiluGateParams.wgsl, WG }, variant),
    uniforms: SiluGateParams.pack({ n: a.n }),
    storage: [a.gate, a.up, a.out],
    workgroups: grid1d(Math.ceil(a.n / WG), ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}
