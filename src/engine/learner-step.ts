/**
 * The learner's running step: one optimizer step at a time on one queued job (a DPO pair or a KTO
 * thumb), cut into the trainer's work units so the scheduler can slot them between chat iterations,
 * and the publishing of the weights it makes to the adapter bank. The queue that feeds it and the
 * DPO/KTO mixing rule are the learner's (learner.ts); this file is what happens once a job runs.
 *
 * Per job, one optimizer step at a time (a job is stepped `epochs` times; the queue requeues it
 * after each step with its new loss so the scheduler's γ·L_DPO ordering sees it):
 *   ref       (once per pair) the reference pass (adapter off) → read back, cached
 *   forward   both sequences with the adapter → read back → DPO (or KTO) loss on the CPU
 *   backward  both backward passes + AdamW → read back the metrics; the new weights are copied
 *             into the serving bank in the same submission, so requests see them next iteration
 * Between phases a read-back is pending and the job has no ready units. One step is in flight at a
 * time (the training arena holds its activations), which is why this is one object with one
 * `active` slot rather than state on each job.
 *
 * A failing step (a read-back error, a device error) drops that job's step and clears the
 * gradients; serving is never touched. Non-finite gradients are skipped by AdamW itself (the adapter
 * is left unchanged and the step reported as skipped). With the poisoning guard (promotion.ts) a
 * finished step's version is judged first and only a promoted version reaches the served slot.
 */
import type { GpuContext } from '../gpu/device.ts';
import { encodeDispatches } from '../gpu/dispatch.ts';
import { readAdapter, writeAdapter, type GpuAdapter, type HostAdapter } from '../learn/adapter.ts';
import type { KtoStepMetrics } from '../learn/kto-loop.ts';
import type { TokenKto, TokenPair } from '../learn/reference.ts';
import type { DpoTrainer, KtoStepLoss, KtoStepPlan, PairLogprobs, SeqName, StepLoss, StepPlan, WorkUnit } from '../learn/trainer.ts';
import type { AdapterBank } from '../learn/bank.ts';
import type { FinetuneStats } from '../scheduler/stats.ts';
import type { UnitView } from '../scheduler/types.ts';
import type { AdapterRegistry } from './adapters.ts';
import type { Promotion } from './promotion.ts';

export interface ByteCopy {
  src: number;
  dst: number;
  size: number;
}

