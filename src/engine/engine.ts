/**
 * The in-thread serving engine, as callers see it: its lifecycle (options checked, GPU parts made,
 * destroy), request intake (submit, abort, adapters by name), on-device learning (enable, pairs and
 * thumbs queued, the learnt adapter replaced at a step boundary), the frame budget and the stats.
 * It owns the parts and kicks the loop when work arrives; the loop and what one iteration does
 * (plan, encode, submit, observe the costs, emit the stats records) are loop.ts, over those parts.
 * LoRA adapters (adapters.ts) are resident in one bank; each request's sequence carries its
 * adapter's slot, so a batch mixes adapters and base-model rows (see forward.ts). The learner's
 * adapter is one of them: its new weights are copied into the bank by the step's last submission.
 * The public OpenAI-style surface is in openai.ts; this file is the machinery under it.
 */
import { Building } from '../gpu/owner.ts';
import type { GpuContext } from '../gpu/device.ts';
import { UNBOUNDED_WINDOW } from '../kernels/attention.ts';
import { createKvCache, type KvCacheGpu } from '../kv/cache.ts';
import type { SinksWindow } from '../kv/pruning.ts';
import type { ModelConfig } from '../model/config.ts';
import { ForwardPass } from '../model/forward.ts';
import type { GpuModelWeights } from '../model/gpu-weights.ts';
import type { TextTokenizer } from '../model/tokenizer.ts';
import { checkHostAdapter as checkHostAdapterFits, type HostAdapter } from '../learn/adapter.ts';
import { tokenizePair, tokenizeThumb, truncatePair, truncateThumb, type TextPair, type TextThumb } from '../learn/pair-tokens.ts';
import type { TokenPair } from '../learn/reference.ts';
import type { PairLogprobs } from '../learn/trainer.ts';
import { CostModel } from '../scheduler/cost-model.ts';
import { constantBudget, validateFrameReport, type BudgetNow, type FrameBudget, type FrameReport } from '../scheduler/frame-budget.ts';
import { FinetuneGate } from '../scheduler/policy.ts';
import type { LearningStatus, StatsRecord } from '../scheduler/stats.ts';
import type { SchedulerConfig } from '../scheduler/types.ts';
import { AdapterRegistry, AdapterUnloadedError, resolveAdapterOptions } from './adapters.ts';
import { frameBudgetFor } from './budget-source.ts';
import { EngineClosedError, EngineOptionsError, InvalidRequestError, PromptTooLongError } from './errors.ts';
import { KindTimer } from './kind-timer.ts';
import { Learner, type LearningOptions } from './learner.ts';
import { kickLoop, workRunnableNow, type LoopParts, type LoopState } from './loop.ts';
import { resolveLimits, resolveScheduler, type ResolvedLimits } from './limits.ts';
import { kvWindowOf, type RequestSettings } from './params.ts';
import { PrefixReuse } from './prefix.ts';
import { Request } from './request.ts';
import { GpuSampler } from './sampler.ts';
import { RequestQueues } from './queues.ts';
import { StatsStream } from './stats-stream.ts';
import type { AdapterInfo, EngineOptions, EngineStats } from './types.ts';

export { ENGINE_DEFAULTS, resolveLimits, resolveScheduler, type ResolvedLimits } from './limits.ts';

