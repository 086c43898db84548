/**
 * The in-thread serving engine: a request queue and a continuous-batching loop over one
 * ForwardPass and one GpuSampler. Each iteration:
 *   1. finishes aborted requests (their KV blocks go back to the pool),
 *   2. asks the planner (scheduler.ts, a pure function of the queue state) which sequences run how
 *      many tokens: running decodes first, then prefill chunks within the token budget, preempting
 *      the newest request when KV blocks run out (it is recomputed later from its tokens),
 *   3. builds ONE BatchStep, encodes forward + sampling + the result copy in ONE submission,
 *   4. reads back only the sampled ids (+ a few logprob numbers per row when asked), commits the
 *      step and hands each sampled id to its request (stop rules, streaming text, events).
 * The loop runs while there is work; requests arriving meanwhile join the next iteration.
 * LoRA adapters (adapters.ts) are resident in one bank; each request's sequence carries its
 * adapter's slot, so a batch mixes adapters and base-model rows (see forward.ts).
 * The public OpenAI-style surface is in openai.ts; this file is the machinery under it.
 */
import type { GpuContext } from '../gpu/device.ts';
import { encodeDispatches } from '../gpu/dispatch.ts';
import { blocksForBudget, createKvCache, type KvCacheGpu } from '../kv/cache.ts';
import { BLOCK_SIZE, blocksForLength } from '../kv/layout.ts';
import type { ModelConfig } from '../model/config.ts';
import { ForwardPass } from '../model/forward.ts';
import type { GpuModelWeights } from '../model/gpu-weights.ts';
import type { TextTokenizer } from '../model/tokenizer.ts';
import { TOPK_MAX } from '../kernels/sampling.ts';
import type { HostAdapter } from '../learn/adapter.ts';
import { AdapterRegistry, AdapterUnloadedError, resolveAdapterOptions } from './adapters.ts';
import { buildBatchStep, commitBatch, releaseSequence, type BatchEntry } from './batch.ts';
import { EngineClosedError, EngineOptionsError, InvalidRequestError, PromptTooLongError } from './errors.ts';
import type { RequestSettings } from './params.ts';
import { IDLE_ROW, Request } from './request.ts';
import { GpuSampler } from './sampler.ts';
import { planIteration, type IterationPlan, type SeqView } from './scheduler.ts';
import type { AdapterInfo, EngineOptions, EngineStats } from './types.ts';

/** What the engine serves: a loader (or a test) builds it. */
export interface EngineModel {
  config: ModelConfig;
  tokenizer: TextTokenizer;
  weights: GpuModelWeights;
}

/** Engine sizes after defaults and caps. */
export interface ResolvedLimits {
  nBlocks: number;
  maxContext: number;
  maxBlocksPerSeq: number;
  maxTokens: number;
  maxSeqs: number;
  candidates: number;
  topLogprobs: number;
}

const DEFAULTS = { kvBudgetBytes: 64 * 2 ** 20, maxTokensPerIteration: 256, maxSeqs: 8, candidates: 64 };
/** OpenAI's cap on top_logprobs. */
const MAX_TOP_LOGPROBS = 20;

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new EngineOptionsError(name, `= ${v} must be a positive integer`);
  return v;
}

export function resolveLimits(ctx: Pick<GpuContext, 'limits'>, config: ModelConfig, o: EngineOptions): ResolvedLimits {
  const budget = o.kvBudgetBytes ?? DEFAULTS.kvBudgetBytes;
  if (!(budget > 0)) throw new EngineOptionsError('kvBudgetBytes', `= ${budget} must be > 0`);
  const nBlocks = blocksForBudget(ctx, { nLayers: config.nLayers, nKvHeads: config.nKvHeads, headDim: config.headDim }, budget);
  // One sequence alone must always fit the pool, or preemption could not make progress.
  const maxContext = Math.min(positiveInt('maxContext', o.maxContext ?? config.maxPositionEmbeddings), config.maxPositionEmbeddings, nBlocks * BLOCK_SIZE);
  if (maxContext < 2) throw new EngineOptionsError('maxContext', `= ${maxContext} leaves no room for a prompt and a token`);
  const candidates = Math.min(positiveInt('candidates', o.candidates ?? DEFAULTS.candidates), config.vocabSize);
  if (candidates > TOPK_MAX) throw new EngineOptionsError('candidates', `= ${candidates} exceeds the top-k kernel's maximum ${TOPK_MAX}`);
  return {
    nBlocks,
    maxContext,
    maxBlocksPerSeq: blocksForLength(maxContext),
    maxTokens: positiveInt('maxTokensPerIteration', o.maxTokensPerIteration ?? DEFAULTS.maxTokensPerIteration),
    maxSeqs: positiveInt('maxSeqs', o.maxSeqs ?? DEFAULTS.maxSeqs),
    candidates,
    topLogprobs: Math.min(MAX_TOP_LOGPROBS, candidates),
  };
}

