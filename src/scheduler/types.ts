/**
 * What the scheduler sees (plain views of the engine's queues) and what it returns (the plan).
 * No GPU objects, no callbacks: a plan is data, so tests compare plans with exact expectations.
 */
import type { PolicyName, TaskKind } from './stats.ts';

/** One chat request's sequence as the planner needs it. */
export interface RequestView {
  id: number;
  /** Tokens it has (prompt + generated). */
  length: number;
  /**
   * Tokens whose K/V are in the cache. For a waiting request: the tokens a prefix-cache hit would
   * give it at admission (its matched blocks count as `blocks`).
   */
  computed: number;
  /** KV blocks it holds (waiting: the prefix-cache blocks it would take at admission). */
  blocks: number;
  /** When it arrived (ms, the state's clock): aging of waiting prefills. */
  arrivedAt: number;
  /**
   * Waiting only: how many of its matched prefix blocks are free in the pool, so admitting it takes
   * them from the free count (the others are shared with running sequences). Absent: 0.
   */
  cachedFree?: number;
  /**
   * Running only: blocks preempting it would return to the free pool (blocks shared with another
   * sequence stay in use). Absent: all of `blocks`.
   */
  exclusiveBlocks?: number;
}

/** Kinds of fine-tune work unit (the trainer's, src/learn/work-units.ts). */
export type FinetuneUnitKind = 'embed' | 'forward' | 'head' | 'head-backward' | 'backward' | 'optimizer';

/**
 * One fine-tune work unit: one matmul (or the attention core) of one layer's forward or backward of
 * one sequence, a whole layer with the 'layer' granularity, or a head/embedding/optimizer unit.
 */
export interface UnitView {
  kind: FinetuneUnitKind;
  /** Tokens the unit runs at (the trainer's bucketed length). */
  tokens: number;
  /** Multiply-accumulates, millions: the cost model's size of its compute. */
  mmacs: number;
  /** Kernel dispatches it encodes: the cost model's size of its fixed overhead. */
  dispatches: number;
  /** Activation bytes it writes into the training arena: the plan's memory term for fine-tuning. */
  bytes: number;
}

/** One preference pair's next optimizer step, as the planner sees it. */
export interface FinetuneJobView {
  id: number;
  /** When it was queued for this step (ms): aging. */
  queuedAt: number;
  /** Its DPO loss at its last step; null: never trained (starts high, see SchedulerConfig.freshLoss). */
  lastLoss: number | null;
  /** Units runnable now, in order (the current phase's rest); empty while a read-back is pending. */
  ready: readonly UnitView[];
  /** Its step has started (the training arena holds its activations): it must finish before another starts. */
  started: boolean;
}

export interface SchedulerState {
  /** Now (ms). */
  now: number;
  /** Sequences holding KV blocks, oldest admission first. */
  running: readonly RequestView[];
  /** Waiting sequences in admission order (preempted ones first). */
  waiting: readonly RequestView[];
  /** Pairs waiting for a step (at most one started). */
  finetune: readonly FinetuneJobView[];
  freeBlocks: number;
  /** Inference tokens one iteration can hold (the forward arena's rows). */
  maxTokens: number;
  /** Most sequences running at once. */
  maxSeqs: number;
  /** May fine-tune work run this iteration (the policy's window, see policy.ts)? */
  finetuneAllowed: boolean;
  /**
   * Bytes of the training arena (the activations one step keeps until its backward): fine-tune
   * units' memory fit is their bytes over it, as prefill chunks' is their blocks over the free
   * blocks. 0: no memory term for fine-tuning.
   */
  finetuneArenaBytes: number;
  /**
   * How long pending fine-tune work has gone without running a unit (ms; absent or 0: a unit ran
   * in the last iteration, or nothing is pending). From SchedulerConfig.finetuneStarveMs on, the
   * decodeStretch cap is lifted until a unit runs.
   */
  finetuneWaitMs?: number;
}

export interface PlannedEntry {
  id: number;
  /** Tokens to run from `computed` on (1 for a decode). */
  count: number;
  /** The chunk reaches the sequence's last token: its logits are sampled. */
  sample: boolean;
  kind: 'prefill' | 'decode';
}

