/**
 * On-device learning inside the engine: the learner's queue and its rules. Ratings become jobs —
 * preference pairs train as DPO steps, lone thumbs as KTO steps (the mixing rule, `enqueueThumb`) —
 * on one LoRA adapter, served as a named adapter of the engine's bank (`adapterName`): requests that
 * name it get the learnt weights. This file decides what is queued (validity, the per-conversation
 * cap, the guard's held-out anchors, KL partners for thumbs), what the scheduler sees (one job per
 * conversation, as work-unit views) and what happens to a job after a step (requeued for its next
 * epoch, trained, or dropped); it is also the engine's one handle on learning (create, restore,
 * snapshot, status).
 *
 * The step itself — its phases (reference pass, forward + loss, backward + AdamW) with a read-back
 * between them, publishing the new weights to the bank, and promotion or rollback under the guard —
 * is learner-step.ts's `StepRunner`, which this class owns and feeds through `StepQueue`.
 */
import type { GpuContext } from '../gpu/device.ts';
import { createAdapter, readAdapter, type AdapterConfig, type GpuAdapter, type HostAdapter } from '../learn/adapter.ts';
import type { TokenKto, TokenPair } from '../learn/reference.ts';
import { DpoTrainer, SEQS, TOKEN_BUCKET, UNIT_GRANULARITIES, type PairLogprobs, type UnitGranularity, type WorkUnit } from '../learn/trainer.ts';
import type { GpuModelWeights } from '../model/gpu-weights.ts';
import type { FinetuneStats, LearningStatus, PolicyName } from '../scheduler/stats.ts';
import type { FinetuneJobView, UnitView } from '../scheduler/types.ts';
import type { AdapterRegistry } from './adapters.ts';
import { EngineOptionsError } from './errors.ts';
import { copyPlan, StepRunner, type ByteCopy, type Job, type Phase } from './learner-step.ts';
import { Promotion, type GuardOptions } from './promotion.ts';

export interface LearningOptions {
  /** Name the learnt adapter is served under. Default 'learnt'. */
  adapterName?: string;
  /** LoRA rank; default the bank's rank (then new weights reach the bank by GPU copies). */
  rank?: number;
  /** Default 2·rank. */
  loraAlpha?: number;
  /** DPO β. Default 0.5. */
  beta?: number;
  /** AdamW learning rate (constant after warmup). Default 1e-3. */
  lr?: number;
  warmupSteps?: number;
  /** Optimizer steps per pair. Default 2. */
  epochs?: number;
  /** Longest training sequence (prompt + response); longer pairs are cut. Default 128. */
  maxTokens?: number;
  /** Seed of the adapter's initialisation. */
  seed?: number;
  /** The poisoning guard (src/engine/promotion.ts): anchors held out, versions judged before they serve. Default off. */
  guard?: GuardOptions;
  /**
   * Untrained pairs one conversation (one context: the same prompt or messages) may have queued;
   * more are refused until some are trained (they stay stored, only not queued). The scheduler also
   * sees one job per conversation at a time, so a flood of ratings in one chat cannot crowd out the
   * others. Default 32.
   */
  maxPairsPerConversation?: number;
  /**
   * Size of the training work units the scheduler packs: 'matmul' (default: one matmul of a layer,
   * small enough to share an iteration with decodes) or 'layer' (a whole layer; the ablation).
   */
  unitGranularity?: UnitGranularity;
}

/** A pair the learner could not take (names the reason); the engine's caller decides what to show. */
export interface RejectedPair {
  key: string;
  reason: string;
}

export class Learner {
  readonly adapterName: string;
  private readonly jobs: Job[] = [];
  /** The step in flight and the adapter's versions (learner-step.ts). */
  private readonly run: StepRunner;
  private nextJobId = 1;
  /** Pairs refused because their conversation had maxPairsPerConversation queued. */
  private rateLimited = 0;
  private pairsSeen = 0;
  private thumbsSeen = 0;
  /** Keys of pairs whose every epoch is done (kept across sessions with the saved adapter). */
  private readonly trained = new Set<string>();

  private constructor(
    private readonly ctx: GpuContext,
    readonly trainer: DpoTrainer,
    readonly adapter: GpuAdapter,
    registry: AdapterRegistry,
    private readonly epochs: number,
    private readonly now: () => number,
    readonly policy: PolicyName,
    served: { name: string; copies: ByteCopy[] | null },
    private readonly perConversation: number,
    private readonly promotion: Promotion | null,
  ) {
    this.adapterName = served.name;
    // The step reaches the queue only through these three: what happens to a job is decided here.
    this.run = new StepRunner(ctx, trainer, adapter, registry, served.name, served.copies, promotion, now, {
      find: (id) => this.jobs.find((j) => j.id === id),
      stepped: (job) => this.stepped(job),
      dropped: (job) => {
        this.jobs.splice(this.jobs.indexOf(job), 1);
      },
    });
  }