export class EngineCore {
  readonly limits: ResolvedLimits;
  readonly kv: KvCacheGpu;
  readonly forward: ForwardPass;
  readonly sampler: GpuSampler;
  /** Named LoRA adapters in the bank; null when the engine was created without adapter slots. */
  readonly adapters: AdapterRegistry | null;
  private running: Request[] = [];
  private waiting: Request[] = [];
  private freeSlots: number[];
  private nextId = 1;
  private looping = false;
  private closed: Error | null = null;
  private iterations = 0;
  private preemptions = 0;
  private readonly eosIds: ReadonlySet<number>;
  private readonly now: () => number = () => performance.now();

  constructor(
    private readonly ctx: GpuContext,
    readonly model: EngineModel,
    options: EngineOptions = {},
  ) {
    const c = model.config;
    this.limits = resolveLimits(ctx, c, options);
    const L = this.limits;
    const adapterOptions = resolveAdapterOptions(options.adapters);
    this.kv = createKvCache(ctx, { nLayers: c.nLayers, nKvHeads: c.nKvHeads, headDim: c.headDim }, L.nBlocks);
    this.adapters = adapterOptions.slots > 0 ? new AdapterRegistry(ctx, c, adapterOptions) : null;
    this.forward = new ForwardPass(ctx, model.weights, this.kv, { maxTokens: L.maxTokens, maxSeqs: L.maxSeqs, maxBlocksPerSeq: L.maxBlocksPerSeq }, this.adapters?.bank ?? null);
    this.sampler = new GpuSampler(ctx, this.forward.arena.logits, {
      maxSeqs: L.maxSeqs,
      vocab: c.vocabSize,
      candidates: L.candidates,
      topLogprobs: L.topLogprobs,
      seenCap: Math.min(c.vocabSize, L.maxContext),
    });
    this.freeSlots = Array.from({ length: L.maxSeqs }, (_, i) => L.maxSeqs - 1 - i);
    this.eosIds = new Set([...model.tokenizer.eosIds, ...c.eosTokenIds]);
  }

