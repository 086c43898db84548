/**
 * On-device learning inside the engine: preference pairs become DPO steps on one LoRA adapter,
 * cut into the trainer's work units so the scheduler can slot them between chat iterations.
 *
 * Per pair, one optimizer step at a time (a pair is stepped `epochs` times, requeued after each
 * step with its new loss so the scheduler's γ·L_DPO ordering sees it):
 *   ref       (once per pair) the reference pass (adapter off) → read back, cached
 *   forward   both sequences with the adapter → read back → DPO loss on the CPU
 *   backward  both backward passes + AdamW → read back the metrics; the new weights are copied
 *             into the serving bank in the same submission, so requests see them next iteration
 * Between phases a read-back is pending and the job has no ready units. One step is in flight at a
 * time (the training arena holds its activations).
 *
 * The trained adapter is served as a named adapter of the engine's bank (`adapterName`): requests
 * that name it get the learnt weights. A failing step (a read-back error, a device error) drops
 * that pair's step and clears the gradients; serving is never touched. Non-finite gradients are
 * skipped by AdamW itself (the adapter is left unchanged and the step reported as skipped).
 */
import type { GpuContext } from '../gpu/device.ts';
import { encodeDispatches } from '../gpu/dispatch.ts';
import { createAdapter, readAdapter, writeAdapter, type AdapterConfig, type GpuAdapter, type HostAdapter } from '../learn/adapter.ts';
import type { KtoStepMetrics } from '../learn/kto-loop.ts';
import type { TokenKto, TokenPair } from '../learn/reference.ts';
import { DpoTrainer, SEQS, TOKEN_BUCKET, UNIT_GRANULARITIES, type KtoStepLoss, type KtoStepPlan, type PairLogprobs, type SeqName, type StepLoss, type StepPlan, type UnitGranularity, type WorkUnit } from '../learn/trainer.ts';
import type { AdapterBank } from '../learn/bank.ts';
import type { GpuModelWeights } from '../model/gpu-weights.ts';
import type { FinetuneStats, LearningStatus, PolicyName } from '../scheduler/stats.ts';
import type { FinetuneJobView, UnitView } from '../scheduler/types.ts';
import type { AdapterRegistry } from './adapters.ts';
import { EngineOptionsError } from './errors.ts';
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

interface ByteCopy {
  src: number;
  dst: number;
  size: number;
}

/** Byte ranges from a trained adapter's flat params to `slot` of the bank (same rank: A and B are contiguous in both). */
function copyPlan(adapter: GpuAdapter, bank: AdapterBank, slot: number): ByteCopy[] {
  const r = bank.r;
  const out: ByteCopy[] = [];
  for (let l = 0; l < adapter.model.nLayers; l++) {
    for (const m of bank.targetModules) {
      const s = adapter.slice(l, m);
      const g = bank.region(l, m);
      if (!s || !g) continue;
      out.push({ src: s.aOffset * 4, dst: (g.aOffset + slot * r * g.inDim) * 4, size: r * g.inDim * 4 });
      out.push({ src: s.bOffset * 4, dst: (g.bOffset + slot * g.outDim * r) * 4, size: g.outDim * r * 4 });
    }
  }
  return out;
}

interface Job {
  id: number;
  key: string;
  /** Its conversation (see LearningOptions.maxPairsPerConversation). */
  context: string;
  /** What its slots run: a DPO pair, or a KTO example as (completion, KL sequence) — see KtoJob. */
  pair: TokenPair;
  /** A KTO job (an unpaired thumb); null: a DPO pair. */
  kto: KtoJob | null;
  /**
   * Its units as the planner sees them, per phase (the reference pass is the forward without LoRA);
   * made when the planner first asks (building a new length's unit lists takes time: never for a
   * policy that does not train).
   */
  unitViews: Record<Phase, readonly UnitView[]> | null;
  ref: PairLogprobs | null;
  lastLoss: number | null;
  steps: number;
  queuedAt: number;
  /** Removed while its step was in flight: that step is its last. */
  withdrawn?: boolean;
}

