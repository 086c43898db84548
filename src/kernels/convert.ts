/**
 * Convert family: raw 16-bit checkpoint floats (safetensors F16 or BF16) -> f32, on the GPU. The
 * loader writes a checkpoint's bytes as they arrive into a u32 buffer and this kernel widens them,
 * so the CPU never holds an f32 copy of a weight. The conversion is exact (both formats embed in
 * f32), and bit-exact in the kernel: f16 subnormals are normalised, inf and NaN payloads are kept.
 * The CPU reference works on bits for the same reason: the test compares u32 patterns.
 */
import convertWgsl from '../../shaders/convert_half.wgsl?raw';
import type { GpuContext } from '../gpu/device.ts';
import { grid1d, makeDispatch, type KernelDispatch } from '../gpu/dispatch.ts';
import { ShapeError } from '../gpu/errors.ts';
import { requireBufferFits, requireDims } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';

export type HalfDtype = 'F16' | 'BF16';

/** n: elements converted (halves read, f32 written). */
export const ConvertHalfParams = defineUniforms('Params', { n: 'u32' });
const WG = 64;
/** Elements per invocation (as in the copy family: amortises SwiftShader's per-invocation cost). */
const PER = 16;

/** f32 bits of one 16-bit float `h` of `dtype` (the spec of the kernel). */
export function halfToF32Bits(h: number, dtype: HalfDtype): number {
  if (dtype === 'BF16') return (h << 16) >>> 0; // bf16 is the top half of an f32
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  const shift = Math.clz32(mant) - 21;
  return (sign | ((113 - shift) << 23) | (((mant << shift) & 0x3ff) << 13)) >>> 0;
}

/** CPU reference: n halves (little-endian u16) -> f32 bit patterns [n]. */
export function convertHalfRef(halves: Uint16Array, dtype: HalfDtype): Uint32Array {
  const out = new Uint32Array(halves.length);
  for (let i = 0; i < halves.length; i++) out[i] = halfToF32Bits(halves[i], dtype);
  return out;
}

export interface ConvertHalfArgs {
  src: GPUBuffer; // [ceil(n / 2)] u32: the raw bytes of n halves, little-endian
  dst: GPUBuffer; // [n] f32 (written as bit patterns)
  n: number;
  dtype: HalfDtype;
}

/** The dispatch widening n halves of src into f32 dst[0, n). */
export function convertHalfToF32(ctx: GpuContext, a: ConvertHalfArgs): KernelDispatch {
  requireDims('convertHalfToF32', 'n', { n: a.n });
  if (a.dtype !== 'F16' && a.dtype !== 'BF16') throw new ShapeError('convertHalfToF32', 'dtype', `'${String(a.dtype)}' is not F16 or BF16`);
  requireBufferFits('convertHalfToF32', 'src', a.src, [Math.ceil(a.n / 2)]);
  requireBufferFits('convertHalfToF32', 'dst', a.dst, [a.n]);
  if (a.src === a.dst) throw new ShapeError('convertHalfToF32', 'dst', 'must not alias src');
  const variant = `convert_${a.dtype.toLowerCase()}_f32_x${PER}_wg${WG}`;
  const convert = a.dtype === 'BF16' ? 'h << 16u' : 'f16_to_f32_bits(h)';
  return makeDispatch(ctx, {
    variant,
    code: () => specialize(convertWgsl, { PARAMS: ConvertHalfParams.wgsl, WG, PER, CONVERT: convert }, variant),
    uniforms: ConvertHalfParams.pack({ n: a.n }),
    storage: [a.src, a.dst],
    workgroups: grid1d(Math.ceil(a.n / (WG * PER)), ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}