export interface PlannedFinetune {
  job: number;
  /** How many of the job's ready units run, from the first. */
  units: number;
}

export interface IterationPlan {
  /** Inference rows in order: running sequences first, then admitted ones. */
  entries: PlannedEntry[];
  /** Running sequences to free and requeue at the front of the waiting queue, newest first. */
  preempted: number[];
  /** Waiting sequences that start running this iteration (in entries too). */
  admitted: number[];
  /** Fine-tune units to run after the inference rows, or null. */
  finetune: PlannedFinetune | null;
  /** Predicted GPU ms by kind (the intercept goes to the first kind present). */
  predictedMs: Record<TaskKind, number>;
  /** Submissions to split the iteration into (layer-range slices) so each fits the budget. */
  slices: number;
  /** KV blocks the plan takes from the free list. */
  blocks: number;
}

export interface SchedulerConfig {
  policy: PolicyName;
  /** GPU-time budget of one submission (ms); Infinity: none (headless benchmarks). */
  budgetMs: number;
  /** Base priorities by kind (inference above fine-tuning). */
  basePrefill: number;
  baseFinetune: number;
  /** Aging: priority per second waited. */
  agingPrefill: number;
  agingFinetune: number;
  /** γ: weight of a pair's DPO loss. */
  gamma: number;
  /** Loss assumed for a pair never trained (ln 2 is DPO's loss at the start; higher = new feedback first). */
  freshLoss: number;
  /**
   * Prompt tokens every iteration may prefill even when decodes already fill the budget, so new
   * requests never starve behind running ones (0: none; prefill then only uses what is left).
   */
  minPrefillTokens: number;
  /**
   * Fine-tune units join inference rows in one iteration only once the cost model has this many
   * measurements of fine-tune work: before that their cost is a guess, and a wrong guess beside
   * decodes is a stutter. (They still run alone when inference is idle.)
   */
  minFinetuneSamples: number;
  /**
   * Share of the time left beside inference rows that fine-tune units may take (1: all of it).
   * Colocated fine-tuning lengthens every decode step of its iteration, and longer decode phases
   * make requests overlap more (more prompts then prefill beside decodes: the TBT tail); below 1 the
   * decode steps stay closer to their own cost. Alone (inference idle), units use the whole budget.
   */
  finetuneShare: number;
  /**
   * Beside running decodes, fine-tune units add at most this fraction of the decodes' own predicted
   * time (their iteration's intercept included): 0.25 lets a 4 ms decode step grow to at most 5 ms.
   * Every decode row's time between tokens is its iteration's whole time, so this bounds what
   * colocated fine-tuning adds to the TBT of every chat, whatever the budget leaves; units too large
   * for it wait for an iteration without decodes. Infinity: only finetuneShare and the budget apply.
   */
  decodeStretch: number;
  /**
   * Pending fine-tune work that has run no unit for this long (ms) may stretch decode steps past
   * decodeStretch (only finetuneShare of the budget then bounds it) until a unit runs: under load
   * without idle iterations learning still gets a turn every this-many ms, at a TBT cost then.
   */
  finetuneStarveMs: number;
  /** Best-fit weights: λ1 on memory fit, λ2 on latency fit (fractions of the remaining capacity). */
  lambdaMemory: number;
  lambdaLatency: number;
}

export const DEFAULT_BUDGET_MS = 8;

export function defaultSchedulerConfig(policy: PolicyName = 'mace', budgetMs = DEFAULT_BUDGET_MS): SchedulerConfig {
  return {
    policy,
    budgetMs,
    basePrefill: 10,
    baseFinetune: 0,
    agingPrefill: 1,
    agingFinetune: 0.5,
    gamma: 2,
    freshLoss: 1,
    minPrefillTokens: 16,
    minFinetuneSamples: 3,
    finetuneShare: 0.5,
    decodeStretch: 0.25,
    finetuneStarveMs: 2000,
    lambdaMemory: 0.5,
    lambdaLatency: 0.5,
  };
}