/** Byte ranges from a trained adapter's flat params to `slot` of the bank (same rank: A and B are contiguous in both). */
export function copyPlan(adapter: GpuAdapter, bank: AdapterBank, slot: number): ByteCopy[] {
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

/**
 * A queued training example, as the learner's queue keeps it and a step runs it. Defined here (not
 * in learner.ts) because the step reads and updates it; the queue only adds, orders and removes.
 */
export interface Job {
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
export interface KtoJob {
  example: TokenKto;
  label: boolean;
  /** No mismatched partner existed: z0 = 0. */
  noPartner: boolean;
}

export type Phase = 'ref' | 'forward' | 'backward';

/** The step in flight: its job, the phase it is in and how many of that phase's units are encoded. */
export interface ActiveStep {
  job: Job;
  phase: Phase;
  units: readonly WorkUnit[];
  next: number;
  tokens: Record<SeqName, number>;
  plan: StepPlan | null;
  loss: StepLoss | KtoStepLoss | null;
  startedAt: number;
}

/**
 * What a step needs of the learner's queue: the queue decides what happens to a job after its
 * step (requeued, trained, or gone), the step only says when.
 */
export interface StepQueue {
  /** The queued job of this id, if any. */
  find(id: number): Job | undefined;
  /** `job`'s step finished (its `steps` already counted): take it out, then requeue or mark it trained. */
  stepped(job: Job): void;
  /** `job`'s step failed: take it out of the queue. */
  dropped(job: Job): void;
}

/** Runs the learner's steps (one in flight at a time) and publishes their weights; owns the adapter's version count. */
export class StepRunner {
  private active: ActiveStep | null = null;
  private versionNow = 0;
  /** With the guard: the version whose weights serve (promoted, or restored). */
  private promotedNow = 0;
  private lastStats: FinetuneStats | null = null;
  private failures = 0;

  constructor(
    private readonly ctx: GpuContext,
    private readonly trainer: DpoTrainer,
    private readonly adapter: GpuAdapter,
    private readonly registry: AdapterRegistry,
    private readonly adapterName: string,
    /** Byte ranges from the adapter's params into its bank slot (null: a lower rank, published through the host). */
    private readonly copies: ByteCopy[] | null,
    private readonly promotion: Promotion | null,
    private readonly now: () => number,
    private readonly queue: StepQueue,
  ) {}

  /** The step in flight (null: none), for the planner's views and the queue's withdraw rule. */
  get current(): ActiveStep | null {
    return this.active;
  }

  /** The trained adapter's version (counts every applied optimizer step). */
  get version(): number {
    return this.versionNow;
  }

  /** With the guard: the version that serves. */
  get promotedVersion(): number {
    return this.promotedNow;
  }

  /** The last finished step's record. */
  get last(): FinetuneStats | null {
    return this.lastStats;
  }

  /** Steps dropped after an error. */
  get failedSteps(): number {
    return this.failures;
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

  /** See Learner.encode. */
  encode(enc: GPUCommandEncoder, jobId: number, count: number): void {
    if (!this.active) {
      const job = this.queue.find(jobId);
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
    if (await p.judge(this.versionNow, this.trainer, () => readAdapter(this.ctx, this.adapter))) {
      this.promotedNow = this.versionNow;
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

  /** See Learner.afterSubmit. Never throws: a failed step is dropped. */
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
        this.versionNow++;
        if (this.promotion) await this.promoteOrRollBack(this.promotion);
        else if (!this.copies) this.registry.load(this.adapterName, await readAdapter(this.ctx, this.adapter));
      }
      const job = a.job;
      job.lastLoss = Number.isFinite(m.loss) ? m.loss : job.lastLoss;
      job.steps++;
      this.active = null;
      this.queue.stepped(job);
      this.lastStats = {
        type: 'finetune', t: this.now(), method: a.job.kto ? 'kto' : 'dpo', adapter: this.adapterName, adapterVersion: this.versionNow, step: m.step, loss: m.loss,
        'rewards/chosen': m['rewards/chosen'], 'rewards/rejected': m['rewards/rejected'], 'rewards/margins': m['rewards/margins'], 'rewards/accuracies': m['rewards/accuracies'],
        grad_norm: m.grad_norm, learning_rate: m.learning_rate, skipped: m.skipped, durationMs: this.now() - a.startedAt, tokens: a.tokens.chosen + a.tokens.rejected,
        ...(this.promotion ? { servingVersion: this.promotion.guard.current, ...(m.skipped ? {} : { guard: this.promotion.status().last }) } : {}),
      };
      return this.lastStats;
    } catch {
      // The step is lost, not the learner: drop this job's step, clear half-accumulated gradients.
      this.failures++;
      this.active = null;
      this.queue.dropped(a.job);
      this.trainer.clearGrads();
      return null;
    }
  }

  /**
   * The weights half of Learner.restore (its caller checked that no step is in flight): the saved
   * adapter becomes the trained and the served one (optimizer moments reset), its version counts on.
   */
  restoreWeights(host: HostAdapter, version: number): void {
    writeAdapter(this.ctx, this.adapter, host, { resetMoments: true });
    this.registry.load(this.adapterName, host);
    this.promotion?.replaced(host);
    this.versionNow = version;
    this.promotedNow = version;
  }

  /** See Learner.abandonStep. */
  abandon(): void {
    if (!this.active) return;
    this.active = null;
    this.trainer.clearGrads();
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