  /**
   * Queue a request (synchronously, so requests created in the same tick share the first
   * iteration). Throws PromptTooLongError / InvalidRequestError for this request only.
   */
  submit(promptIds: readonly number[], settings: RequestSettings, signal?: AbortSignal): Request {
    if (this.closed) throw new EngineClosedError(this.closed.message);
    const V = this.model.config.vocabSize;
    if (promptIds.length === 0) throw new InvalidRequestError('prompt', 'encodes to no tokens');
    promptIds.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0 || t >= V) throw new InvalidRequestError(`prompt[${i}]`, `= ${t} is not a token id in [0, ${V})`);
    });
    if (promptIds.length >= this.limits.maxContext) throw new PromptTooLongError(promptIds.length, this.limits.maxContext);
    const adapterSlot = this.adapterSlot(settings.adapter);
    const ctx = { eosIds: this.eosIds, maxContext: this.limits.maxContext, decoder: this.model.tokenizer.streamDecoder(promptIds.slice(-4)), now: this.now };
    const req = new Request(this.nextId++, promptIds, settings, ctx, () => this.abort(req));
    if (adapterSlot !== undefined) req.seq.adapterSlot = adapterSlot;
    if (signal) {
      if (signal.aborted) {
        req.finish('abort');
        return req;
      }
      const onAbort = () => this.abort(req);
      signal.addEventListener('abort', onAbort, { once: true });
      req.cleanup = () => signal.removeEventListener('abort', onAbort);
    }
    this.waiting.push(req);
    this.kick();
    return req;
  }

  /** The bank slot of a request's adapter (undefined: none); an unknown name fails the request. */
  private adapterSlot(name: string | null): number | undefined {
    if (name === null) return undefined;
    const slot = this.adapters?.slotOf(name);
    if (slot === undefined) {
      const loaded = this.adapters?.names() ?? [];
      throw new InvalidRequestError('adapter', `'${name}' is not loaded (loaded: ${loaded.length ? loaded.join(', ') : this.adapters ? 'none' : 'none; the engine has no adapter slots'})`);
    }
    return slot;
  }

  private requireAdapters(): AdapterRegistry {
    if (this.closed) throw new EngineClosedError(this.closed.message);
    if (!this.adapters) throw new EngineOptionsError('adapters', 'is not set: the engine was created without adapter slots (options.adapters.slots)');
    return this.adapters;
  }

  /**
   * Load (or replace) the adapter `name`. Validated against the model and the bank (rank, target
   * modules, tensor shapes) before anything is written; in effect from the next iteration on.
   * Requests already running with `name` continue with the new weights (their cached K/V were
   * computed with the old ones).
   */
  loadAdapter(name: string, adapter: HostAdapter): AdapterInfo {
    return this.requireAdapters().load(name, adapter);
  }

  /**
   * Unload `name`. Requests naming it fail with AdapterUnloadedError: waiting ones now, running
   * ones now too (the loop drops them and frees their blocks at the next step boundary), so the
   * freed slot can take another adapter at once without any row still pointing at it.
   */
  unloadAdapter(name: string): AdapterInfo {
    const info = this.requireAdapters().unload(name);
    const err = new AdapterUnloadedError(name);
    for (const r of this.waiting.filter((w) => w.settings.adapter === name)) {
      this.waiting.splice(this.waiting.indexOf(r), 1);
      r.fail(err);
    }
    for (const r of this.running) if (r.settings.adapter === name) r.fail(err);
    return info;
  }

  listAdapters(): AdapterInfo[] {
    return this.adapters?.list() ?? [];
  }

  stats(): EngineStats {
    return {
      running: this.running.length,
      waiting: this.waiting.length,
      freeBlocks: this.kv.pool.numFree,
      totalBlocks: this.kv.pool.numBlocks,
      maxContext: this.limits.maxContext,
      iterations: this.iterations,
      preemptions: this.preemptions,
    };
  }

  /** Fail every request and free the GPU memory. */
  destroy(): void {
    if (this.closed) return;
    this.closed = new EngineClosedError('destroyed');
    this.failAll(this.closed);
    this.forward.destroy();
    this.sampler.destroy();
    this.kv.destroy();
    this.adapters?.destroy();
  }

  private abort(req: Request): void {
    if (req.finished) return;
    req.aborted = true;
    // A waiting request holds no blocks: finish it now. A running one is finished by the loop at
    // the next step boundary (its blocks may be in the step on the GPU right now).
    const w = this.waiting.indexOf(req);
    if (w >= 0) {
      this.waiting.splice(w, 1);
      req.finish('abort');
    }
  }

  private kick(): void {
    if (this.looping) return;
    this.looping = true;
    // Start on a microtask: requests created in the same synchronous burst join the first step.
    void Promise.resolve().then(() => this.loop());
  }

  private async loop(): Promise<void> {
    try {
      while (!this.closed && (this.running.length > 0 || this.waiting.length > 0)) await this.iterate();
    } catch (e) {
      this.failAll(e);
    } finally {
      this.looping = false;
    }
  }

  private failAll(e: unknown): void {
    for (const r of [...this.running, ...this.waiting]) {
      if (r.seq.blocks.length) releaseSequence(r.seq, this.kv.pool);
      r.fail(e);
    }
    this.running = [];
    this.waiting = [];
    this.freeSlots = Array.from({ length: this.limits.maxSeqs }, (_, i) => this.limits.maxSeqs - 1 - i);
  }

  private view(r: Request): SeqView {
    return { id: r.id, length: r.seq.tokens.length, computed: r.seq.computed, blocks: r.seq.blocks.length };
  }

  /** Drop a running request from the batch state: blocks and slot back. */
  private retire(r: Request): void {
    releaseSequence(r.seq, this.kv.pool);
    if (r.slot >= 0) this.freeSlots.push(r.slot);
    r.slot = -1;
    this.running.splice(this.running.indexOf(r), 1);
  }

  /** Running requests that finished or were aborted leave the batch (blocks and slot back). */
  private reapFinished(): void {
    for (const r of [...this.running]) {
      if (r.aborted || r.finished) {
        this.retire(r);
        r.finish('abort'); // no-op when it already finished
      }
    }
  }

  /** Apply the plan's preemptions and admissions to the queues. */
  private applyPlan(plan: IterationPlan): void {
    const byId = new Map(this.running.map((r) => [r.id, r]));
    const requeued = plan.preempted.map((id) => byId.get(id)!);
    for (const r of requeued) this.retire(r);
    this.preemptions += requeued.length;
    // Preempted newest first: put them back oldest first, ahead of everyone waiting.
    this.waiting.unshift(...requeued.reverse());
    for (const id of plan.admitted) {
      const r = this.waiting.find((w) => w.id === id)!;
      this.waiting.splice(this.waiting.indexOf(r), 1);
      this.running.push(r);
      r.slot = this.freeSlots.pop()!;
      if (r.seen) this.sampler.writeSeen(r.slot, r.seen.pack());
      if (r.scheduledAt < 0) r.scheduledAt = this.now();
    }
  }

  private async iterate(): Promise<void> {
    this.reapFinished();
    const L = this.limits;
    const plan = planIteration({ running: this.running.map((r) => this.view(r)), waiting: this.waiting.map((r) => this.view(r)), freeBlocks: this.kv.pool.numFree, maxTokens: L.maxTokens, maxSeqs: L.maxSeqs });
    this.applyPlan(plan);
    if (plan.entries.length === 0) return; // only preemptions: plan again with the freed blocks
    this.iterations++;
    const all = new Map([...this.running].map((r) => [r.id, r]));
    const reqs = plan.entries.map((e) => all.get(e.id)!);
    const entries: BatchEntry[] = plan.entries.map((e, i) => ({ seq: reqs[i].seq, count: e.count }));
    const step = buildBatchStep(entries, this.kv.pool, L.maxBlocksPerSeq);
    const { T, nSeqs, lora } = this.forward.write(step);
    const rows = plan.entries.map((e, i) => (e.sample ? reqs[i].sampleRow() : IDLE_ROW));
    this.sampler.writeRows(rows);
    const withPenalties = rows.some((r) => r.penalty.nSeen > 0);
    const withLogprobs = plan.entries.some((e, i) => e.sample && reqs[i].settings.topLogprobs !== null);

    const enc = this.ctx.device.createCommandEncoder({ label: `engine step ${this.iterations}` });
    const k = this.sampler.candidatesFor(rows, withLogprobs);
    encodeDispatches(enc, [...this.forward.dispatches(T, nSeqs, step.mode, lora), ...this.sampler.dispatches(nSeqs, k, withPenalties, withLogprobs)]);
    this.sampler.encodeReadback(enc, nSeqs, withLogprobs);
    this.ctx.device.queue.submit([enc.finish()]);
    commitBatch(entries);
    const result = await this.sampler.read(nSeqs, withLogprobs);

    plan.entries.forEach((e, i) => {
      const r = reqs[i];
      if (!e.sample || r.aborted || r.finished) return;
      const update = r.accept(result.ids[i], result.logprobs?.[i] ?? null);
      if (update && r.slot >= 0) this.sampler.updateSeen(r.slot, update);
    });
    this.reapFinished(); // finished and aborted requests leave the batch now
  }
}
