/**
 * Copy family: dst = src over n floats. It is the bandwidth yardstick of the kernel benchmark
 * (a matmul's "roofline" is its weight bytes per second divided by this kernel's bytes per second)
 * and a plain device-side copy for the engine.
 *
 * The bulk is copied as vec4<f32>; when n is not a multiple of 4 a second, scalar dispatch copies
 * the last n % 4 floats (a vec4 binding cannot address them, and one dispatch cannot bind the same
 * buffer as both vec4 and f32 for writing).
 */
import copyWgsl from '../../shaders/copy.wgsl?raw';
import type { GpuContext } from '../gpu/device.ts';
import { ShapeError } from '../gpu/errors.ts';
import { grid1d, makeDispatch, type KernelDispatch } from '../gpu/dispatch.ts';
import { requireBufferFits, requireDims } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';

/** count: elements this dispatch copies; offset: first element, in units of the element type. */
export const CopyParams = defineUniforms('Params', { count: 'u32', offset: 'u32' });
const WG = 64;
/**
 * vec4s per invocation in the bulk dispatch. Measured on SwiftShader (64 MiB, 2 cores): 1 per
 * invocation 0.35-0.54 GB/s, 16: ~0.7-1.0, 64: 1.3-1.6. On GPUs 64 x 64 vec4 = 64 KiB per workgroup
 * still gives thousands of workgroups for the benchmark's 128-256 MiB buffers.
 */
const PER = 64;

/** CPU reference: the identity (a copy of the first n floats). */
export function copyRef(src: Float32Array, n = src.length): Float32Array {
  return src.slice(0, n);
}

export interface CopyArgs {
  src: GPUBuffer; // [n] f32
  dst: GPUBuffer; // [n] f32, overwritten
  n: number;
}

/** Dispatches that copy n floats: one vec4 dispatch, plus a scalar one for a tail of n % 4. */
export function copyF32(ctx: GpuContext, a: CopyArgs): KernelDispatch[] {
  requireDims('copyF32', 'n', { n: a.n });
  requireBufferFits('copyF32', 'src', a.src, [a.n]);
  requireBufferFits('copyF32', 'dst', a.dst, [a.n]);
  if (a.src === a.dst) throw new ShapeError('copyF32', 'dst', 'must not alias src');
  const vec4s = Math.floor(a.n / 4);
  const tail = a.n % 4;
  const out: KernelDispatch[] = [];
  if (vec4s > 0) out.push(copyDispatch(ctx, a, 'vec4<f32>', 'f32x4', PER, vec4s, 0));
  if (tail > 0) out.push(copyDispatch(ctx, a, 'f32', 'f32', 1, tail, vec4s * 4));
  return out;
}

function copyDispatch(ctx: GpuContext, a: CopyArgs, elem: string, tag: string, per: number, count: number, offset: number): KernelDispatch {
  const variant = `copy_${tag}${per > 1 ? `_x${per}` : ''}_wg${WG}`;
  return makeDispatch(ctx, {
    variant,
    code: () => specialize(copyWgsl, { PARAMS: CopyParams.wgsl, ELEM: elem, WG, PER: per }, variant),
    uniforms: CopyParams.pack({ count, offset }),
    storage: [a.src, a.dst],
    workgroups: grid1d(Math.ceil(count / (WG * per)), ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}
