/**
 * Rotary position embedding (HF Llama, rotate_half convention), applied in place to q and k.
 * The inverse frequencies come from the model config (ropeInvFreq, incl. Llama-3 scaling) and are
 * uploaded once; per-token positions come from a storage buffer so dispatches are reused.
 */
import ropeWgsl from '../../shaders/rope.wgsl?raw';
import { uploadStorage } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/device.ts';
import { grid1d, makeDispatch, type KernelDispatch } from '../gpu/dispatch.ts';
import { ShapeError } from '../gpu/errors.ts';
import { requireBufferFits, requireDims } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';

/** config.rope_scaling as HF writes it (`type` is the legacy spelling of `rope_type`). */
export interface RopeScaling {
  rope_type?: string;
  type?: string;
  factor?: number;
  low_freq_factor?: number;
  high_freq_factor?: number;
  original_max_position_embeddings?: number;
}

/** A rope_scaling we cannot honour: an unknown rope_type, or a missing/invalid field of a known one. */
export class UnsupportedRopeScalingError extends Error {
  readonly code = 'unsupported-rope-scaling';
  constructor(
    readonly field: string,
    readonly value: unknown,
    detail: string,
  ) {
    super(`${field} = ${JSON.stringify(value)}: ${detail}`);
    this.name = 'UnsupportedRopeScalingError';
  }
}

function positiveField(s: RopeScaling, name: keyof RopeScaling): number {
  const v = s[name];
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) {
    throw new UnsupportedRopeScalingError(`rope_scaling.${name}`, v, 'must be a positive number');
  }
  return v;
}

/**
 * Inverse frequencies [headDim/2]: 1 / theta^(2i/headDim), then rope_scaling as HF transformers'
 * _compute_*_parameters: null/'default' unchanged, 'linear' divided by factor, 'llama3' as
 * _compute_llama3_parameters (wavelengths above original/low_freq_factor divided by factor, below
 * original/high_freq_factor unchanged, smoothly interpolated in between). Computed in f64 and
 * rounded to f32 once (HF computes in f32: the two may differ in the last ulp).
 */
export function ropeInvFreq(headDim: number, ropeTheta: number, ropeScaling?: RopeScaling | null): Float32Array {
  if (!Number.isInteger(headDim) || headDim <= 0 || headDim % 2) throw new RangeError(`rope: headDim = ${headDim} must be a positive even integer`);
  if (!(ropeTheta > 0) || !Number.isFinite(ropeTheta)) throw new RangeError(`rope: rope_theta = ${ropeTheta} must be a positive number`);
  const half = headDim / 2;
  const base = Array.from({ length: half }, (_, i) => 1 / ropeTheta ** ((2 * i) / headDim));
  const type = ropeScaling ? (ropeScaling.rope_type ?? ropeScaling.type ?? 'default') : 'default';
  let scaled: number[];
  if (type === 'default') {
    scaled = base;
  } else if (type === 'linear') {
    const factor = positiveField(ropeScaling!, 'factor');
    scaled = base.map((f) => f / factor);
  } else if (type === 'llama3') {
    scaled = llama3Scale(base, ropeScaling!);
  } else {
    throw new UnsupportedRopeScalingError('rope_scaling.rope_type', type, "supported: null, 'default', 'linear', 'llama3'");
  }
  return Float32Array.from(scaled);
}

function llama3Scale(invFreq: number[], s: RopeScaling): number[] {
  const factor = positiveField(s, 'factor');
  const low = positiveField(s, 'low_freq_factor');
  const high = positiveField(s, 'high_freq_factor');
  const oldLen = positiveField(s, 'original_max_position_embeddings');
  if (!(high > low)) throw new UnsupportedRopeScalingError('rope_scaling.high_freq_factor', high, `must exceed low_freq_factor (${low})`);
  const lowFreqWavelen = oldLen / low;
  const highFreqWavelen = oldLen / high;
  return invFreq.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highFreqWavelen) return f; // high frequency: unchanged
    if (wavelen > lowFreqWavelen) return f / factor; // low frequency: interpolated by factor
    const smooth = (oldLen / wavelen - low) / (high - low);
    return ((1 - smooth) * f) / factor + smooth * f;
  });
}