  static async create(ctx: GpuContext, weights: GpuModelWeights, registry: AdapterRegistry, o: LearningOptions, maxContext: number, policy: PolicyName, now: () => number): Promise<Learner> {
    const bank = registry.bank;
    const rank = o.rank ?? bank.r;
    if (!Number.isInteger(rank) || rank < 1 || rank > bank.r) throw new EngineOptionsError('learning.rank', `= ${rank} must be an integer in 1..${bank.r} (the bank's rank)`);
    const epochs = o.epochs ?? 2;
    if (!Number.isInteger(epochs) || epochs < 1) throw new EngineOptionsError('learning.epochs', `= ${epochs} must be a positive integer`);
    const perConversation = o.maxPairsPerConversation ?? 32;
    if (!Number.isInteger(perConversation) || perConversation < 1) throw new EngineOptionsError('learning.maxPairsPerConversation', `= ${perConversation} must be a positive integer`);
    const maxTokens = Math.min(o.maxTokens ?? 128, maxContext);
    const granularity = o.unitGranularity ?? 'matmul';
    if (!UNIT_GRANULARITIES.includes(granularity)) throw new EngineOptionsError('learning.unitGranularity', `= ${JSON.stringify(granularity)} is not one of ${UNIT_GRANULARITIES.join(', ')}`);
    const name = o.adapterName ?? 'learnt';
    const config: AdapterConfig = { r: rank, loraAlpha: o.loraAlpha ?? 2 * rank, useRslora: false, targetModules: [...bank.targetModules], baseModelNameOrPath: weights.config.architecture };
    const adapter = await createAdapter(ctx, weights.config, config, o.seed ?? 1);
    let trainer: DpoTrainer;
    try {
      trainer = new DpoTrainer(ctx, weights, adapter, { maxTokens: Math.max(2, Math.floor(maxTokens / TOKEN_BUCKET) * TOKEN_BUCKET || maxTokens), beta: o.beta ?? 0.5, schedule: { kind: 'constant', baseLr: o.lr ?? 1e-3, warmupSteps: o.warmupSteps ?? 0, totalSteps: 0 }, granularity });
    } catch (e) {
      adapter.destroy();
      throw e;
    }
    try {
      const info = registry.load(name, await readAdapter(ctx, adapter));
      const promotion = o.guard && (o.guard.anchorEvery ?? 0) > 0 ? new Promotion(o.guard, await readAdapter(ctx, adapter), now) : null;
      return new Learner(ctx, trainer, adapter, registry, epochs, now, policy, { name, copies: rank === bank.r ? copyPlan(adapter, registry.bank, info.slot) : null }, perConversation, promotion);
    } catch (e) {
      trainer.destroy();
      adapter.destroy();
      throw e;
    }
  }

  get maxTokens(): number {
    return this.trainer.options.maxTokens;
  }

  /**
   * Queue a pair (by key; a key already queued is ignored). `ref`: its reference log-probs when
   * already known (e.g. kept from an earlier session), else the first step computes them.
   * Returns false when it cannot be trained.
   */
  enqueue(key: string, pair: TokenPair, ref: PairLogprobs | null = null, context = pair.prompt.join(',')): boolean {
    if (this.jobs.some((j) => j.key === key) || this.trained.has(key)) return true;
    if (pair.prompt.length === 0 || pair.chosen.length === 0 || pair.rejected.length === 0) return false;
    if (Math.max(pair.chosen.length, pair.rejected.length) + pair.prompt.length > this.maxTokens) return false;
    if (this.jobs.filter((j) => j.context === context).length >= this.perConversation) {
      this.rateLimited++;
      return false;
    }
    if (this.promotion?.holdOut(pair)) {
      this.pairsSeen++;
      return true; // an anchor: it checks versions instead of training one
    }
    this.remember(context, pair.chosen);
    this.jobs.push({ id: this.nextJobId++, key, context, pair, kto: null, unitViews: null, ref, lastLoss: null, steps: 0, queuedAt: this.now() });
    this.pairsSeen++;
    return true;
  }

