/**
 * The in-thread serving engine: a request queue, the on-device learner, and the iteration loop
 * over one ForwardPass and one GpuSampler. Each iteration:
 *   1. finishes aborted requests (their KV blocks go back to the pool),
 *   2. asks the scheduler (src/scheduler/planner.ts, a pure function of the queue state) what runs:
 *      running decodes first, then prefill chunks and fine-tune work units packed by priority and
 *      best fit under the per-submission GPU-time budget and the free KV blocks, preempting the
 *      newest request when blocks run out (it is recomputed later from its tokens),
 *   3. encodes the inference pass + sampling + the result copy and the planned fine-tune units in
 *      ONE submission, or in layer-range slices when the plan exceeds the budget,
 *   4. reads back only the sampled ids (+ a few logprob numbers per row when asked) and, when a
 *      training phase ended, the learner's few numbers; commits the step, hands each sampled id to
 *      its request, feeds the measured time to the cost model and emits the stats records.
 * The loop runs while there is work; requests and pairs arriving meanwhile join the next iteration.
 * LoRA adapters (adapters.ts) are resident in one bank; each request's sequence carries its
 * adapter's slot, so a batch mixes adapters and base-model rows (see forward.ts). The learner's
 * adapter is one of them: its new weights are copied into the bank by the step's last submission.
 * The public OpenAI-style surface is in openai.ts; this file is the machinery under it.
 */
import { Building } from '../gpu/owner.ts';
import type { GpuContext } from '../gpu/device.ts';
import { encodeDispatches, type KernelDispatch } from '../gpu/dispatch.ts';
import { blocksForBudget, createKvCache, type KvCacheGpu } from '../kv/cache.ts';
import { BLOCK_SIZE, blocksForLength } from '../kv/layout.ts';
import type { ModelConfig } from '../model/config.ts';
import { ForwardPass } from '../model/forward.ts';
import type { GpuModelWeights } from '../model/gpu-weights.ts';
import type { TextTokenizer } from '../model/tokenizer.ts';
import { TOPK_MAX } from '../kernels/sampling.ts';
import type { HostAdapter } from '../learn/adapter.ts';
import { AdapterRegistry, AdapterUnloadedError, resolveAdapterOptions } from './adapters.ts';
import { buildBatchStep, commitBatch, pruneSequence, releaseSequence, type BatchEntry, type SequenceState } from './batch.ts';
import { kvWindowOf } from './params.ts';
import type { SinksWindow } from '../kv/pruning.ts';
import { UNBOUNDED_WINDOW } from '../kernels/attention.ts';
import { NO_BLOCK } from '../kv/layout.ts';
import { EngineClosedError, EngineOptionsError, InvalidRequestError, PromptTooLongError } from './errors.ts';
import type { RequestSettings } from './params.ts';
import { IDLE_ROW, Request } from './request.ts';
import { GpuSampler } from './sampler.ts';
import type { AdapterInfo, EngineOptions, EngineStats, SchedulerOptions } from './types.ts';
import { CostModel, addFeatures, zeroFeatures, type WorkFeatures } from '../scheduler/cost-model.ts';
import { entryFeatures, unitFeatures } from '../scheduler/features.ts';
import { planIteration } from '../scheduler/planner.ts';
import { DEFAULT_PERIODIC, FinetuneGate, isPolicy, POLICIES } from '../scheduler/policy.ts';
import type { FinetuneStats, IterationStats, LearningStatus, MemoryStats, RequestStats, StatsRecord } from '../scheduler/stats.ts';
import { DEFAULT_BUDGET_MS, defaultSchedulerConfig, type FinetuneJobView, type IterationPlan, type RequestView, type SchedulerConfig } from '../scheduler/types.ts';
import { KindTimer, type KindTimes, type TimedKind } from './kind-timer.ts';
import { Learner, type LearningOptions } from './learner.ts';
import { frameBudgetFor } from './budget-source.ts';
import { constantBudget, validateFrameReport, type BudgetNow, type FrameBudget, type FrameReport } from '../scheduler/frame-budget.ts';
import { partitionSlices } from './slices.ts';
import { PrefixReuse } from './prefix.ts';
import { tokenizePair, truncatePair, type TextPair } from '../learn/pair-tokens.ts';
import type { TokenPair } from '../learn/reference.ts';
import type { PairLogprobs } from '../learn/trainer.ts';

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

