/**
 * The GPU end of one iteration, after the forward pass left logits [nSeqs, vocab]:
 *   penalties (in place, only when some row has them) -> top-k candidates -> sample one id per row
 *   -> (when some row asked for logprobs) log-softmax of the chosen and top candidates
 *   -> copy ids (+ logprob rows) into a persistent mappable buffer.
 * Every buffer is allocated once for maxSeqs rows; per-iteration inputs (settings, uniforms,
 * penalty rows) are small writeBuffers and the dispatch lists are cached per (rows, variant).
 */
import { Building } from '../gpu/owner.ts';
import { createStorage } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/device.ts';
import { releaseDispatches, type KernelDispatch } from '../gpu/dispatch.ts';
import { logprobs, logprobsRowWords, unpackLogprobs, type RowLogprobs } from '../kernels/logprobs.ts';
import { packRowPenalties, penalties, ROW_PENALTY_BYTES, type RowPenalty } from '../kernels/penalties.ts';
import { packSamplingSettings, sampleCandidates, topK, type SamplingSettings } from '../kernels/sampling.ts';
import type { SeenUpdate } from './seen.ts';

export interface SamplerLimits {
  maxSeqs: number;
  vocab: number;
  /** Candidates per row (top-k before sampling). */
  candidates: number;
  /** Top logprobs reported per row (<= candidates). */
  topLogprobs: number;
  /** Distinct seen tokens per slot (min(vocab, max context)). */
  seenCap: number;
}

/** One batch row's per-iteration sampling inputs. */
export interface SampleRow {
  settings: SamplingSettings;
  /** Uniform in [0, 1) from the request's PRNG. */
  random: number;
  /** nSeen 0 (or a neutral penalty) leaves the row's logits as they are. */
  penalty: RowPenalty;
}

export interface SampleResult {
  ids: Uint32Array;
  /** Per row, when the iteration asked for logprobs. */
  logprobs: RowLogprobs[] | null;
}

/**
 * Candidates an iteration needs: top-k's cost grows with k (one workgroup reduction per kept
 * pair), so a batch of greedy rows takes k = 1 and small top_k values a small k. Rounded up to a
 * power of two (few plan shapes). Sampling from a prefix of more candidates gives the same token,
 * so a row's result does not depend on what else is in the batch.
 */
export function candidatesFor(rows: readonly Pick<SampleRow, 'settings'>[], withLogprobs: boolean, limits: Pick<SamplerLimits, 'candidates' | 'topLogprobs'>): number {
  const { candidates, topLogprobs } = limits;
  let need = withLogprobs ? Math.max(1, topLogprobs) : 1;
  for (const r of rows) {
    const s = r.settings;
    if (s.temperature > 0) need = Math.max(need, s.topK > 0 ? s.topK : candidates);
  }
  return Math.min(candidates, 2 ** Math.ceil(Math.log2(need)));
}

/** Largest f32 below 1: a random number rounded to f32 must stay < 1. */
const BELOW_ONE = 1 - 2 ** -24;

export class GpuSampler {
  private readonly settings: GPUBuffer; // [maxSeqs] RowSettings (16 bytes)
  private readonly random: GPUBuffer; // [maxSeqs] f32
  private readonly penaltyRows: GPUBuffer; // [maxSeqs] RowPenalty (20 bytes)
  private readonly seen: GPUBuffer; // [maxSeqs slots, seenCap, 2] u32 (id, generated count)
  private readonly candValues: GPUBuffer; // [maxSeqs, candidates] f32
  private readonly candIds: GPUBuffer; // [maxSeqs, candidates] u32
  private readonly ids: GPUBuffer; // [maxSeqs] u32 sampled ids
  private readonly lp: GPUBuffer; // [maxSeqs, 1 + 2 * topLogprobs] u32 (logprobs.wgsl layout)
  private readonly readback: GPUBuffer; // MAP_READ: ids [maxSeqs] then lp rows
  private readonly plans = new Map<string, KernelDispatch[]>();
  private readonly lpOffset: number;

  constructor(
    private readonly ctx: GpuContext,
    private readonly logits: GPUBuffer, // [maxSeqs, vocab] f32 (ForwardPass arena.logits)
    readonly limits: SamplerLimits,
  ) {
    const { maxSeqs: S, candidates: K, topLogprobs: L, seenCap } = limits;
    const made = new Building(); // freed if a later buffer does not fit
    const make = (bytes: number, label: string) => made.take(createStorage(ctx, bytes, label));
    try {
      this.settings = make(S * 16, 'sampler.settings');
      this.random = make(S * 4, 'sampler.random');
      this.penaltyRows = make(S * ROW_PENALTY_BYTES, 'sampler.penaltyRows');
      this.seen = make(S * seenCap * 8, 'sampler.seen');
      this.candValues = make(S * K * 4, 'sampler.candValues');
      this.candIds = make(S * K * 4, 'sampler.candIds');
      this.ids = make(S * 4, 'sampler.ids');
      this.lp = make(S * logprobsRowWords(L) * 4, 'sampler.logprobs');
      this.lpOffset = S * 4;
      this.readback = made.take(ctx.device.createBuffer({ label: 'sampler.readback', size: this.lpOffset + S * logprobsRowWords(L) * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }));
    } catch (e) {
      made.abandon();
      throw e;
    }
  }

