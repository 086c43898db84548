/**
 * Random fill family: out[n] f32 uniform in [lo, hi) (the final f32 rounding may land on hi) from a
 * stateless integer hash of (seed, global index). The benchmark makes gigabytes of weights with it
 * on the GPU (no JS array of that size ever exists) and the LoRA code initialises adapters with it.
 *
 * Value i of a fill is u = (pcg(pcg(first + i) ^ pcg(seed)) >>> 8) · 2⁻²⁴, then lo + (hi - lo)·u
 * with f32 roundings (span = f32(hi - lo), t = f32(span·u), out = f32(lo + t)). The hash part is
 * integer maths and bit-exact on any GPU; u is exact (24 bits); the last two roundings are IEEE f32
 * on every WebGPU implementation unless its compiler contracts span·u + lo into one fused
 * multiply-add, which WGSL does not forbid (SwiftShader does not; see the browser test).
 */
import fillWgsl from '../../shaders/fill.wgsl?raw';
import type { GpuContext } from '../gpu/device.ts';
import { ShapeError } from '../gpu/errors.ts';
import { grid1d, makeDispatch, type KernelDispatch } from '../gpu/dispatch.ts';
import { requireBufferFits, requireDims } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';

/**
 * n: elements written; first: global index of out[0] (fill a shard as part of a larger tensor);
 * seed: the stream. These are uniforms: a fill is built and run once (at load or adapter init),
 * never re-encoded per token, so nothing here changes between runs of one dispatch.
 */
export const FillParams = defineUniforms('Params', { n: 'u32', first: 'u32', seed: 'u32', lo: 'f32', span: 'f32' });
const WG = 256;

/** PCG-RXS-M-XS hash of a u32, as in shaders/fill.wgsl. */
export function pcgHash(v: number): number {
  const state = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/** The hash of (seed, global index) that value `index` of a fill is made from. */
export function fillHash(seed: number, index: number): number {
  return pcgHash((pcgHash(index >>> 0) ^ pcgHash(seed >>> 0)) >>> 0);
}

export interface FillRange {
  lo: number;
  hi: number;
}

/** CPU reference: n values of the fill with `seed` starting at global index `first`, bit-exact. */
export function fillRef(n: number, seed: number, range: FillRange, first = 0): Float32Array {
  const lo = Math.fround(range.lo);
  const span = Math.fround(range.hi - range.lo);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = (fillHash(seed, first + i) >>> 8) * 2 ** -24;
    out[i] = lo + Math.fround(span * u); // the Float32Array store is the final f32 rounding
  }
  return out;
}

export interface FillArgs {
  out: GPUBuffer; // [n] f32, overwritten
  n: number;
  seed: number; // u32
  lo: number;
  hi: number; // > lo
  first?: number; // global index of out[0]; first + n <= 2^32
}

export function fillUniform(ctx: GpuContext, a: FillArgs): KernelDispatch {
  const first = a.first ?? 0;
  requireDims('fillUniform', 'n', { n: a.n });
  requireBufferFits('fillUniform', 'out', a.out, [a.n]);
  if (!Number.isInteger(first) || first < 0 || first + a.n > 2 ** 32) {
    throw new ShapeError('fillUniform', 'first', `= ${first} with n = ${a.n} leaves the u32 index space [0, 2^32)`);
  }
  if (!Number.isInteger(a.seed) || a.seed < 0 || a.seed > 0xffffffff) throw new ShapeError('fillUniform', 'seed', `= ${a.seed} is not a u32`);
  if (!(Number.isFinite(a.lo) && Number.isFinite(a.hi) && a.hi > a.lo)) {
    throw new ShapeError('fillUniform', 'range', `[${a.lo}, ${a.hi}) must be finite with hi > lo`);
  }
  const variant = `fill_uniform_f32_wg${WG}`;
  return makeDispatch(ctx, {
    variant,
    code: () => specialize(fillWgsl, { PARAMS: FillParams.wgsl, WG }, variant),
    uniforms: FillParams.pack({ n: a.n, first, seed: a.seed, lo: a.lo, span: Math.fround(a.hi - a.lo) }),
    storage: [a.out],
    workgroups: grid1d(Math.ceil(a.n / WG), ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}