/** Limits an EngineOptions field takes when absent (candidates: logits a sampled token is drawn from). */
export const ENGINE_DEFAULTS = { kvBudgetBytes: 64 * 2 ** 20, maxTokensPerIteration: 256, maxSeqs: 8, candidates: 64 } as const;
/** OpenAI's cap on top_logprobs. */
const MAX_TOP_LOGPROBS = 20;

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new EngineOptionsError(name, `= ${v} must be a positive integer`);
  return v;
}

export function resolveLimits(ctx: Pick<GpuContext, 'limits'>, config: ModelConfig, o: EngineOptions): ResolvedLimits {
  const budget = o.kvBudgetBytes ?? ENGINE_DEFAULTS.kvBudgetBytes;
  if (!(budget > 0)) throw new EngineOptionsError('kvBudgetBytes', `= ${budget} must be > 0`);
  const nBlocks = blocksForBudget(ctx, { nLayers: config.nLayers, nKvHeads: config.nKvHeads, headDim: config.headDim }, budget);
  // One sequence alone must always fit the pool, or preemption could not make progress.
  const maxContext = Math.min(positiveInt('maxContext', o.maxContext ?? config.maxPositionEmbeddings), config.maxPositionEmbeddings, nBlocks * BLOCK_SIZE);
  if (maxContext < 2) throw new EngineOptionsError('maxContext', `= ${maxContext} leaves no room for a prompt and a token`);
  const candidates = Math.min(positiveInt('candidates', o.candidates ?? ENGINE_DEFAULTS.candidates), config.vocabSize);
  if (candidates > TOPK_MAX) throw new EngineOptionsError('candidates', `= ${candidates} exceeds the top-k kernel's maximum ${TOPK_MAX}`);
  return {
    nBlocks,
    maxContext,
    maxBlocksPerSeq: blocksForLength(maxContext),
    maxTokens: positiveInt('maxTokensPerIteration', o.maxTokensPerIteration ?? ENGINE_DEFAULTS.maxTokensPerIteration),
    maxSeqs: positiveInt('maxSeqs', o.maxSeqs ?? ENGINE_DEFAULTS.maxSeqs),
    candidates,
    topLogprobs: Math.min(MAX_TOP_LOGPROBS, candidates),
  };
}

/** Scheduler settings after defaults; bad values name the option. */
export function resolveScheduler(o: SchedulerOptions = {}): { config: SchedulerConfig; periodic: typeof DEFAULT_PERIODIC } {
  const policy = o.policy ?? 'mace';
  if (!isPolicy(policy)) throw new EngineOptionsError('scheduler.policy', `= ${JSON.stringify(policy)} is not one of ${POLICIES.join(', ')}`);
  const raw = o.budgetMs ?? DEFAULT_BUDGET_MS;
  if (typeof raw !== 'number' || Number.isNaN(raw) || raw < 0) throw new EngineOptionsError('scheduler.budgetMs', `= ${raw} must be a number of ms >= 0 (0 or Infinity: no budget)`);
  const config: SchedulerConfig = { ...defaultSchedulerConfig(policy, raw === 0 ? Infinity : raw), ...o.tuning, policy, budgetMs: raw === 0 ? Infinity : raw };
  for (const [k, v] of Object.entries(config)) if (k !== 'policy' && (typeof v !== 'number' || Number.isNaN(v))) throw new EngineOptionsError(`scheduler.tuning.${k}`, `= ${String(v)} must be a number`);
  const periodic = { ...DEFAULT_PERIODIC, ...o.periodic };
  if (!(periodic.periodMs >= 0) || !(Number.isInteger(periodic.pairsTrigger) && periodic.pairsTrigger >= 1)) throw new EngineOptionsError('scheduler.periodic', `= ${JSON.stringify(o.periodic)}: periodMs must be >= 0 and pairsTrigger a positive integer`);
  return { config, periodic };
}

/** A part of one iteration's GPU work: encoded in order, submitted in slices. */
interface WorkPart {
  encode: (enc: GPUCommandEncoder) => void;
  /** Predicted ms (for balancing slices). */
  ms: number;
  /** What it runs (its GPU time is measured per kind). */
  kind: TimedKind;
}