/**
 * An unpaired thumb trained with KTO: `pair.chosen` is its completion, `pair.rejected` its KL
 * sequence's completion — the most recent other conversation's rated answer (TRL's mismatched
 * pair: this prompt, another's completion). The first thumb has no partner: its KL slot repeats
 * its own completion and z0 is held at 0 (the reference point's value while policy = reference).
 */
interface KtoJob {
  example: TokenKto;
  label: boolean;
  /** No mismatched partner existed: z0 = 0. */
  noPartner: boolean;
}

type Phase = 'ref' | 'forward' | 'backward';

interface ActiveStep {
  job: Job;
  phase: Phase;
  units: readonly WorkUnit[];
  next: number;
  tokens: Record<SeqName, number>;
  plan: StepPlan | null;
  loss: StepLoss | KtoStepLoss | null;
  startedAt: number;
}

/** A pair the learner could not take (names the reason); the engine's caller decides what to show. */
export interface RejectedPair {
  key: string;
  reason: string;
}

export class Learner {
  readonly adapterName: string;
  private readonly jobs: Job[] = [];
  private active: ActiveStep | null = null;
  private nextJobId = 1;
  /** Pairs refused because their conversation had maxPairsPerConversation queued. */
  private rateLimited = 0;
  private version = 0;
  /** With the guard: the version whose weights serve (promoted, or restored). */
  private promotedVersion = 0;
  private last: FinetuneStats | null = null;
  private pairsSeen = 0;
  private thumbsSeen = 0;
  /** Keys of pairs whose every epoch is done (kept across sessions with the saved adapter). */
  private readonly trained = new Set<string>();
  private failures = 0;

  private constructor(
    private readonly ctx: GpuContext,
    readonly trainer: DpoTrainer,
    readonly adapter: GpuAdapter,
    private readonly registry: AdapterRegistry,
    private readonly epochs: number,
    private readonly now: () => number,
    readonly policy: PolicyName,
    served: { name: string; copies: ByteCopy[] | null },
    private readonly perConversation: number,
    private readonly promotion: Promotion | null,
  ) {
    this.adapterName = served.name;
    this.copies = served.copies;
  }

