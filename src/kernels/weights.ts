/**
 * Weight storage formats of the matmul family: the one place that says how a Linear weight lies in
 * GPU memory. A weight is HF's Linear layout, [N = out_features, K = in_features], row-major; the
 * matmuls compute y[M, N] = x[M, K] · Wᵀ. Each format stores whole rows, so a weight too large for
 * one binding is split along N into shards (src/gpu/buffers.ts planRowShards).
 *
 * - 'f32': per row K f32.
 * - 'f16': per row ceil(K/2) u32; element 2j in the low 16 bits, 2j+1 in the high 16 bits (what
 *   unpack2x16float returns as .x/.y, and what array<vec2<f16>> reads with shader-f16); an odd K
 *   pads the last high half with 0.
 * - 'q4' (as MLC's q4f16_1): groups of Q4_GROUP = 32 consecutive elements along K, G = ceil(K/32)
 *   groups per row. Data: per row G*4 u32; element e of group g is the nibble at bits 4*(e%8) of word
 *   g*4 + floor(e/8). Scales: per row ceil(G/2) u32 of packed f16, group g in half g%2 of word
 *   floor(g/2). scale = f16(max|w| over the group / 7); q = clamp(roundHalfEven(w / scale) + 7, 0, 14)
 *   (q = 7 when scale is 0); value = (q - 7) * scale. Elements past K in the last group are 0 (q = 7).
 */
import { ShapeError } from '../gpu/errors.ts';
import { f16BitsToF32, f32ToF16Bits } from '../gpu/f16.ts';
import { fmtShape, requireBufferFits } from '../gpu/shape.ts';

export type WeightFormat = 'f32' | 'f16' | 'q4';
export const WEIGHT_FORMATS: readonly WeightFormat[] = ['f32', 'f16', 'q4'];
export const Q4_GROUP = 32;
export const Q4_OFFSET = 7;

/** u32 words of one row of data (scales excluded). */
export function rowWords(format: WeightFormat, K: number): number {
  if (format === 'f32') return K;
  if (format === 'f16') return Math.ceil(K / 2);
  return Math.ceil(K / Q4_GROUP) * 4;
}

/** u32 words of one row of q4 scales (0 for other formats). */
export function rowScaleWords(format: WeightFormat, K: number): number {
  return format === 'q4' ? Math.ceil(Math.ceil(K / Q4_GROUP) / 2) : 0;
}

/** Bytes of weight data + scales a matmul reads for the whole [N, K] weight (the roofline numerator). */
export function weightBytes(format: WeightFormat, N: number, K: number): number {
  return N * (rowWords(format, K) + rowScaleWords(format, K)) * 4;
}

/** One shard: rows [rowStart, rowStart + rows) of the weight. */
export interface WeightShard {
  readonly rowStart: number;
  readonly rows: number;
  readonly data: GPUBuffer; // [rows, rowWords] u32 (or f32 for 'f32')
  readonly scales?: GPUBuffer; // [rows, rowScaleWords] u32 of packed f16, 'q4' only
}

/** A Linear weight resident on the GPU. */
export interface GpuWeight {
  readonly label: string;
  readonly format: WeightFormat;
  readonly N: number; // out_features (rows)
  readonly K: number; // in_features (columns)
  readonly shards: readonly WeightShard[];
}

/**
 * Guard shared by every kernel that reads a GpuWeight: the shards tile [0, N) in order and each
 * buffer (and q4 scales buffer) holds its rows. `what` names the argument, e.g. "w 'q_proj'".
 */
export function checkWeightShards(kernel: string, what: string, w: GpuWeight): void {
  let next = 0;
  for (const s of w.shards) {
    if (s.rowStart !== next) throw new ShapeError(kernel, what, `shards are not contiguous at row ${s.rowStart} (expected ${next})`);
    next += s.rows;
    requireBufferFits(kernel, `${what} shard@${s.rowStart}`, s.data, [s.rows, rowWords(w.format, w.K)]);
    if (w.format === 'q4') {
      if (!s.scales) throw new ShapeError(kernel, `${what} shard@${s.rowStart}`, 'is q4 but has no scales buffer');
      requireBufferFits(kernel, `${what} scales@${s.rowStart}`, s.scales, [s.rows, rowScaleWords('q4', w.K)]);
    }
  }
  if (next !== w.N) throw new ShapeError(kernel, what, `shards cover ${next} rows of ${fmtShape([w.N, w.K])}`);
}

