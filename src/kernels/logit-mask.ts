/**
 * Logit bias (OpenAI's logit_bias) and grammar masks (structured output) on the GPU, in place on
 * logits [R, V] after the penalties and before top-k: a masked row's disallowed tokens become
 * -inf, then each bias entry adds to its token's logit (allowed tokens only, so a bias never
 * revives a masked token). The engine uploads a packed bitmask row per constrained row and the
 * rows' bias entries each step into buffers made once (src/engine/sampler.ts).
 */
import logitMaskWgsl from '../../shaders/logit_mask.wgsl?raw';
import type { GpuContext } from '../gpu/device.ts';
import { grid1d, makeDispatch, type KernelDispatch } from '../gpu/dispatch.ts';
import { ShapeError } from '../gpu/errors.ts';
import { requireBufferFits, requireDims } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';

const WG = 64;
/** Bytes of one RowMask {masked u32, nBias u32}. */
export const ROW_MASK_BYTES = 8;

/** Words of a packed mask row over V tokens. */
export const maskRowWords = (V: number) => Math.ceil(V / 32);

/** One row's logit edits: its mask (null: all allowed) and bias entries (distinct ids). */
export interface RowLogitEdits {
  mask: Uint32Array | null; // [W] packed, bit t: token t allowed
  bias: readonly { id: number; value: number }[];
}

/** CPU reference (f32 as the kernel): the edited copy of logits. */
export function applyLogitMaskRef(logits: Float32Array, R: number, V: number, rows: readonly RowLogitEdits[]): Float32Array {
  const out = Float32Array.from(logits);
  rows.forEach((row, r) => {
    const allowed = (t: number) => row.mask === null || ((row.mask[t >>> 5] >>> (t & 31)) & 1) === 1;
    for (let t = 0; t < V; t++) if (!allowed(t)) out[r * V + t] = -Infinity;
    for (const b of row.bias) if (b.id < V && allowed(b.id)) out[r * V + b.id] = Math.fround(out[r * V + b.id] + Math.fround(b.value));
  });
  return out;
}

/** Most logit_bias entries per request (as OpenAI's API limits it). */
export const MAX_LOGIT_BIAS = 300;

const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);

/**
 * Write row r's RowMask into `info` ([R, 2] u32: masked, nBias) and its bias entries into `bias`
 * ([R, maxBias, 2] u32: id, f32 bits), the layout logit_mask.wgsl reads.
 */
export function writeLogitRow(row: Pick<RowLogitEdits, 'bias'> & { masked: boolean }, r: number, info: Uint32Array, bias: Uint32Array, maxBias: number): void {
  if (row.bias.length > maxBias) throw new RangeError(`logit row ${r}: ${row.bias.length} bias entries exceed ${maxBias}`);
  info[r * 2] = row.masked ? 1 : 0;
  info[r * 2 + 1] = row.bias.length;
  row.bias.forEach((b, j) => {
    if (!Number.isFinite(b.value)) throw new RangeError(`logit row ${r}: bias ${b.value} is not finite`);
    f32[0] = b.value;
    bias[(r * maxBias + j) * 2] = b.id;
    bias[(r * maxBias + j) * 2 + 1] = f32Bits[0];
  });
}

/** The rows buffer [R] RowMask and the bias buffer [R, maxBias, 2] u32 for `rows`. */
export function packLogitRows(rows: readonly RowLogitEdits[], maxBias: number): { rows: Uint32Array<ArrayBuffer>; bias: Uint32Array<ArrayBuffer> } {
  const info = new Uint32Array(Math.max(rows.length, 1) * 2);
  const bias = new Uint32Array(Math.max(rows.length, 1) * maxBias * 2);
  rows.forEach((row, r) => writeLogitRow({ masked: row.mask !== null, bias: row.bias }, r, info, bias, maxBias));
  return { rows: info, bias };
}

export const LogitMaskParams = defineUniforms('Params', { R: 'u32', V: 'u32', W: 'u32', maxBias: 'u32', negInfBits: 'u32' });
/** f32 bits of -inf (WGSL has no non-finite constants, so the shader takes them as a uniform). */
const NEG_INF_BITS = 0xff800000;

export interface LogitMaskArgs {
  logits: GPUBuffer; // [R, V] f32, edited in place
  mask: GPUBuffer; // [R, W] u32 packed mask rows (read for masked rows only)
  rows: GPUBuffer; // [R] RowMask (packLogitRows)
  bias: GPUBuffer; // [R, maxBias, 2] u32 (id, f32 bits)
  R: number;
  V: number;
  maxBias: number;
}

export function logitMask(ctx: GpuContext, a: LogitMaskArgs): KernelDispatch {
  const kernel = 'logitMask';
  requireDims(kernel, 'shape', { R: a.R, V: a.V, maxBias: a.maxBias });
  const W = maskRowWords(a.V);
  requireBufferFits(kernel, 'logits', a.logits, [a.R, a.V]);
  requireBufferFits(kernel, 'mask', a.mask, [a.R, W]);
  if (a.rows.size < a.R * ROW_MASK_BYTES) throw new ShapeError(kernel, 'rows', `buffer of ${a.rows.size} bytes is too small for ${a.R} rows of ${ROW_MASK_BYTES} bytes`);
  requireBufferFits(kernel, 'bias', a.bias, [a.R, a.maxBias, 2]);
  if ([a.mask, a.rows, a.bias].includes(a.logits)) throw new ShapeError(kernel, 'mask/rows/bias', 'must not alias logits');
  const variant = `logit_mask_f32_wg${WG}`;
  return makeDispatch(ctx, {
    variant,
    code: () => specialize(logitMaskWgsl, { PARAMS: LogitMaskParams.wgsl, WG }, variant),
    uniforms: LogitMaskParams.pack({ R: a.R, V: a.V, W, maxBias: a.maxBias, negInfBits: NEG_INF_BITS }),
    storage: [a.logits, a.mask, a.rows, a.bias],
    workgroups: grid1d(a.R, ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}