/** An iteration's measured time: wall time submit → results, and GPU time per kind when timed. */
interface Measured {
  measuredMs: number;
  slices: number;
  gpu: KindTimes | null;
}

export class EngineCore {
  readonly limits: ResolvedLimits;
  readonly kv: KvCacheGpu;
  readonly forward: ForwardPass;
  readonly sampler: GpuSampler;
  /** Named LoRA adapters in the bank; null when the engine was created without adapter slots. */
  readonly adapters: AdapterRegistry | null;
  /** Reuse of cached prompt prefixes (src/engine/prefix.ts); null when options.prefixCache is false. */
  readonly prefix: PrefixReuse | null;
  /** kv_window of requests that give none (options.kvWindow); null: the model's own window. */
  private readonly kvWindow: SinksWindow | null;
  /** Blocks freed early out of their sequence's key window. */
  private prunedBlocks = 0;
  private running: Request[] = [];
  private waiting: Request[] = [];
  private freeSlots: number[];
  private nextId = 1;
  private looping = false;
  private closed: Error | null = null;
  private iterations = 0;
  private preemptions = 0;
  private sliced = 0;
  private readonly eosIds: ReadonlySet<number>;
  private readonly now: () => number = () => performance.now();
  readonly scheduler: SchedulerConfig;
  /** The planner's cost model (its intercept follows the timing: see CostModel's `intercept`). */
  readonly cost: CostModel;
  private readonly gate: FinetuneGate;
  /** On-device learning; null until enableLearning(). */
  private learner: Learner | null = null;
  /** Receive the stats stream (iteration, request, fine-tune records). */
  private readonly statsListeners = new Set<(r: StatsRecord) => void>();
  /** A timer that re-kicks the loop when fine-tuning waits for its policy's window. */
  private gateTimer: ReturnType<typeof setTimeout> | null = null;
  /** The budget from the page's frames (reportFrames); null: always scheduler.budgetMs. */
  private readonly frames: FrameBudget | null;
  /** GPU time per kind of each iteration (timestamp queries), or wall time. */
  private readonly timer: KindTimer;

  constructor(
    private readonly ctx: GpuContext,
    readonly model: EngineModel,
    options: EngineOptions = {},
  ) {
    const c = model.config;
    // Every option is checked before any GPU memory is taken.
    this.limits = resolveLimits(ctx, c, options);
    const L = this.limits;
    const adapterOptions = resolveAdapterOptions(options.adapters);
    const sched = resolveScheduler(options.scheduler);
    this.scheduler = sched.config;
    this.frames = frameBudgetFor(options.scheduler, sched.config.budgetMs);
    const timing = options.scheduler?.timing ?? 'auto';
    if (timing !== 'auto' && timing !== 'wall') throw new EngineOptionsError('scheduler.timing', `= ${JSON.stringify(timing)} is not 'auto' or 'wall'`);
    let kvWindow: SinksWindow | null;
    try {
      kvWindow = kvWindowOf(options.kvWindow, 'kvWindow');
    } catch (e) {
      throw new EngineOptionsError('kvWindow', e instanceof Error ? e.message.replace(/^request: kvWindow\S* /, '') : String(e));
    }
    this.kvWindow = kvWindow;
    const prefixCache = options.prefixCache ?? true;
    if (typeof prefixCache !== 'boolean') throw new EngineOptionsError('prefixCache', `= ${JSON.stringify(prefixCache)} must be true or false`);
    // The engine owns its KV cache, adapter bank, forward arena, sampler and timer (not the model's
    // weights): a failure part-way frees what was made (src/gpu/owner.ts).
    const made = new Building();
    try {
      this.kv = made.take(createKvCache(ctx, { nLayers: c.nLayers, nKvHeads: c.nKvHeads, headDim: c.headDim }, L.nBlocks));
      this.adapters = adapterOptions.slots > 0 ? made.take(new AdapterRegistry(ctx, c, adapterOptions)) : null;
      this.forward = made.take(new ForwardPass(ctx, model.weights, this.kv, { maxTokens: L.maxTokens, maxSeqs: L.maxSeqs, maxBlocksPerSeq: L.maxBlocksPerSeq }, this.adapters?.bank ?? null));
      this.sampler = made.take(
        new GpuSampler(ctx, this.forward.arena.logits, {
          maxSeqs: L.maxSeqs,
          vocab: c.vocabSize,
          candidates: L.candidates,
          topLogprobs: L.topLogprobs,
          seenCap: Math.min(c.vocabSize, L.maxContext),
        }),
      );
      this.timer = made.take(new KindTimer(ctx, timing));
    } catch (e) {
      made.abandon();
      throw e;
    }
    this.prefix = prefixCache ? new PrefixReuse(this.kv.pool, (slot) => this.adapters!.epochOf(slot), c.slidingWindow ?? UNBOUNDED_WINDOW) : null;
    if (this.prefix && this.adapters) {
      const prefix = this.prefix;
      this.adapters.onChange((slot, oldEpoch) => prefix.invalidateSlot(slot, oldEpoch));
    }
    this.freeSlots = Array.from({ length: L.maxSeqs }, (_, i) => L.maxSeqs - 1 - i);
    this.eosIds = new Set([...model.tokenizer.eosIds, ...c.eosTokenIds]);
    this.cost = new CostModel({ intercept: this.timer.mode === 'timestamp' ? 'inference' : 'submission' });
    this.gate = new FinetuneGate(sched.config.policy, sched.periodic, this.now());
  }