  /**
   * Queue an unpaired thumb for KTO (see KtoJob; same key, conversation and rate-limit rules as
   * pairs). Thumbs are not anchors: the guard's anchors are pairs the user formed. Returns false
   * when it cannot be trained.
   */
  enqueueThumb(key: string, thumb: { prompt: number[]; completion: number[]; label: boolean }, context = thumb.prompt.join(',')): boolean {
    if (this.jobs.some((j) => j.key === key) || this.trained.has(key)) return true;
    if (thumb.prompt.length === 0 || thumb.completion.length === 0 || thumb.prompt.length + thumb.completion.length > this.maxTokens) return false;
    if (this.jobs.filter((j) => j.context === context).length >= this.perConversation) {
      this.rateLimited++;
      return false;
    }
    const partner = [...this.recent].reverse().find((r) => r.context !== context);
    const kl = partner ? partner.completion.slice(0, this.maxTokens - thumb.prompt.length) : thumb.completion;
    const example: TokenKto = { prompt: [...thumb.prompt], completion: [...thumb.completion], label: thumb.label, kl };
    this.remember(context, thumb.completion);
    this.jobs.push({ id: this.nextJobId++, key, context, pair: { prompt: example.prompt, chosen: example.completion, rejected: kl }, kto: { example, label: thumb.label, noPartner: !partner }, unitViews: null, ref: null, lastLoss: null, steps: 0, queuedAt: this.now() });
    this.thumbsSeen++;
    return true;
  }

  /** Rated answers kept as KL partners for later thumbs (the last few, one conversation each at most once). */
  private readonly recent: { context: string; completion: number[] }[] = [];

  private remember(context: string, completion: number[]): void {
    const i = this.recent.findIndex((r) => r.context === context);
    if (i >= 0) this.recent.splice(i, 1);
    this.recent.push({ context, completion: [...completion] });
    if (this.recent.length > 16) this.recent.shift();
  }

  /** Forget a pair or thumb (its rating changed); a step in flight finishes first, and is its last. */
  remove(key: string): void {
    const i = this.jobs.findIndex((j) => j.key === key);
    if (i < 0) return;
    if (this.run.current?.job === this.jobs[i]) this.jobs[i].withdrawn = true;
    else this.jobs.splice(i, 1);
  }

  /** Steps still to run (pairs × remaining epochs). */
  get pendingSteps(): number {
    return this.jobs.reduce((a, j) => a + (this.epochs - j.steps), 0);
  }

  get stepsDone(): number {
    return this.trainer.steps;
  }

  /** Training examples queued, pairs and thumbs (not yet stepped `epochs` times). */
  get pendingPairs(): number {
    return this.jobs.length;
  }

  get hasWork(): boolean {
    return this.jobs.length > 0;
  }

  private bucket(n: number): number {
    return this.trainer.bucket(n);
  }

  /** The units of a phase, as the planner sees them (from the trainer's unit lists for these lengths; nothing is written). */
  private phaseViews(pair: TokenPair, phase: Phase, kto: boolean): UnitView[] {
    const view = (u: WorkUnit, tokens: number): UnitView => ({ kind: u.kind, tokens, mmacs: u.mmacs, dispatches: u.dispatches.length, bytes: u.bytes });
    const out: UnitView[] = [];
    for (const s of SEQS) {
      if (kto && phase === 'backward' && s === 'rejected') continue; // KTO: the completion's backward only
      const tokens = this.bucket(pair.prompt.length + pair[s].length);
      const units = phase === 'backward' ? this.trainer.backwardUnits(s, tokens) : this.trainer.forwardUnits(s, tokens, phase === 'forward');
      for (const u of units) out.push(view(u, tokens));
    }
    if (phase === 'backward') out.push(view(this.trainer.optimizerWorkUnit, 0));
    return out;
  }

  /** Bytes of the training arena (the planner's memory term for fine-tune units). */
  get arenaBytes(): number {
    return this.trainer.arena.bytes;
  }

  private unitViewsOf(j: Job): Record<Phase, readonly UnitView[]> {
    const kto = j.kto !== null;
    j.unitViews ??= { ref: this.phaseViews(j.pair, 'ref', kto), forward: this.phaseViews(j.pair, 'forward', kto), backward: this.phaseViews(j.pair, 'backward', kto) };
    return j.unitViews;
  }