/** Upload the inverse frequencies once per model. */
export function uploadRopeInvFreq(ctx: GpuContext, invFreq: Float32Array): GPUBuffer {
  return uploadStorage(ctx, invFreq, 'rope.invFreq'); // [headDim/2] f32
}

/** Rotate one [rows, headDim] tensor of heads in place; `posOf(row)` is its token's position. */
function rotateRef(x: Float32Array, rows: number, headDim: number, invFreq: Float32Array, posOf: (row: number) => number): void {
  const half = headDim / 2;
  for (let r = 0; r < rows; r++) {
    const base = r * headDim;
    for (let j = 0; j < half; j++) {
      // The angle rounded to f32 as on the GPU (f32(pos) * invFreq[j]); cos/sin in f64.
      const angle = Math.fround(Math.fround(posOf(r)) * invFreq[j]);
      const c = Math.cos(angle), s = Math.sin(angle);
      const a = x[base + j], b = x[base + j + half];
      x[base + j] = a * c - b * s;
      x[base + j + half] = b * c + a * s;
    }
  }
}

/** CPU reference: q [T, nHeads, headDim] and k [T, nKvHeads, headDim] rotated (copies). */
export function ropeRef(
  q: Float32Array,
  k: Float32Array,
  positions: Uint32Array,
  invFreq: Float32Array,
  shape: { T: number; nHeads: number; nKvHeads: number; headDim: number },
): { q: Float32Array; k: Float32Array } {
  const { T, nHeads, nKvHeads, headDim } = shape;
  const qo = q.slice(0, T * nHeads * headDim), ko = k.slice(0, T * nKvHeads * headDim);
  rotateRef(qo, T * nHeads, headDim, invFreq, (r) => positions[Math.floor(r / nHeads)]);
  rotateRef(ko, T * nKvHeads, headDim, invFreq, (r) => positions[Math.floor(r / nKvHeads)]);
  return { q: qo, k: ko };
}

export const RopeParams = defineUniforms('Params', { T: 'u32', nHeads: 'u32', nKvHeads: 'u32', half: 'u32' });
const WG = 256;

export interface RopeArgs {
  q: GPUBuffer; // [T, nHeads, headDim] f32, rotated in place
  k: GPUBuffer; // [T, nKvHeads, headDim] f32, rotated in place
  positions: GPUBuffer; // [T] u32 (per-token data: storage, rewritten each step)
  invFreq: GPUBuffer; // [headDim/2] f32 from ropeInvFreq
  T: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
}

export function rope(ctx: GpuContext, a: RopeArgs): KernelDispatch {
  const { T, nHeads, nKvHeads, headDim } = a;
  requireDims('rope', 'shape', { T, nHeads, nKvHeads, headDim });
  if (headDim % 2) throw new ShapeError('rope', 'headDim', `= ${headDim}; rotate_half needs an even head size`);
  requireBufferFits('rope', 'q', a.q, [T, nHeads, headDim]);
  requireBufferFits('rope', 'k', a.k, [T, nKvHeads, headDim]);
  requireBufferFits('rope', 'positions', a.positions, [T]);
  requireBufferFits('rope', 'invFreq', a.invFreq, [headDim / 2]);
  if (a.q === a.k) throw new ShapeError('rope', 'k', 'must not alias q');
  const variant = `rope_f32_wg${WG}`;
  return makeDispatch(ctx, {
    variant,
    code: () => specialize(ropeWgsl, { PARAMS: RopeParams.wgsl, WG }, variant),
    uniforms: RopeParams.pack({ T, nHeads, nKvHeads, half: headDim / 2 }),
    storage: [a.q, a.k, a.positions, a.invFreq],
    workgroups: grid1d(Math.ceil((T * (nHeads + nKvHeads) * (headDim / 2)) / WG), ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}