/** Round half to even, as WGSL's round(). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** CPU reference packing of f32 [N, K] into the 'f16' layout. */
export function packF16Ref(w: Float32Array, N: number, K: number): Uint32Array {
  const words = rowWords('f16', K);
  const out = new Uint32Array(N * words);
  for (let n = 0; n < N; n++) {
    for (let j = 0; j < words; j++) {
      const lo = f32ToF16Bits(w[n * K + 2 * j]);
      const hi = 2 * j + 1 < K ? f32ToF16Bits(w[n * K + 2 * j + 1]) : 0;
      out[n * words + j] = (lo | (hi << 16)) >>> 0;
    }
  }
  return out;
}

export interface Q4Packed {
  data: Uint32Array; // [N, G*4]
  scales: Uint32Array; // [N, ceil(G/2)]
}

/** CPU reference quantization of f32 [N, K] into the 'q4' layout (the spec the GPU quantizer follows). */
export function quantizeQ4Ref(w: Float32Array, N: number, K: number): Q4Packed {
  const G = Math.ceil(K / Q4_GROUP);
  const dw = rowWords('q4', K);
  const sw = rowScaleWords('q4', K);
  const data = new Uint32Array(N * dw);
  const scales = new Uint32Array(N * sw);
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < G; g++) {
      let maxAbs = 0;
      for (let e = 0; e < Q4_GROUP; e++) {
        const k = g * Q4_GROUP + e;
        if (k < K) maxAbs = Math.max(maxAbs, Math.abs(w[n * K + k]));
      }
      const sBits = f32ToF16Bits(maxAbs / 7);
      const scale = f16BitsToF32(sBits);
      scales[n * sw + (g >> 1)] |= sBits << ((g & 1) * 16);
      for (let e = 0; e < Q4_GROUP; e++) {
        const k = g * Q4_GROUP + e;
        const q = k < K && scale > 0 ? Math.min(14, Math.max(0, roundHalfEven(w[n * K + k] / scale) + Q4_OFFSET)) : Q4_OFFSET;
        data[n * dw + g * 4 + (e >> 3)] |= q << ((e & 7) * 4);
      }
    }
  }
  for (let i = 0; i < scales.length; i++) scales[i] >>>= 0;
  for (let i = 0; i < data.length; i++) data[i] >>>= 0;
  return { data, scales };
}

/** Dequantize/unpack a weight back to f32 [N, K]: what the GPU matmul effectively multiplies by. */
export function dequantizeRef(format: WeightFormat, N: number, K: number, data: Float32Array | Uint32Array, scales?: Uint32Array): Float32Array {
  const out = new Float32Array(N * K);
  if (format === 'f32') {
    out.set(data instanceof Float32Array ? data.subarray(0, N * K) : new Float32Array(data.buffer, data.byteOffset, N * K));
    return out;
  }
  const u = data instanceof Uint32Array ? data : new Uint32Array(data.buffer, data.byteOffset, data.length);
  const dw = rowWords(format, K);
  if (format === 'f16') {
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) out[n * K + k] = f16BitsToF32((u[n * dw + (k >> 1)] >>> ((k & 1) * 16)) & 0xffff);
    return out;
  }
  if (!scales) throw new Error('q4 dequantization needs scales');
  const sw = rowScaleWords('q4', K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const g = Math.floor(k / Q4_GROUP);
      const e = k % Q4_GROUP;
      const q = (u[n * dw + g * 4 + (e >> 3)] >>> ((e & 7) * 4)) & 0xf;
      const s = f16BitsToF32((scales[n * sw + (g >> 1)] >>> ((g & 1) * 16)) & 0xffff);
      out[n * K + k] = (q - Q4_OFFSET) * s;
    }
  }
  return out;
}

/** CPU reference matmul: y[M, N] = x[M, K] · Wᵀ with W [N, K] f32 (dequantize first for f16/q4). */
export function matmulRef(x: Float32Array, w: Float32Array, M: number, N: number, K: number): Float32Array {
  const y = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += x[m * K + k] * w[n * K + k];
      y[m * N + n] = acc;
    }
  }
  return y;
}
