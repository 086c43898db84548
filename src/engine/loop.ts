/**
 * The engine's loop and what one iteration does, as functions over the explicit `LoopParts` and
 * `LoopState` that EngineCore (engine.ts) owns and passes down. The engine is what callers talk to
 * (its lifecycle, request intake, learning on/off) and kicks the loop when work arrives; the loop
 * runs iterations while there is work, and requests and pairs arriving meanwhile join the next one.
 * Each iteration:
 *   1. runs the changes that waited for a step boundary and finishes aborted requests (their KV
 *      blocks go back to the pool),
 *   2. asks the scheduler (src/scheduler/planner.ts, a pure function of the queue state) what runs:
 *      running decodes first, then prefill chunks and fine-tune work units packed by priority and
 *      best fit under the per-submission GPU-time budget and the free KV blocks, preempting the
 *      newest request when blocks run out (it is recomputed later from its tokens),
 *   3. encodes the inference pass + sampling + the result copy and the planned fine-tune units in
 *      ONE submission, or in layer-range slices when the plan exceeds the budget (step-gpu.ts),
 *   4. reads back only the sampled ids (+ a few logprob numbers per row when asked) and, when a
 *      training phase ended, the learner's few numbers; commits the step, hands each sampled id to
 *      its request, feeds the measured time to the cost model and emits the stats records.
 */
import { addFeatures, zeroFeatures, type CostModel, type WorkFeatures } from '../scheduler/cost-model.ts';
import { entryFeatures, unitFeatures } from '../scheduler/features.ts';
import type { BudgetNow } from '../scheduler/frame-budget.ts';
import { planIteration } from '../scheduler/planner.ts';
import type { FinetuneGate } from '../scheduler/policy.ts';
import type { FinetuneStats, IterationStats } from '../scheduler/stats.ts';
import type { FinetuneJobView, IterationPlan, SchedulerConfig } from '../scheduler/types.ts';
import { pruneSequence } from './batch.ts';
import type { Learner } from './learner.ts';
import type { ResolvedLimits } from './limits.ts';
import type { PrefixReuse } from './prefix.ts';
import type { RequestQueues } from './queues.ts';
import type { StatsStream } from './stats-stream.ts';
import { acceptSampled, encodeInference, submitParts, type Measured, type StepGpu, type WorkPart } from './step-gpu.ts';

/** The engine's parts the loop uses (owned by EngineCore; fixed for its life). */
export interface LoopParts {
  /** The GPU side (step-gpu.ts): its `ctx`, `forward`, `pool` and `now` are the engine's own. */
  gpu: StepGpu;
  limits: ResolvedLimits;
  queues: RequestQueues;
  prefix: PrefixReuse | null;
  scheduler: SchedulerConfig;
  cost: CostModel;
  gate: FinetuneGate;
  stream: StatsStream;
  /** Changes that must wait for a step boundary (no submission in flight): run at the iteration's start. */
  atBoundary: (() => void)[];
  /**
   * The learner now (null while learning is off). A getter, not a value: enableLearning() and
   * destroy() change it, also while an iteration awaits the GPU, and each use reads it afresh.
   */
  learner: () => Learner | null;
  /** The budget the plan is packed under (EngineCore.budgetNow: the page's frames, or the constant). */
  budgetNow: () => BudgetNow;
  /** Whether the engine was destroyed (the loop stops at the next iteration boundary). */
  closed: () => boolean;
}

/** What the loop carries from one iteration to the next (EngineCore.stats() reads the counts). */
export interface LoopState {
  /** An iteration is running or about to (kicked): new work joins it or the next one. */
  looping: boolean;
  /** A timer that re-kicks the loop when fine-tuning waits for its policy's window. */
  gateTimer: ReturnType<typeof setTimeout> | null;
  iterations: number;
  /** Iterations submitted in more than one slice. */
  sliced: number;
  /** Blocks freed early out of their sequence's key window. */
  prunedBlocks: number;
  /** When pending fine-tune work last started waiting without a unit run (null: none waits). */
  finetuneWaitingSince: number | null;
}