  /** Receive the stats stream (plain-data records). Returns the unsubscribe. */
  onStats(listener: (r: StatsRecord) => void): () => void {
    this.statsListeners.add(listener);
    return () => this.statsListeners.delete(listener);
  }

  private emit(r: StatsRecord): void {
    for (const l of this.statsListeners) {
      try {
        l(r);
      } catch {
        // a failing listener never stops serving
      }
    }
  }

  /**
   * Start on-device learning: a LoRA adapter trained with DPO on the pairs given to learnPair(),
   * served under `options.adapterName` ('learnt'). Needs adapter slots. Idempotent.
   */
  async enableLearning(options: LearningOptions = {}): Promise<LearningStatus> {
    const registry = this.requireAdapters();
    if (!this.learner) this.learner = await Learner.create(this.ctx, this.model.weights, registry, options, this.limits.maxContext, this.scheduler.policy, this.now);
    return this.learner.status();
  }

  /** Learning status, or null when learning is off. */
  learningStatus(): LearningStatus | null {
    return this.learner?.status() ?? null;
  }

  /**
   * Queue a text preference pair for training (key: its stable id; a queued key is ignored).
   * Returns false when learning is off or the pair cannot be trained (nothing to learn from).
   */
  learnPair(key: string, pair: TextPair): boolean {
    const learner = this.learner;
    if (!learner || this.closed) return false;
    const tokens = truncatePair(tokenizePair(this.model.tokenizer, pair, { eos: null }), learner.maxTokens);
    return tokens !== null && this.learnTokens(key, tokens);
  }

  /** Queue a token pair for training; `ref`: its reference log-probs when already known. */
  learnTokens(key: string, pair: TokenPair, ref: PairLogprobs | null = null): boolean {
    if (!this.learner || this.closed || !this.learner.enqueue(key, pair, ref)) return false;
    this.kick();
    return true;
  }

  /** The learner (tests and tools: its adapter and trainer); null while learning is off. */
  get learnerState(): Learner | null {
    return this.learner;
  }

  /** Drop a queued pair (its rating changed). */
  forgetPair(key: string): void {
    this.learner?.remove(key);
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
    const keyWindow = this.keyWindowFor(settings.kvWindow);
    if (keyWindow) req.seq.keyWindow = keyWindow;
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

  /**
   * A request's key window: its kv_window (or the engine's), narrowed to the model's sliding window;
   * the model's window alone when neither is set (so its blocks out of reach are freed too); none
   * for full attention.
   */
  private keyWindowFor(requested: SinksWindow | null): SinksWindow | undefined {
    const model = this.model.config.slidingWindow ?? UNBOUNDED_WINDOW;
    const w = requested ?? this.kvWindow;
    if (w) return { sinks: w.sinks, window: Math.min(w.window, model) };
    return model === UNBOUNDED_WINDOW ? undefined : { sinks: 0, window: model };
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
      policy: this.scheduler.policy,
      budgetMs: this.scheduler.budgetMs,
      slicedIterations: this.sliced,
      costSamples: this.cost.samples,
      learning: this.learningStatus(),
      prefixCache: this.prefixCounts(),
      prunedBlocks: this.prunedBlocks,
    };
  }

