/**
 * SwiGLU backward: out = silu(g) · u with silu(g) = g · σ(g), so
 *   dup   = dout · silu(g)
 *   dgate = dout · u · σ(g) · (1 + g · σ(−g))        (silu'(g) = σ(g) + g σ(g)(1 − σ(g)))
 * σ(g) and σ(−g) = 1 − σ(g) are both computed from exp(−|g|), so nothing overflows and 1 − σ is
 * never a cancelling subtraction: for g = −100 silu' is ≈ −99 · e^−100 (tiny, not NaN), for
 * g = +100 it is 1.
 */
import siluBwdWgsl from '../../shaders/silu_bwd.wgsl?raw';
import type { GpuContext } from '../gpu/device.ts';
import { grid1d, makeDispatch, type KernelDispatch } from '../gpu/dispatch.ts';
import { ShapeError } from '../gpu/errors.ts';
import { requireBufferFits, requireDims, requireElements } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';

/** (σ(x), σ(−x)) from exp(−|x|): no overflow, no cancellation. */
function sigmoidPair(x: number): [number, number] {
  const e = Math.exp(-Math.abs(x));
  const big = 1 / (1 + e), small = e / (1 + e);
  return x >= 0 ? [big, small] : [small, big];
}

/** CPU reference, f64 inside. */
export function siluGateBackwardRef(gate: Float32Array, up: Float32Array, dout: Float32Array): { dgate: Float32Array; dup: Float32Array } {
  const n = gate.length;
  requireElements('siluGateBackwardRef', 'up', up.length, n, [n]);
  requireElements('siluGateBackwardRef', 'dout', dout.length, n, [n]);
  const dgate = new Float32Array(n), dup = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const g = gate[i];
    const [s, sNeg] = sigmoidPair(g);
    dup[i] = dout[i] * g * s;
    dgate[i] = dout[i] * up[i] * s * (1 + g * sNeg);
  }
  return { dgate, dup };
}

export const SiluBwdParams = defineUniforms('Params', { n: 'u32' });
const WG = 256;

export interface SiluGateBackwardArgs {
  gate: GPUBuffer; // [n] f32, the forward's gate input
  up: GPUBuffer; // [n] f32, the forward's up input
  dout: GPUBuffer; // [n] f32, gradient of silu(gate) * up
  dgate: GPUBuffer; // [n] f32 output
  dup: GPUBuffer; // [n] f32 output
  n: number; // T * intermediate
}

export function siluGateBackward(ctx: GpuContext, a: SiluGateBackwardArgs): KernelDispatch {
  const kernel = 'siluGateBackward';
  requireDims(kernel, 'n', { n: a.n });
  for (const [name, b] of [['gate', a.gate], ['up', a.up], ['dout', a.dout], ['dgate', a.dgate], ['dup', a.dup]] as const) requireBufferFits(kernel, name, b, [a.n]);
  const inputs = [a.gate, a.up, a.dout];
  if (inputs.includes(a.dgate)) throw new ShapeError(kernel, 'dgate', 'must not alias gate, up or dout');
  if (inputs.includes(a.dup)) throw new ShapeError(kernel, 'dup', 'must not alias gate, up or dout');
  if (a.dgate === a.dup) throw new ShapeError(kernel, 'dup', 'must not alias dgate');
  const variant = `silu_gate_bwd_f32_wg${WG}`;
  return makeDispatch(ctx, {
    variant,
    code: () => specialize(siluBwdWgsl, { PARAMS: SiluBwdParams.wgsl, WG }, variant),
    uniforms: SiluBwdParams.pack({ n: a.n }),
    storage: [a.gate, a.up, a.dout, a.dgate, a.dup],
    workgroups: grid1d(Math.ceil(a.n / WG), ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}