/** Start the loop unless it is running already (then the new work joins its next iteration). */
export function kickLoop(p: LoopParts, s: LoopState): void {
  if (s.looping) return;
  s.looping = true;
  // Start on a microtask: requests created in the same synchronous burst join the first step.
  void Promise.resolve().then(() => runLoop(p, s));
}

/** Iterations while there is work; an error fails every queued request and ends this run of the loop. */
async function runLoop(p: LoopParts, s: LoopState): Promise<void> {
  try {
    while (!p.closed() && hasWork(p)) {
      const progressed = await runIteration(p, s);
      if (!progressed && p.queues.empty) {
        // Only fine-tuning is left and its policy holds it back: look again in a while.
        s.gateTimer ??= setTimeout(() => {
          s.gateTimer = null;
          kickLoop(p, s);
        }, 50);
        break;
      }
    }
  } catch (e) {
    p.queues.failAll(e);
  } finally {
    s.looping = false;
    for (const run of p.atBoundary.splice(0)) run(); // the loop ended: nothing is in flight
  }
}

/** Work the loop runs for: requests, or fine-tuning (its policy may hold it back: see runIteration's false). */
function hasWork(p: LoopParts): boolean {
  return !p.queues.empty || (p.learner()?.hasWork ?? false);
}

/** Work that could run now: requests, or fine-tuning its policy lets run (EngineCore.pendingWork). */
export function workRunnableNow(p: LoopParts): boolean {
  if (!p.queues.empty) return true;
  if (!p.learner()?.hasWork) return false;
  const policy = p.scheduler.policy;
  return policy === 'mace' || policy === 'sync' || (policy === 'periodic' && p.gate.open);
}

/** Dispatch lists built so far (a new batch shape or unit length builds one). */
function plansBuilt(p: LoopParts): number {
  return p.gpu.forward.built + (p.learner()?.trainer.built ?? 0);
}

/** One iteration; false when nothing could run (only held-back fine-tuning). */
async function runIteration(p: LoopParts, s: LoopState): Promise<boolean> {
  for (const run of p.atBoundary.splice(0)) run();
  p.queues.reapFinished();
  const L = p.limits;
  const { ctx, pool, now } = p.gpu;
  const t0 = now();
  const builtBefore = plansBuilt(p);
  const pipelinesBefore = ctx.pipelines.size;
  const learner = p.learner();
  const jobs: FinetuneJobView[] = learner ? learner.views() : [];
  const allowed = learner !== null && p.gate.allowed(t0, learner.pendingSteps, learner.stepsDone);
  const { running, waiting } = p.queues.views();
  const budget = p.budgetNow(); // the page's frames, or the constant
  // Since when pending fine-tuning has run no unit (the planner's starvation guard).
  if (!allowed || jobs.length === 0) s.finetuneWaitingSince = null;
  else s.finetuneWaitingSince ??= t0;
  const plan = planIteration(
    {
      now: t0, running, waiting, finetune: jobs, freeBlocks: pool.numFree, maxTokens: L.maxTokens, maxSeqs: L.maxSeqs, finetuneAllowed: allowed,
      finetuneArenaBytes: learner?.arenaBytes ?? 0, finetuneWaitMs: s.finetuneWaitingSince === null ? 0 : t0 - s.finetuneWaitingSince,
    },
    { ...p.scheduler, budgetMs: budget.budgetMs },
    p.cost,
  );
  if (plan.finetune) s.finetuneWaitingSince = null;
  const schedulerMs = now() - t0;
  const views = new Map([...running, ...waiting].map((v) => [v.id, v]));
  p.queues.applyPlan(plan);
  if (plan.entries.length === 0 && !plan.finetune) return plan.preempted.length > 0; // preemptions only: plan again
  s.iterations++;

  const parts: WorkPart[] = [];
  const features = { inference: zeroFeatures(), finetune: zeroFeatures() };
  const byId = new Map(p.queues.running.map((r) => [r.id, r]));
  const inference = plan.entries.length > 0 ? encodeInference(p.gpu, plan, plan.entries.map((e) => byId.get(e.id)!), parts) : null;
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
      parts.push({ encode: (enc) => learner.encode(enc, job.id, 1), ms: p.cost.marginalMs(f), kind: 'finetune' });
    }
  }

  const measured = await submitParts(p.gpu, parts, plan.slices, inference, `iteration ${s.iterations}`);
  const fin = learner ? await learner.afterSubmit() : null;
  if (inference) {
    acceptSampled(p.gpu, inference);
    // Blocks filled by this step become matchable (before finished requests release them); then
    // blocks out of every later query's window go back to the pool.
    for (const r of inference.reqs) {
      p.prefix?.register(r.seq, r.reuse);
      const freed = pruneSequence(r.seq, pool);
      if (freed > 0) {
        s.prunedBlocks += freed;
        p.prefix?.stopRegistering(r.reuse);
      }
    }
  }
  // An iteration that built dispatch lists (a new batch shape or unit length) also paid their
  // set-up and maybe shader compiles: not a sample of the steady cost.
  if (plansBuilt(p) === builtBefore) observeCost(p.cost, features, measured);
  if (measured.slices > 1) s.sliced++;
  p.queues.reapFinished(); // finished and aborted requests leave the batch now
  emitIteration(p, s, plan, t0, measured, schedulerMs, budget, { plans: plansBuilt(p) - builtBefore, pipelines: ctx.pipelines.size - pipelinesBefore });
  if (fin) p.stream.emit(fin satisfies FinetuneStats);
  return true;
}