  /** Upload the rows' settings, random numbers and penalty rows for this iteration. */
  writeRows(rows: readonly SampleRow[]): void {
    const q = this.ctx.device.queue;
    q.writeBuffer(this.settings, 0, packSamplingSettings(rows.map((r) => r.settings)));
    q.writeBuffer(this.random, 0, new Float32Array(rows.map((r) => Math.min(Math.max(r.random, 0), BELOW_ONE))));
    q.writeBuffer(this.penaltyRows, 0, packRowPenalties(rows.map((r) => r.penalty)));
  }

  /** Replace a slot's seen list (a request starts running in that slot). */
  writeSeen(slot: number, pairs: Uint32Array<ArrayBuffer>): void {
    this.checkSlot(slot, pairs.length / 2);
    if (pairs.length) this.ctx.device.queue.writeBuffer(this.seen, slot * this.limits.seenCap * 8, pairs);
  }

  /** One entry of a slot's seen list changed (a token was generated). */
  updateSeen(slot: number, u: SeenUpdate): void {
    this.checkSlot(slot, u.index + 1);
    this.ctx.device.queue.writeBuffer(this.seen, (slot * this.limits.seenCap + u.index) * 8, new Uint32Array([u.id, u.count]));
  }

  candidatesFor(rows: readonly SampleRow[], withLogprobs: boolean): number {
    return candidatesFor(rows, withLogprobs, this.limits);
  }

  /** Penalties (optional), top-k with k candidates, sampling and logprobs (optional) for R rows. */
  dispatches(R: number, k: number, withPenalties: boolean, withLogprobs: boolean): KernelDispatch[] {
    const key = `${R}:${k}:${withPenalties}:${withLogprobs}`;
    let plan = this.plans.get(key);
    if (!plan) {
      const { ctx, limits: l } = this;
      const V = l.vocab;
      if (!Number.isInteger(k) || k < 1 || k > l.candidates || (withLogprobs && k < l.topLogprobs)) throw new RangeError(`sampler: k = ${k} must be in [${withLogprobs ? l.topLogprobs : 1}, ${l.candidates}]`);
      plan = [];
      if (withPenalties) plan.push(penalties(ctx, { logits: this.logits, rows: this.penaltyRows, seen: this.seen, R, V, nSlots: l.maxSeqs, seenCap: l.seenCap }));
      plan.push(...topK(ctx, { logits: this.logits, values: this.candValues, ids: this.candIds, R, V, k }));
      plan.push(sampleCandidates(ctx, { values: this.candValues, ids: this.candIds, settings: this.settings, random: this.random, out: this.ids, R, k }));
      if (withLogprobs) plan.push(logprobs(ctx, { logits: this.logits, candValues: this.candValues, candIds: this.candIds, chosen: this.ids, out: this.lp, R, V, k, L: l.topLogprobs }));
      this.plans.set(key, plan);
    }
    return plan;
  }

  /** Copy this iteration's results into the mappable buffer (same encoder as the dispatches). */
  encodeReadback(enc: GPUCommandEncoder, R: number, withLogprobs: boolean): void {
    enc.copyBufferToBuffer(this.ids, 0, this.readback, 0, R * 4);
    if (withLogprobs) enc.copyBufferToBuffer(this.lp, 0, this.readback, this.lpOffset, R * logprobsRowWords(this.limits.topLogprobs) * 4);
  }

  /** Wait for the submission and read the sampled ids (+ logprob rows). */
  async read(R: number, withLogprobs: boolean): Promise<SampleResult> {
    const words = logprobsRowWords(this.limits.topLogprobs);
    const size = withLogprobs ? this.lpOffset + R * words * 4 : R * 4;
    await this.readback.mapAsync(GPUMapMode.READ, 0, size);
    try {
      const bytes = this.readback.getMappedRange(0, size);
      const ids = new Uint32Array(bytes.slice(0, R * 4));
      const lp = withLogprobs ? unpackLogprobs(new Uint32Array(bytes.slice(this.lpOffset, this.lpOffset + R * words * 4)), R, this.limits.topLogprobs) : null;
      return { ids, logprobs: lp };
    } finally {
      this.readback.unmap();
    }
  }

  destroy(): void {
    for (const plan of this.plans.values()) releaseDispatches(plan);
    this.plans.clear();
    for (const b of [this.settings, this.random, this.penaltyRows, this.seen, this.candValues, this.candIds, this.ids, this.lp, this.readback]) b.destroy();
  }

  private checkSlot(slot: number, entries: number): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.limits.maxSeqs) throw new RangeError(`sampler: slot ${slot} is outside [0, ${this.limits.maxSeqs})`);
    if (entries > this.limits.seenCap) throw new RangeError(`sampler: ${entries} seen tokens exceed the capacity ${this.limits.seenCap}`);
  }
}