  /** Byte ranges from the adapter's params into its bank slot (null: a lower rank, published through the host). */
  private readonly copies: ByteCopy[] | null;

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
    if (this.active?.job === this.jobs[i]) this.jobs[i].withdrawn = true;
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
    const shown = new Map<string, Job>();
    if (this.active) shown.set(this.active.job.context, this.active.job);
    for (const j of this.jobs) if (!shown.has(j.context)) shown.set(j.context, j);
    return this.jobs.filter((j) => shown.get(j.context) === j).map((j) => {
      const a = this.active?.job === j ? this.active : null;
      const unitViews = this.unitViewsOf(j);
      let ready: readonly UnitView[];
      if (!a) ready = unitViews[j.ref ? 'forward' : 'ref']; // its next phase
      else if (a.next >= a.units.length) ready = []; // read-back pending
      else ready = unitViews[a.phase].slice(a.next);
      return { id: j.id, queuedAt: j.queuedAt, lastLoss: j.lastLoss, ready, started: a !== null };
    });
  }

  private begin(job: Job, phase: Phase): ActiveStep {
    const startedAt = this.active?.job === job ? this.active.startedAt : this.now();
    if (phase === 'ref') {
      const { tokens, units } = this.trainer.referenceUnits(job.pair);
      return { job, phase, units, next: 0, tokens, plan: null, loss: null, startedAt };
    }
    const plan = job.kto ? this.trainer.planKto(job.kto.example) : this.trainer.plan(job.pair);
    return { job, phase, units: plan.forward, next: 0, tokens: { ...plan.tokens }, plan, loss: null, startedAt };
  }

  /**
   * Encode the next `count` units of job `jobId` (the planner's choice) into `enc`. Starting a
   * phase writes its inputs (queue writes, ordered before this submission). After the optimizer
   * unit, the new weights are copied into the bank.
   */
  encode(enc: GPUCommandEncoder, jobId: number, count: number): void {
    if (!this.active) {
      const job = this.jobs.find((j) => j.id === jobId);
      if (!job) throw new Error(`learner: job ${jobId} is not queued`);
      this.active = this.begin(job, job.ref ? 'forward' : 'ref');
    }
    const a = this.active;
    if (a.job.id !== jobId) throw new Error(`learner: job ${jobId} planned while job ${a.job.id} is in flight`);
    const units = a.units.slice(a.next, a.next + count);
    for (const u of units) {
      encodeDispatches(enc, u.dispatches);
      if (u.kind === 'optimizer') this.encodePublish(enc);
    }
    a.next += units.length;
  }

  private encodePublish(enc: GPUCommandEncoder): void {
    if (this.promotion) return; // the guard publishes a version once it is promoted
    if (!this.copies) return; // lower rank than the bank: published from the host after the step
    for (const c of this.copies) enc.copyBufferToBuffer(this.adapter.params, c.src, this.registry.bank.buffer, c.dst, c.size);
    // Encoded after this iteration's inference rows: from the next iteration on the slot serves new weights.
    const slot = this.registry.slotOf(this.adapterName);
    if (slot !== undefined) this.registry.markChanged(slot);
  }

  /**
   * With the guard: judge the new version on the anchors (between steps); promoted, it is copied to
   * the served slot; rolled back, the trained adapter returns to the promoted weights. Then a whole
   * new anchor set, if one is waiting, replaces the old one.
   */
  private async promoteOrRollBack(p: Promotion): Promise<void> {
    if (await p.judge(this.version, this.trainer, () => readAdapter(this.ctx, this.adapter))) {
      this.promotedVersion = this.version;
      this.publishNow();
    }
    else writeAdapter(this.ctx, this.adapter, p.promoted, { resetMoments: true });
    await p.refresh(this.trainer);
  }

  /** The trained adapter's weights to its served bank slot, now (a submission of its own). */
  private publishNow(): void {
    const slot = this.registry.slotOf(this.adapterName);
    if (!this.copies || slot === undefined) {
      this.registry.load(this.adapterName, this.promotion!.promoted);
      return;
    }
    const enc = this.ctx.device.createCommandEncoder({ label: 'learner publish' });
    for (const c of this.copies) enc.copyBufferToBuffer(this.adapter.params, c.src, this.registry.bank.buffer, c.dst, c.size);
    this.ctx.device.queue.submit([enc.finish()]);
    this.registry.markChanged(slot);
  }

  /** A phase's units all ran: a read-back is due after this iteration's submission. */
  get readbackDue(): boolean {
    return this.active !== null && this.active.next >= this.active.units.length;
  }

  /**
   * After the submission that ran a phase's last unit: read back and move the step on. Returns the
   * step's metrics when it finished, else null. Never throws: a failed step is dropped.
   */
  async afterSubmit(): Promise<FinetuneStats | null> {
    const a = this.active;
    if (!a || a.next < a.units.length) return null;
    try {
      if (a.phase === 'ref') {
        a.job.ref = await this.trainer.pairLogprobs(a.tokens, a.job.pair.prompt.length);
        this.active = this.begin(a.job, 'forward');
        return null;
      }
      if (a.phase === 'forward') {
        const ref = a.job.ref!;
        const k = a.job.kto;
        const loss = k ? await this.trainer.ktoLoss(a.plan as KtoStepPlan, { completion: ref.chosen, kl: ref.rejected }, 1, k.noPartner ? 0 : undefined) : await this.trainer.loss(a.plan!, ref);
        this.active = { ...a, phase: 'backward', units: a.plan!.backward, next: 0, loss };
        return null;
      }
      const m = a.job.kto ? ktoAsFinetune(await this.trainer.finishKto(a.loss as KtoStepLoss)) : await this.trainer.finish(a.loss as StepLoss);
      if (!m.skipped) {
        this.version++;
        if (this.promotion) await this.promoteOrRollBack(this.promotion);
        else if (!this.copies) this.registry.load(this.adapterName, await readAdapter(this.ctx, this.adapter));
      }
      const job = a.job;
      job.lastLoss = Number.isFinite(m.loss) ? m.loss : job.lastLoss;
      job.steps++;
      this.active = null;
      this.jobs.splice(this.jobs.indexOf(job), 1);
      if (job.withdrawn) {
        /* its rating changed: not requeued, not counted as trained */
      } else if (job.steps < this.epochs) {
        job.queuedAt = this.now();
        this.jobs.push(job);
      } else this.trained.add(job.key);
      this.last = {
        type: 'finetune', t: this.now(), method: a.job.kto ? 'kto' : 'dpo', adapter: this.adapterName, adapterVersion: this.version, step: m.step, loss: m.loss,
        'rewards/chosen': m['rewards/chosen'], 'rewards/rejected': m['rewards/rejected'], 'rewards/margins': m['rewards/margins'], 'rewards/accuracies': m['rewards/accuracies'],
        grad_norm: m.grad_norm, learning_rate: m.learning_rate, skipped: m.skipped, durationMs: this.now() - a.startedAt, tokens: a.tokens.chosen + a.tokens.rejected,
        ...(this.promotion ? { servingVersion: this.promotion.guard.current, ...(m.skipped ? {} : { guard: this.promotion.status().last }) } : {}),
      };
      return this.last;
    } catch {
      // The step is lost, not the learner: drop this pair's step, clear half-accumulated gradients.
      this.failures++;
      this.active = null;
      this.jobs.splice(this.jobs.indexOf(a.job), 1);
      this.trainer.clearGrads();
      return null;
    }
  }

  /**
   * Continue from a saved adapter (at start, before any step): its weights become the trained and
   * the served adapter (optimizer moments reset), its version counts on, and pairs it was trained
   * on are not trained again. Throws a typed error, changing nothing, when it does not fit.
   */
  restore(host: HostAdapter, version: number, trainedKeys: readonly string[]): void {
    if (this.active) throw new EngineOptionsError('learning.restore', 'is only possible before a step is in flight');
    if (!Number.isInteger(version) || version < 0) throw new EngineOptionsError('learning.restore', `version = ${version} must be an integer >= 0`);
    writeAdapter(this.ctx, this.adapter, host, { resetMoments: true });
    this.registry.load(this.adapterName, host);
    this.promotion?.replaced(host);
    this.version = version;
    this.promotedVersion = version;
    for (const k of trainedKeys) this.trained.add(k);
    for (let i = this.jobs.length - 1; i >= 0; i--) if (this.trained.has(this.jobs[i].key)) this.jobs.splice(i, 1);
  }

  /**
   * Drop the step in flight, if any (its pair stays queued and starts over later; half-accumulated
   * gradients are cleared): the engine does this between iterations before replacing the adapter.
   */
  abandonStep(): void {
    if (!this.active) return;
    this.active = null;
    this.trainer.clearGrads();
  }

  /**
   * The adapter that serves, with its version and the pairs fully trained (to save or export it).
   * With the guard that is the promoted version — never the trained adapter, which between an
   * optimizer step and its judgement holds an unjudged candidate; version 0 while the base serves.
   */
  async snapshot(): Promise<{ host: HostAdapter; version: number; trainedKeys: string[] }> {
    if (this.promotion) return { host: this.promotion.promoted, version: this.promotedVersion, trainedKeys: [...this.trained] };
    return { host: await readAdapter(this.ctx, this.adapter), version: this.version, trainedKeys: [...this.trained] };
  }

  status(): LearningStatus {
    return { enabled: true, policy: this.policy, adapter: this.adapterName, version: this.version, steps: this.trainer.steps, pairs: this.pairsSeen, thumbs: this.thumbsSeen, pendingPairs: this.pendingPairs, pendingThumbs: this.jobs.filter((j) => j.kto).length, failedSteps: this.failures, rateLimitedPairs: this.rateLimited, ...(this.promotion ? { guard: this.promotion.status() } : {}), last: this.last };
  }

  /** Steps dropped after an error. */
  get failedSteps(): number {
    return this.failures;
  }

  destroy(): void {
    this.trainer.destroy();
    this.adapter.destroy();
  }
}

/**
 * A KTO step's metrics in the finetune record's DPO-shaped fields: rewards/chosen or rejected is
 * the example's reward β·ρ under its label (NaN for the other, as TRL's 0/0), margins and accuracies
 * NaN (one unpaired example has neither); `method: 'kto'` tells the record apart.
 */
function ktoAsFinetune(m: KtoStepMetrics) {
  return { ...m, 'rewards/accuracies': NaN };
}