  /** The queue as the planner sees it (empty for 'inference-only': pairs are kept, never trained). */
  views(): FinetuneJobView[] {
    if (this.policy === 'inference-only') return [];
    // One job per conversation: the one in flight, else its oldest (fair shares between chats).
    const active = this.run.current;
    const shown = new Map<string, Job>();
    if (active) shown.set(active.job.context, active.job);
    for (const j of this.jobs) if (!shown.has(j.context)) shown.set(j.context, j);
    return this.jobs.filter((j) => shown.get(j.context) === j).map((j) => {
      const a = active?.job === j ? active : null;
      const unitViews = this.unitViewsOf(j);
      let ready: readonly UnitView[];
      if (!a) ready = unitViews[j.ref ? 'forward' : 'ref']; // its next phase
      else if (a.next >= a.units.length) ready = []; // read-back pending
      else ready = unitViews[a.phase].slice(a.next);
      return { id: j.id, queuedAt: j.queuedAt, lastLoss: j.lastLoss, ready, started: a !== null };
    });
  }

  /**
   * A step of `job` finished: out of the queue, then back at its end (a fresh queuedAt) while
   * epochs remain, else counted as trained. A job withdrawn during its step goes for good.
   */
  private stepped(job: Job): void {
    this.jobs.splice(this.jobs.indexOf(job), 1);
    if (job.withdrawn) {
      /* its rating changed: not requeued, not counted as trained */
    } else if (job.steps < this.epochs) {
      job.queuedAt = this.now();
      this.jobs.push(job);
    } else this.trained.add(job.key);
  }

  /**
   * Encode the next `count` units of job `jobId` (the planner's choice) into `enc`. Starting a
   * phase writes its inputs (queue writes, ordered before this submission). After the optimizer
   * unit, the new weights are copied into the bank.
   */
  encode(enc: GPUCommandEncoder, jobId: number, count: number): void {
    this.run.encode(enc, jobId, count);
  }

  /** A phase's units all ran: a read-back is due after this iteration's submission. */
  get readbackDue(): boolean {
    return this.run.readbackDue;
  }

  /**
   * After the submission that ran a phase's last unit: read back and move the step on. Returns the
   * step's metrics when it finished, else null. Never throws: a failed step is dropped.
   */
  afterSubmit(): Promise<FinetuneStats | null> {
    return this.run.afterSubmit(); // the runner's own promise: no extra await in between
  }

  /**
   * Continue from a saved adapter (at start, before any step): its weights become the trained and
   * the served adapter (optimizer moments reset), its version counts on, and pairs it was trained
   * on are not trained again. Throws a typed error, changing nothing, when it does not fit.
   */
  restore(host: HostAdapter, version: number, trainedKeys: readonly string[]): void {
    if (this.run.current) throw new EngineOptionsError('learning.restore', 'is only possible before a step is in flight');
    if (!Number.isInteger(version) || version < 0) throw new EngineOptionsError('learning.restore', `version = ${version} must be an integer >= 0`);
    this.run.restoreWeights(host, version);
    for (const k of trainedKeys) this.trained.add(k);
    for (let i = this.jobs.length - 1; i >= 0; i--) if (this.trained.has(this.jobs[i].key)) this.jobs.splice(i, 1);
  }

  /**
   * Drop the step in flight, if any (its pair stays queued and starts over later; half-accumulated
   * gradients are cleared): the engine does this between iterations before replacing the adapter.
   */
  abandonStep(): void {
    this.run.abandon();
  }

  /**
   * The adapter that serves, with its version and the pairs fully trained (to save or export it).
   * With the guard that is the promoted version — never the trained adapter, which between an
   * optimizer step and its judgement holds an unjudged candidate; version 0 while the base serves.
   */
  async snapshot(): Promise<{ host: HostAdapter; version: number; trainedKeys: string[] }> {
    if (this.promotion) return { host: this.promotion.promoted, version: this.run.promotedVersion, trainedKeys: [...this.trained] };
    return { host: await readAdapter(this.ctx, this.adapter), version: this.run.version, trainedKeys: [...this.trained] };
  }

  status(): LearningStatus {
    return { enabled: true, policy: this.policy, adapter: this.adapterName, version: this.run.version, steps: this.trainer.steps, pairs: this.pairsSeen, thumbs: this.thumbsSeen, pendingPairs: this.pendingPairs, pendingThumbs: this.jobs.filter((j) => j.kto).length, failedSteps: this.run.failedSteps, rateLimitedPairs: this.rateLimited, ...(this.promotion ? { guard: this.promotion.status() } : {}), last: this.run.last };
  }

  /** Steps dropped after an error. */
  get failedSteps(): number {
    return this.run.failedSteps;
  }

  destroy(): void {
    this.trainer.destroy();
    this.adapter.destroy();
  }
}