/**
 * Feed the cost model: with GPU times per kind each fit learns from its own kind's time (sliced
 * iterations too: the kinds' times add up over the slices); with wall time only whole, unsliced
 * iterations are samples (a slice boundary adds a wait that no feature explains).
 */
function observeCost(cost: CostModel, features: { inference: WorkFeatures; finetune: WorkFeatures }, m: Measured): void {
  if (m.gpu) {
    const inf = features.inference.rows > 0 ? { f: features.inference, ms: m.gpu.inference } : null;
    const ft = features.finetune.ftDispatches > 0 ? { f: features.finetune, ms: m.gpu.finetune } : null;
    cost.observeByKind(inf, ft);
  } else if (m.slices === 1) cost.observe(addFeatures(features.inference, features.finetune), m.measuredMs);
}

/** The iteration's stats record, then the memory and prefix records (each rate-limited by the stream). */
function emitIteration(p: LoopParts, s: LoopState, plan: IterationPlan, t: number, m: Measured, schedulerMs: number, budget: BudgetNow, built: { plans: number; pipelines: number }): void {
  if (!p.stream.active) return;
  const pool = p.gpu.pool;
  const rec: IterationStats = {
    type: 'iteration', iteration: s.iterations, t,
    prefillTokens: plan.entries.filter((e) => e.kind === 'prefill').reduce((a, e) => a + e.count, 0),
    decodeRows: plan.entries.filter((e) => e.kind === 'decode').length,
    finetuneUnits: plan.finetune?.units ?? 0,
    plannedMs: { ...plan.predictedMs }, budgetMs: budget.budgetMs, budgetSource: budget.source, frameDrops: budget.frameDrops, frameIntervalMs: budget.frameIntervalMs, measuredMs: m.gpu ? m.gpu.inference + m.gpu.finetune : m.measuredMs, wallMs: m.measuredMs, timing: m.gpu ? 'timestamp' : 'wall', slices: m.slices, schedulerMs, plansBuilt: built.plans, pipelinesCreated: built.pipelines,
    gpuMs: m.gpu ? { inference: plan.entries.length > 0 ? m.gpu.inference : null, finetune: plan.finetune ? m.gpu.finetune : null } : null,
    kvBlocksUsed: pool.numBlocks - pool.numFree, kvBlocksTotal: pool.numBlocks,
    waitingRequests: p.queues.waiting.length, runningRequests: p.queues.running.length, pendingPairs: p.learner()?.pendingPairs ?? 0,
  };
  p.stream.emit(rec);
  p.stream.memory(t, p.gpu.ctx.tally);
  p.stream.prefix(t, p.prefix);
}
