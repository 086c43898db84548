/**
 * The GPU end of one iteration, after the forward pass left logits [nSeqs, vocab]:
 *   penalties (in place, only when some row has them) -> logit bias and grammar masks (in place,
 *   only when some row has them: src/kernels/logit-mask.ts) -> top-k candidates -> sample one id per row
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
import { logitMask, maskRowWords, MAX_LOGIT_BIAS, ROW_MASK_BYTES, writeLogitRow } from '../kernels/logit-mask.ts';
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
  /** Grammar-constrained rows (structured output, forced tool calls): this step's mask; null: none. */
  mask?: RowMaskSource | null;
  /** logit_bias entries (distinct ids, at most MAX_LOGIT_BIAS); null or absent: none. */
  bias?: readonly LogitBiasEntry[] | null;
}

export interface LogitBiasEntry {
  id: number;
  value: number;
}

/** Writes a row's packed token mask (src/engine/structured/matcher.ts GrammarMatcher). */
export interface RowMaskSource {
  /** `budget`: tokens left to the request, this one included. */
  fillMask(words: Uint32Array, offset: number, budget: number): void;
  readonly budget: number;
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
  private readonly mask: GPUBuffer; // [maxSeqs, ceil(vocab / 32)] u32 packed token masks (masked rows only)
  private readonly maskRows: GPUBuffer; // [maxSeqs] RowMask (8 bytes: masked, nBias)
  private readonly bias: GPUBuffer; // [maxSeqs, MAX_LOGIT_BIAS, 2] u32 (token id, f32 bits)
  /** CPU staging of the same layouts, made once: a step writes only the rows it uses. */
  private readonly maskStage: Uint32Array<ArrayBuffer>; // [maxSeqs, W]
  private readonly rowStage: Uint32Array<ArrayBuffer>; // [maxSeqs, 2]
  private readonly biasStage: Uint32Array<ArrayBuffer>; // [maxSeqs, MAX_LOGIT_BIAS, 2]
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
      const W = maskRowWords(limits.vocab);
      this.mask = make(S * W * 4, 'sampler.mask');
      this.maskRows = make(S * ROW_MASK_BYTES, 'sampler.maskRows');
      this.bias = make(S * MAX_LOGIT_BIAS * 8, 'sampler.bias');
      this.maskStage = new Uint32Array(S * W);
      this.rowStage = new Uint32Array(S * 2);
      this.biasStage = new Uint32Array(S * MAX_LOGIT_BIAS * 2);
      this.readback = made.take(ctx.device.createBuffer({ label: 'sampler.readback', size: this.lpOffset + S * logprobsRowWords(L) * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }));
    } catch (e) {
      made.abandon();
      throw e;
    }
  }

  /**
   * Upload the rows' settings, random numbers and penalty rows for this iteration, and when some
   * row has a mask or a logit bias, the rows' edits (masks computed now, on the CPU, for the
   * masked rows only). Returns whether the logit-mask stage must run.
   */
  writeRows(rows: readonly SampleRow[]): boolean {
    const q = this.ctx.device.queue;
    q.writeBuffer(this.settings, 0, packSamplingSettings(rows.map((r) => r.settings)));
    q.writeBuffer(this.random, 0, new Float32Array(rows.map((r) => Math.min(Math.max(r.random, 0), BELOW_ONE))));
    q.writeBuffer(this.penaltyRows, 0, packRowPenalties(rows.map((r) => r.penalty)));
    if (!rows.some((r) => r.mask || (r.bias && r.bias.length))) return false;
    const W = maskRowWords(this.limits.vocab);
    rows.forEach((row, r) => {
      writeLogitRow({ masked: !!row.mask, bias: row.bias ?? [] }, r, this.rowStage, this.biasStage, MAX_LOGIT_BIAS);
      if (row.mask) {
        row.mask.fillMask(this.maskStage, r * W, row.mask.budget);
        q.writeBuffer(this.mask, r * W * 4, this.maskStage, r * W, W);
      }
      const nBias = row.bias?.length ?? 0;
      if (nBias) q.writeBuffer(this.bias, r * MAX_LOGIT_BIAS * 8, this.biasStage, r * MAX_LOGIT_BIAS * 2, nBias * 2);
    });
    q.writeBuffer(this.maskRows, 0, this.rowStage, 0, rows.length * 2);
    return true;
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

  /** Penalties (optional), logit edits (optional), top-k with k candidates, sampling and logprobs (optional) for R rows. */
  dispatches(R: number, k: number, withPenalties: boolean, withLogprobs: boolean, withEdits = false): KernelDispatch[] {
    const key = `${R}:${k}:${withPenalties}:${withLogprobs}:${withEdits}`;
    let plan = this.plans.get(key);
    if (!plan) {
      const { ctx, limits: l } = this;
      const V = l.vocab;
      if (!Number.isInteger(k) || k < 1 || k > l.candidates || (withLogprobs && k < l.topLogprobs)) throw new RangeError(`sampler: k = ${k} must be in [${withLogprobs ? l.topLogprobs : 1}, ${l.candidates}]`);
      plan = [];
      if (withPenalties) plan.push(penalties(ctx, { logits: this.logits, rows: this.penaltyRows, seen: this.seen, R, V, nSlots: l.maxSeqs, seenCap: l.seenCap }));
      if (withEdits) plan.push(logitMask(ctx, { logits: this.logits, mask: this.mask, rows: this.maskRows, bias: this.bias, R, V, maxBias: MAX_LOGIT_BIAS }));
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
    for (const b of [this.settings, this.random, this.penaltyRows, this.seen, this.candValues, this.candIds, this.ids, this.lp, this.readback, this.mask, this.maskRows, this.bias]) b.destroy();
  }

  private checkSlot(slot: number, entries: number): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.limits.maxSeqs) throw new RangeError(`sampler: slot ${slot} is outside [0, ${this.limits.maxSeqs})`);
    if (entries > this.limits.seenCap) throw new RangeError(`sampler: ${entries} seen tokens exceed the capacity ${this.limits.seenCap}`);
  }
}