/** What the engine serves: a loader (or a test) builds it. */
export interface EngineModel {
  config: ModelConfig;
  tokenizer: TextTokenizer;
  weights: GpuModelWeights;
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
  /** Running and waiting requests, sequence slots, admission and preemption (src/engine/queues.ts). */
  private readonly queues: RequestQueues;
  private nextId = 1;
  /** Changes that must wait for a step boundary (no submission in flight): run at the next iteration's start. */
  private readonly atBoundary: (() => void)[] = [];
  private closed: Error | null = null;
  /** What the loop carries from one iteration to the next (loop.ts): running or not, counts, fine-tuning's wait. */
  private readonly loop: LoopState = { looping: false, gateTimer: null, iterations: 0, sliced: 0, prunedBlocks: 0, finetuneWaitingSince: null };
  /** The parts the loop uses (loop.ts). */
  private readonly parts: LoopParts;
  private readonly eosIds: ReadonlySet<number>;
  private readonly now: () => number = () => performance.now();
  readonly scheduler: SchedulerConfig;
  /** The planner's cost model (its intercept follows the timing: see CostModel's `intercept`). */
  readonly cost: CostModel;
  private readonly gate: FinetuneGate;
  /** On-device learning; null until enableLearning(). */
  private learner: Learner | null = null;
  /** The stats stream (iteration, request, fine-tune, memory, prefix records). */
  private readonly stream = new StatsStream();
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
    this.queues = new RequestQueues({ maxSeqs: L.maxSeqs, pool: this.kv.pool, prefix: this.prefix, sampler: this.sampler, now: this.now, onRetired: (r) => this.stream.request(r, this.now()) });
    this.eosIds = new Set([...model.tokenizer.eosIds, ...c.eosTokenIds]);
    this.cost = new CostModel({ intercept: this.timer.mode === 'timestamp' ? 'inference' : 'submission' });
    this.gate = new FinetuneGate(sched.config.policy, sched.periodic, this.now());
    // What the loop uses (loop.ts), the GPU side as step-gpu.ts's StepGpu; the learner, the budget
    // and whether the engine is closed change over its life, so the loop reads them through getters.
    const gpu = { ctx, forward: this.forward, sampler: this.sampler, timer: this.timer, pool: this.kv.pool, maxBlocksPerSeq: L.maxBlocksPerSeq, now: this.now };
    this.parts = {
      gpu, limits: L, queues: this.queues, prefix: this.prefix, scheduler: this.scheduler, cost: this.cost, gate: this.gate, stream: this.stream,
      atBoundary: this.atBoundary, learner: () => this.learner, budgetNow: () => this.budgetNow(), closed: () => this.closed !== null,
    };
  }

  /** Receive the stats stream (plain-data records). Returns the unsubscribe. */
  onStats(listener: (r: StatsRecord) => void): () => void {
    return this.stream.on(listener);
  }

  /**
   * Start on-device learning: a LoRA adapter trained with DPO on the pairs given to learnPair() and KTO on the thumbs given to learnThumb(),
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
    // Its conversation: the context both answers reply to.
    return tokens !== null && this.learnTokens(key, tokens, null, JSON.stringify(pair.messages ?? pair.prompt ?? ''));
  }

  /**
   * Queue an unpaired thumb (a rated answer no pair uses) for KTO (key: its stable id). Returns
   * false when learning is off or it cannot be trained.
   */
  learnThumb(key: string, thumb: TextThumb): boolean {
    const learner = this.learner;
    if (!learner || this.closed) return false;
    const tokens = truncateThumb(tokenizeThumb(this.model.tokenizer, thumb, { eos: null }), learner.maxTokens);
    if (tokens === null || !learner.enqueueThumb(key, tokens, JSON.stringify(thumb.messages ?? thumb.prompt ?? ''))) return false;
    kickLoop(this.parts, this.loop);
    return true;
  }

  /** Queue a token pair for training; `ref`: its reference log-probs when already known; `context`: its conversation (default: its prompt ids). */
  learnTokens(key: string, pair: TokenPair, ref: PairLogprobs | null = null, context?: string): boolean {
    if (!this.learner || this.closed || !this.learner.enqueue(key, pair, ref, context)) return false;
    kickLoop(this.parts, this.loop);
    return true;
  }

  /**
   * Replace the learnt adapter (a saved version, a rollback, an import, the base): at the next step
   * boundary the step in flight is dropped (its pair starts over later) and the adapter's weights
   * become `host`, served from then on. Pairs in `trainedKeys` are not trained again. Rejects with a
   * typed error, changing nothing, when `host` does not fit.
   */
  replaceLearnt(host: HostAdapter, version: number, trainedKeys: readonly string[]): Promise<LearningStatus> {
    const learner = this.learner;
    if (!learner) return Promise.reject(new EngineOptionsError('learning', 'is off: call learning.enable() first'));
    return new Promise<LearningStatus>((resolve, reject) => {
      const apply = () => {
        try {
          if (this.closed) throw new EngineClosedError(this.closed.message);
          checkHostAdapterFits(this.model.config, host);
          learner.abandonStep();
          learner.restore(host, version, trainedKeys);
          resolve(learner.status());
        } catch (e) {
          reject(e);
        }
      };
      if (this.loop.looping) this.atBoundary.push(apply);
      else apply();
    });
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
    this.queues.waiting.push(req);
    kickLoop(this.parts, this.loop);
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
    const waiting = this.queues.waiting;
    for (const r of waiting.filter((w) => w.settings.adapter === name)) {
      waiting.splice(waiting.indexOf(r), 1);
      r.fail(err);
    }
    for (const r of this.queues.running) if (r.settings.adapter === name) r.fail(err);
    return info;
  }

  listAdapters(): AdapterInfo[] {
    return this.adapters?.list() ?? [];
  }

  stats(): EngineStats {
    return {
      running: this.queues.running.length,
      waiting: this.queues.waiting.length,
      freeBlocks: this.kv.pool.numFree,
      totalBlocks: this.kv.pool.numBlocks,
      maxContext: this.limits.maxContext,
      iterations: this.loop.iterations,
      preemptions: this.queues.preemptions,
      policy: this.scheduler.policy,
      budgetMs: this.scheduler.budgetMs,
      slicedIterations: this.loop.sliced,
      costSamples: this.cost.samples,
      learning: this.learningStatus(),
      prefixCache: this.prefixCounts(),
      prunedBlocks: this.loop.prunedBlocks,
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
    this.queues.failAll(this.closed);
    this.forward.destroy();
    this.sampler.destroy();
    this.prefix?.destroy();
    this.kv.destroy();
    this.learner?.destroy();
    this.learner = null;
    this.adapters?.destroy();
    this.timer.destroy();
    if (this.loop.gateTimer) clearTimeout(this.loop.gateTimer);
    for (const run of this.atBoundary.splice(0)) run(); // each rejects: the engine is closed
  }

  private abort(req: Request): void {
    if (req.finished) return;
    req.aborted = true;
    // A waiting request holds no blocks: finish it now. A running one is finished by the loop at
    // the next step boundary (its blocks may be in the step on the GPU right now).
    const waiting = this.queues.waiting;
    const w = waiting.indexOf(req);
    if (w >= 0) {
      waiting.splice(w, 1);
      req.finish('abort');
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
    return workRunnableNow(this.parts);
  }
}

