/**
 * Sampling penalties on the GPU, applied in place to the logits [R, V] before top-k:
 * HF's repetition penalty (over prompt and generated tokens) and OpenAI's presence and frequency
 * penalties (over generated tokens). Each row names a slot of a persistent seen-token table
 * [nSlots, seenCap] of (id, generated count) pairs, which the engine updates with one small write
 * per sampled token; a row with nSeen 0 is left as it is.
 */
import penaltiesWgsl from '../../shaders/penalties.wgsl?raw';
import type { GpuContext } from '../gpu/device.ts';
import { grid1d, makeDispatch, type KernelDispatch } from '../gpu/dispatch.ts';
import { ShapeError } from '../gpu/errors.ts';
import { requireBufferFits, requireDims } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';

const WG = 64;
/** Bytes of one RowPenalty {repetition f32, presence f32, frequency f32, slot u32, nSeen u32}. */
export const ROW_PENALTY_BYTES = 20;

export interface RowPenalty {
  repetition: number; // > 0; 1 disables
  presence: number;
  frequency: number;
  slot: number; // row of the seen table
  nSeen: number; // entries of that row to apply; 0 disables the row
}

/** A row's seen tokens for the reference: (id, generated count) pairs, distinct ids. */
export interface SeenRow {
  ids: ArrayLike<number>;
  counts: ArrayLike<number>;
}

export function isNeutralPenalty(p: Pick<RowPenalty, 'repetition' | 'presence' | 'frequency'>): boolean {
  return p.repetition === 1 && p.presence === 0 && p.frequency === 0;
}

/** CPU reference (f32 arithmetic as the kernel does it): the penalised copy of logits. */
export function applyPenaltiesRef(logits: Float32Array, R: number, V: number, rows: readonly RowPenalty[], seen: readonly SeenRow[]): Float32Array {
  const out = Float32Array.from(logits);
  const f = Math.fround;
  rows.forEach((st, r) => {
    const s = seen[st.slot];
    for (let j = 0; j < st.nSeen; j++) {
      const id = s.ids[j];
      if (id >= V) continue;
      const c = s.counts[j];
      let x = out[r * V + id];
      x = x > 0 ? f(x / st.repetition) : f(x * st.repetition);
      x = f(f(x - f(st.presence * (c > 0 ? 1 : 0))) - f(st.frequency * c));
      out[r * V + id] = x;
    }
  });
  return out;
}

/** Bytes of the rows buffer [R] of RowPenalty. */
export function packRowPenalties(rows: readonly RowPenalty[]): ArrayBuffer {
  const buf = new ArrayBuffer(Math.max(rows.length, 1) * ROW_PENALTY_BYTES);
  const dv = new DataView(buf);
  rows.forEach((p, r) => {
    if (!(p.repetition > 0 && Number.isFinite(p.repetition))) throw new RangeError(`penalty row ${r}: repetition = ${p.repetition} must be finite and > 0`);
    if (!Number.isFinite(p.presence) || !Number.isFinite(p.frequency)) throw new RangeError(`penalty row ${r}: presence/frequency must be finite`);
    const o = r * ROW_PENALTY_BYTES;
    dv.setFloat32(o, p.repetition, true);
    dv.setFloat32(o + 4, p.presence, true);
    dv.setFloat32(o + 8, p.frequency, true);
    dv.setUint32(o + 12, p.slot, true);
    dv.setUint32(o + 16, p.nSeen, true);
  });
  return buf;
}

export const PenaltyParams = defineUniforms('Params', { R: 'u32', V: 'u32', seenCap: 'u32' });

export interface PenaltiesArgs {
  logits: GPUBuffer; // [R, V] f32, penalised in place
  rows: GPUBuffer; // [R] RowPenalty (packRowPenalties)
  seen: GPUBuffer; // [nSlots, seenCap, 2] u32 (id, generated count)
  R: number;
  V: number;
  nSlots: number;
  seenCap: number;
}

export function penalties(ctx: GpuContext, a: PenaltiesArgs): KernelDispatch {
  const kernel = 'penalties';
  requireDims(kernel, 'shape', { R: a.R, V: a.V, nSlots: a.nSlots, seenCap: a.seenCap });
  requireBufferFits(kernel, 'logits', a.logits, [a.R, a.V]);
  if (a.rows.size < a.R * ROW_PENALTY_BYTES) throw new ShapeError(kernel, 'rows', `buffer of ${a.rows.size} bytes is too small for ${a.R} rows of ${ROW_PENALTY_BYTES} bytes`);
  requireBufferFits(kernel, 'seen', a.seen, [a.nSlots, a.seenCap, 2]);
  if (a.rows === a.logits || a.seen === a.logits) throw new ShapeError(kernel, 'rows/seen', 'must not alias logits');
  const variant = `penalties_f32_wg${WG}`;
  return makeDispatch(ctx, {
    variant,
    code: () => specialize(penaltiesWgsl, { PARAMS: PenaltyParams.wgsl, WG }, variant),
    uniforms: PenaltyParams.pack({ R: a.R, V: a.V, seenCap: a.seenCap }),
    storage: [a.logits, a.rows, a.seen],
    workgroups: grid1d(a.R, ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}