  private prefixCounts(): EngineStats['prefixCache'] {
    if (!this.prefix) return null;
    const { type: _type, t: _t, ...counts } = this.prefix.record(0);
    return counts;
  }

  /** Fail every request and free the GPU memory. */
  destroy(): void {
    if (this.closed) return;
    this.closed = new EngineClosedError('destroyed');
    this.failAll(this.closed);
    this.forward.destroy();
    this.sampler.destroy();
    this.prefix?.destroy();
    this.kv.destroy();
    this.learner?.destroy();
    this.learner = null;
    this.adapters?.destroy();
    this.timer.destroy();
    if (this.gateTimer) clearTimeout(this.gateTimer);
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
      while (!this.closed && this.hasWork()) {
        const progressed = await this.iterate();
        if (!progressed && this.running.length === 0 && this.waiting.length === 0) {
          // Only fine-tuning is left and its policy holds it back: look again in a while.
          this.gateTimer ??= setTimeout(() => {
            this.gateTimer = null;
            this.kick();
          }, 50);
          break;
        }
      }
    } catch (e) {
      this.failAll(e);
    } finally {
      this.looping = false;
    }
  }

  /**
   * The page's latest frame measurements (src/engine/frame-monitor.ts): the next plans' budget
   * follows them (src/scheduler/frame-budget.ts). Throws FrameReportError naming a bad field;
   * ignored (after the check) when the engine's budget is constant.
   */
  reportFrames(report: FrameReport): void {
    if (this.frames) this.frames.report(report, this.now());
    else validateFrameReport(report);
  }

  /** The budget the next plan is packed under, and where it comes from. */
  budgetNow(): BudgetNow {
    return this.frames?.current(this.now()) ?? constantBudget(this.scheduler.budgetMs);
  }

  /** Work that could run now: requests, or fine-tuning its policy lets run (benchmarks' busy time). */
  pendingWork(): boolean {
    if (this.running.length > 0 || this.waiting.length > 0) return true;
    if (!this.learner?.hasWork) return false;
    const p = this.scheduler.policy;
    return p === 'mace' || p === 'sync' || (p === 'periodic' && this.gate.open);
  }

  private hasWork(): boolean {
    return this.running.length > 0 || this.waiting.length > 0 || (this.learner?.hasWork ?? false);
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

  /** A running request as the planner sees it (with the prefix cache: the blocks preempting it would free). */
  private view(r: Request): RequestView {
    return { id: r.id, length: r.seq.tokens.length, computed: r.seq.computed, blocks: r.seq.blocks.length, arrivedAt: r.createdAt, exclusiveBlocks: this.exclusiveBlocks(r.seq) };
  }

  /** Blocks of `seq` that releasing it would return to the pool (shared ones and freed holes stay as they are). */
  private exclusiveBlocks(seq: SequenceState): number {
    let n = 0;
    for (const b of seq.blocks) if (b !== NO_BLOCK && this.kv.pool.refCount(b) === 1) n++;
    return n;
  }

  /**
   * A waiting request as the planner sees it: with the prefix cache, the first ones that could be
   * admitted now (free slots) show the prefix they would reuse as computed tokens and held blocks.
   */
  private waitingViews(): RequestView[] {
    const admissible = this.limits.maxSeqs - this.running.length;
    return this.waiting.map((r, i) => {
      const v: RequestView = { id: r.id, length: r.seq.tokens.length, computed: 0, blocks: 0, arrivedAt: r.createdAt };
      if (this.prefix && i < admissible) {
        const m = this.prefix.peek(r.seq);
        v.computed = m.blocks.length * BLOCK_SIZE;
        v.blocks = m.blocks.length;
        v.cachedFree = m.free;
      }
      return v;
    });
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
        this.emitRequest(r);
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
      // The prefix the planner saw (nothing allocated since the plan, so the match is the same).
      if (this.prefix) {
        const reused = this.prefix.admit(r.seq, r.reuse, r.promptIds.length, r.scheduledAt < 0);
        if (r.scheduledAt < 0) r.cachedTokens = Math.min(reused, r.promptIds.length);
      }
      this.running.push(r);
      r.slot = this.freeSlots.pop()!;
      if (r.seen) this.sampler.writeSeen(r.slot, r.seen.pack());
      if (r.scheduledAt < 0) r.scheduledAt = this.now();
    }
  }

  private emitRequest(r: Request): void {
    if (this.statsListeners.size === 0) return;
    const times = r.tokenTimes;
    const rec: RequestStats = {
      type: 'request', id: `req-${r.id}`, t: this.now(), arrivedAt: r.createdAt, promptTokens: r.promptIds.length, completionTokens: r.output.length,
      ttftMs: times.length ? times[0] - r.createdAt : null, tbtMs: times.slice(1).map((t, i) => t - times[i]),
      finishReason: r.finishReason ?? 'error', adapter: r.settings.adapter, cachedTokens: r.cachedTokens,
    };
    this.emit(rec);
  }

  private plansBuilt(): number {
    return this.forward.built + (this.learner?.trainer.built ?? 0);
  }

  /** One iteration; false when nothing could run (only held-back fine-tuning). */
  private async iterate(): Promise<boolean> {
    this.reapFinished();
    const L = this.limits;
    const t0 = this.now();
    const builtBefore = this.plansBuilt();
    const pipelinesBefore = this.ctx.pipelines.size;
    const learner = this.learner;
    const jobs: FinetuneJobView[] = learner ? learner.views() : [];
    const allowed = learner !== null && this.gate.allowed(t0, learner.pendingSteps, learner.stepsDone);
    const running = this.running.map((r) => this.view(r));
    const waiting = this.waitingViews();
    const budget = this.budgetNow(); // the page's frames, or the constant
    const plan = planIteration(
      { now: t0, running, waiting, finetune: jobs, freeBlocks: this.kv.pool.numFree, maxTokens: L.maxTokens, maxSeqs: L.maxSeqs, finetuneAllowed: allowed, finetuneArenaBytes: learner?.arenaBytes ?? 0 },
      { ...this.scheduler, budgetMs: budget.budgetMs },
      this.cost,
    );
    const schedulerMs = this.now() - t0;
    const views = new Map([...running, ...waiting].map((v) => [v.id, v]));
    this.applyPlan(plan);
    if (plan.entries.length === 0 && !plan.finetune) return plan.preempted.length > 0; // preemptions only: plan again
    this.iterations++;

    const parts: WorkPart[] = [];
    const features = { inference: zeroFeatures(), finetune: zeroFeatures() };
    const inference = plan.entries.length > 0 ? this.encodeInference(plan, parts) : null;
    for (const e of plan.entries) {
      const v = views.get(e.id)!;
      features.inference = addFeatures(features.inference, entryFeatures(v.computed, e.count));
    }
    // A batch with an entry of more than one token runs every row in mixed mode (features.ts mixedFor).
    if (plan.entries.some((e) => e.count > 1)) features.inference.mixedTokens = features.inference.tokens;
    if (plan.finetune && learner) {
      const job = jobs.find((j) => j.id === plan.finetune!.job)!;
      for (const u of job.ready.slice(0, plan.finetune.units)) {
        const f = unitFeatures(u);
        features.finetune = addFeatures(features.finetune, f);
        parts.push({ encode: (enc) => learner.encode(enc, job.id, 1), ms: this.cost.marginalMs(f), kind: 'finetune' });
      }
    }

    const measured = await this.submitParts(parts, plan.slices, inference);
    const fin = learner ? await learner.afterSubmit() : null;
    if (inference) {
      this.acceptSampled(inference);
      // Blocks filled by this step become matchable (before finished requests release them); then
      // blocks out of every later query's window go back to the pool.
      for (const r of inference.reqs) {
        this.prefix?.register(r.seq, r.reuse);
        const freed = pruneSequence(r.seq, this.kv.pool);
        if (freed > 0) {
          this.prunedBlocks += freed;
          this.prefix?.stopRegistering(r.reuse);
        }
      }
    }
    // An iteration that built dispatch lists (a new batch shape or unit length) also paid their
    // set-up and maybe shader compiles: not a sample of the steady cost.
    if (this.plansBuilt() === builtBefore) this.observeCost(features, measured);
    if (measured.slices > 1) this.sliced++;
    this.reapFinished(); // finished and aborted requests leave the batch now
    this.emitIteration(plan, t0, measured, schedulerMs, budget, { plans: this.plansBuilt() - builtBefore, pipelines: this.ctx.pipelines.size - pipelinesBefore });
    if (fin) this.emit(fin satisfies FinetuneStats);
    return true;
  }

  /**
   * Feed the cost model: with GPU times per kind each fit learns from its own kind's time (sliced
   * iterations too: the kinds' times add up over the slices); with wall time only whole, unsliced
   * iterations are samples (a slice boundary adds a wait that no feature explains).
   */
  private observeCost(features: { inference: WorkFeatures; finetune: WorkFeatures }, m: Measured): void {
    if (m.gpu) {
      const inf = features.inference.rows > 0 ? { f: features.inference, ms: m.gpu.inference } : null;
      const ft = features.finetune.ftDispatches > 0 ? { f: features.finetune, ms: m.gpu.finetune } : null;
      this.cost.observeByKind(inf, ft);
    } else if (m.slices === 1) this.cost.observe(addFeatures(features.inference, features.finetune), m.measuredMs);
  }

  /** Build and write the batch step; its forward parts and the sampling go into `parts`. */
  private encodeInference(plan: IterationPlan, parts: WorkPart[]): InferenceStep {
    const L = this.limits;
    const all = new Map(this.running.map((r) => [r.id, r]));
    const reqs = plan.entries.map((e) => all.get(e.id)!);
    const entries: BatchEntry[] = plan.entries.map((e, i) => ({ seq: reqs[i].seq, count: e.count }));
    const step = buildBatchStep(entries, this.kv.pool, L.maxBlocksPerSeq);
    const { T, nSeqs, lora } = this.forward.write(step);
    const rows = plan.entries.map((e, i) => (e.sample ? reqs[i].sampleRow() : IDLE_ROW));
    this.sampler.writeRows(rows);
    const withPenalties = rows.some((r) => r.penalty.nSeen > 0);
    const withLogprobs = plan.entries.some((e, i) => e.sample && reqs[i].settings.topLogprobs !== null);
    const k = this.sampler.candidatesFor(rows, withLogprobs);
    const layerParts = this.forward.dispatchParts(T, nSeqs, step.mode, lora);
    const sampling: KernelDispatch[] = this.sampler.dispatches(nSeqs, k, withPenalties, withLogprobs);
    const perLayer = (plan.predictedMs.decode + plan.predictedMs.prefill) / layerParts.length;
    layerParts.forEach((dispatches, l) => {
      const last = l === layerParts.length - 1;
      parts.push({
        ms: perLayer,
        kind: 'inference',
        encode: (enc) => {
          encodeDispatches(enc, last ? [...dispatches, ...sampling] : dispatches);
          if (last) this.sampler.encodeReadback(enc, nSeqs, withLogprobs);
        },
      });
    });
    return { plan, reqs, entries, nSeqs, withLogprobs, result: null };
  }

  /**
   * Submit the parts in `slices` balanced groups, waiting for each group before the next (so one
   * submission holds the GPU about one budget), then read the sampled ids. Returns the measured
   * wall time from the first submission to the last result.
   */
  private async submitParts(parts: WorkPart[], slices: number, inference: InferenceStep | null): Promise<Measured> {
    const groups = partitionSlices(parts.map((p) => p.ms), slices);
    const queue = this.ctx.device.queue;
    const timer = this.timer;
    timer.begin();
    const t0 = this.now();
    for (const [g, group] of groups.entries()) {
      const enc = this.ctx.device.createCommandEncoder({ label: `iteration ${this.iterations}${groups.length > 1 ? ` slice ${g + 1}/${groups.length}` : ''}` });
      let kind: TimedKind | null = null;
      for (const i of group) {
        if (parts[i].kind !== kind) timer.mark(enc, (kind = parts[i].kind));
        parts[i].encode(enc);
      }
      timer.mark(enc, null);
      const last = g === groups.length - 1;
      if (last) timer.resolve(enc);
      queue.submit([enc.finish()]);
      if (!last) await queue.onSubmittedWorkDone();
    }
    // The marks map in parallel with the sampled ids: the same wait, not another round trip. A
    // failed map (the engine destroyed mid-iteration, a lost device) leaves this iteration on wall
    // time; whatever failed shows in the sampled ids' read-back.
    const gpu = timer.read().catch(() => null);
    if (inference) {
      commitBatch(inference.entries);
      inference.result = await this.sampler.read(inference.nSeqs, inference.withLogprobs);
    } else await queue.onSubmittedWorkDone();
    return { measuredMs: this.now() - t0, slices: groups.length, gpu: await gpu };
  }

  private acceptSampled(s: InferenceStep): void {
    const result = s.result!;
    s.plan.entries.forEach((e, i) => {
      const r = s.reqs[i];
      if (!e.sample || r.aborted || r.finished) return;
      const update = r.accept(result.ids[i], result.logprobs?.[i] ?? null);
      if (update && r.slot >= 0) this.sampler.updateSeen(r.slot, update);
    });
  }

  private emitIteration(plan: IterationPlan, t: number, m: Measured, schedulerMs: number, budget: BudgetNow, built: { plans: number; pipelines: number }): void {
    if (this.statsListeners.size === 0) return;
    const rec: IterationStats = {
      type: 'iteration', iteration: this.iterations, t,
      prefillTokens: plan.entries.filter((e) => e.kind === 'prefill').reduce((a, e) => a + e.count, 0),
      decodeRows: plan.entries.filter((e) => e.kind === 'decode').length,
      finetuneUnits: plan.finetune?.units ?? 0,
      plannedMs: { ...plan.predictedMs }, budgetMs: budget.budgetMs, budgetSource: budget.source, frameDrops: budget.frameDrops, frameIntervalMs: budget.frameIntervalMs, measuredMs: m.gpu ? m.gpu.inference + m.gpu.finetune : m.measuredMs, wallMs: m.measuredMs, timing: m.gpu ? 'timestamp' : 'wall', slices: m.slices, schedulerMs, plansBuilt: built.plans, pipelinesCreated: built.pipelines,
      gpuMs: m.gpu ? { inference: plan.entries.length > 0 ? m.gpu.inference : null, finetune: plan.finetune ? m.gpu.finetune : null } : null,
      kvBlocksUsed: this.kv.pool.numBlocks - this.kv.pool.numFree, kvBlocksTotal: this.kv.pool.numBlocks,
      waitingRequests: this.waiting.length, runningRequests: this.running.length, pendingPairs: this.learner?.pendingPairs ?? 0,
    };
    this.emit(rec);
    this.emitMemory(t);
    this.emitPrefix(t);
  }

  /** Prefix-cache counts, at most once a second and only when they changed. */
  private emitPrefix(t: number): void {
    if (!this.prefix || t - this.prefixAt < MEMORY_EVERY_MS) return;
    const rec = this.prefix.record(t);
    const sig = `${rec.queries},${rec.cachedBlocks},${rec.evictions},${rec.invalidated}`;
    if (sig === this.prefixLast) return;
    this.prefixAt = t;
    this.prefixLast = sig;
    this.emit(rec);
  }

  private prefixAt = -Infinity;
  private prefixLast = '';

  /** GPU memory by owner, at most once a second and only when it changed (the tally's snapshot walks every live buffer). */
  private emitMemory(t: number): void {
    if (t - this.memoryAt < MEMORY_EVERY_MS) return;
    this.memoryAt = t;
    const s = this.ctx.tally.snapshot();
    if (this.memoryLast && this.memoryLast.buffers === s.buffers && this.memoryLast.bytes === s.bytes) return;
    this.memoryLast = { buffers: s.buffers, bytes: s.bytes };
    this.emit({ type: 'memory', t, buffers: s.buffers, bytes: s.bytes, querySets: s.querySets, byOwner: s.byOwner } satisfies MemoryStats);
  }

  private memoryAt = -Infinity;
  private memoryLast: { buffers: number; bytes: number } | null = null;
}

/** Memory records are sent at most this often (ms). */
const MEMORY_EVERY_MS = 1000;

/** One iteration's inference rows between encode and read-back. */
interface InferenceStep {
  plan: IterationPlan;
  reqs: Request[];
  entries: BatchEntry[];
  nSeqs: number;
  withLogprobs: boolean;
  result: Awaited<ReturnType<GpuSampler['read']>> | null;
}
