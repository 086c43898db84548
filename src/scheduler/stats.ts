/**
 * The stats stream: what the engine reports while it serves and learns, as plain data that
 * crosses the worker boundary unchanged (structured clone). The scheduler fills IterationStats
 * from its plan and the measured time; the engine adds request and fine-tune records. The
 * devtools panel (src/ui/devtools/) and the Performance-panel tracks draw only from these types.
 *
 * Times are milliseconds on the producer's performance.now() clock (`t`), plus `timeOrigin` in
 * StatsBatch so a page can map them onto its own clock: pageTime = t + batch.timeOrigin - performance.timeOrigin.
 */

/** The kinds of work one iteration can hold. */
export type TaskKind = 'prefill' | 'decode' | 'finetune';

/** Scheduling policies (see src/scheduler/policy.ts). */
export type PolicyName = 'mace' | 'inference-only' | 'periodic' | 'sync';

/** One iteration of the engine loop: one GPU submission (or several layer-range slices of it). */
export interface IterationStats {
  type: 'iteration';
  /** 1-based iteration counter. */
  iteration: number;
  /** Start of the iteration (plan time). */
  t: number;
  /** Tokens of prefill chunks, decode rows and fine-tune units this iteration ran. */
  prefillTokens: number;
  decodeRows: number;
  finetuneUnits: number;
  /** Predicted GPU time by kind (the cost model's split of planned work). */
  plannedMs: Record<TaskKind, number>;
  /** Budget the plan was packed under (Infinity: no per-frame budget). */
  budgetMs: number;
  /** Where it came from: the page's frame reports (frame-budget.ts), or the configured constant. */
  budgetSource: 'frames' | 'constant';
  /** Frames the page dropped in the report the budget came from (0 when none is in use). */
  frameDrops: number;
  /** The page's frame interval in that report (ms); null with the constant or a hidden page. */
  frameIntervalMs: number | null;
  /** Measured GPU time of the whole iteration (timestamp queries: the kinds' sum; else wall time of submit→done). */
  measuredMs: number;
  /** Wall time from the first submission to the results (whatever the timing). */
  wallMs: number;
  /** How the measured time was taken. */
  timing: 'timestamp' | 'wall';
  /**
   * GPU ms by kind of work, from timestamp queries around its passes (null: not timed, wall timing).
   * inference = the batch's prefill chunks and decodes (one forward pass); null for a kind not run.
   */
  gpuMs: { inference: number | null; finetune: number | null } | null;
  /** Submissions the iteration was split into (layer-range slices); 1 when it fit the budget. */
  slices: number;
  /** Scheduler CPU time spent planning this iteration. */
  schedulerMs: number;
  /**
   * Dispatch lists built and pipelines created by this iteration (a new batch shape or unit length):
   * such an iteration also paid set-up and maybe shader compiles, so its time is not a steady cost.
   */
  plansBuilt: number;
  pipelinesCreated: number;
  kvBlocksUsed: number;
  kvBlocksTotal: number;
  /** Queue depths after planning. */
  waitingRequests: number;
  runningRequests: number;
  pendingPairs: number;
}

/** A chat request that finished (any reason). */
export interface RequestStats {
  type: 'request';
  id: string;
  /** When it finished. */
  t: number;
  /** When it was submitted. */
  arrivedAt: number;
  promptTokens: number;
  completionTokens: number;
  /** Arrival → first token (ms); null when no token was produced. */
  ttftMs: number | null;
  /** Gaps between consecutive tokens (ms), in order. */
  tbtMs: number[];
  finishReason: 'stop' | 'length' | 'abort' | 'error';
  adapter: string | null;
  /** Prompt tokens whose K/V came from the prefix cache (not computed); absent from older producers. */
  cachedTokens?: number;
}

/** One DPO optimizer step (TRL's metric names). */
export interface FinetuneStats {
  type: 'finetune';
  t: number;
  /** The loss the step trained: DPO on a pair, KTO on an unpaired thumb (absent: 'dpo'). For KTO, rewards/chosen or /rejected is the example's reward under its label (the other NaN), margins and accuracies NaN. */
  method?: 'dpo' | 'kto';
  /** Adapter being trained and its version after this step (bumps when the step applied). */
  adapter: string;
  adapterVersion: number;
  step: number;
  loss: number;
  'rewards/chosen': number;
  'rewards/rejected': number;
  'rewards/margins': number;
  'rewards/accuracies': number;
  grad_norm: number;
  learning_rate: number;
  skipped: boolean;
  /** Wall time from the step's first unit to its metrics (ms). */
  durationMs: number;
  /** Tokens the step trained on: both sequences' prompt + response (the work it did). */
  tokens: number;
  /** With the poisoning guard: the version serving after this step's decision (null: the base model). Absent: this version serves. */
  servingVersion?: number | null;
  /** With the poisoning guard: its decision on this step's version (absent: the step was skipped, or no guard). */
  guard?: GuardStatus['last'];
}

/** Service-level objectives the panel draws against (ms). */
export interface SloTargets {
  ttftMs: number;
  tbtMs: number;
}

/** Engine-level settings announced once per load (and when they change). */
export interface SessionStats {
  type: 'session';
  t: number;
  policy: PolicyName;
  budgetMs: number;
  slo: SloTargets;
  kvBlocksTotal: number;
  modelName: string;
}

/** GPU memory alive on the engine's device, by owner (src/gpu/tally.ts ownerOfLabel); sent at most once a second, when it changed. */
export interface MemoryStats {
  type: 'memory';
  t: number;
  /** Live buffers and their bytes, and live query sets. */
  buffers: number;
  bytes: number;
  querySets: number;
  /** By owner: weights, kv-cache, engine, trainer, adapters, uniforms, transfers, other. */
  byOwner: Record<string, { buffers: number; bytes: number }>;
}

/**
 * The prefix cache (src/engine/prefix.ts): cumulative counts since the engine started; sent at most
 * once a second, when they changed. Absent when the engine runs without a prefix cache.
 */
export interface PrefixStats {
  type: 'prefix';
  t: number;
  /** Full prompt blocks found cached, and asked for, at requests' first admission. */
  hits: number;
  queries: number;
  /** hits / queries (0 before any query). */
  hitRate: number;
  /** Blocks matchable now (in use, or free and not yet reused). */
  cachedBlocks: number;
  /** Entries dropped because the pool reused their block, and because their adapter's weights changed. */
  evictions: number;
  invalidated: number;
  /** Prompt tokens served from the cache, and all prompt tokens admitted (their ratio: the prefill saved). */
  cachedTokens: number;
  promptTokens: number;
}

export type StatsRecord = IterationStats | RequestStats | FinetuneStats | SessionStats | MemoryStats | PrefixStats;

/** Records are sent in batches (at most one per animation frame's worth of time). */
export interface StatsBatch {
  /** performance.timeOrigin of the producer (the worker). */
  timeOrigin: number;
  records: StatsRecord[];
}

/** The poisoning guard's state: anchors held out, the version serving, the last decision. */
export interface GuardStatus {
  anchors: number;
  /** The learner's version serving (null: the base model, nothing promoted yet). */
  serving: number | null;
  /** Candidates dropped because their anchor accuracy fell too far. */
  rolledBack: number;
  last: { version: number; accuracy: number | null; reference: number | null; decision: 'promote' | 'rollback'; reason: string } | null;
}

/** What the page can ask about on-device learning (engine.learning.status()). */
export interface LearningStatus {
  /** Learning runs (a trainer exists for the loaded model). */
  enabled: boolean;
  policy: PolicyName;
  /** Name of the adapter that feedback trains (served to requests that name it). */
  adapter: string;
  /** Its version: 0 before the first applied step, +1 per applied optimizer step. */
  version: number;
  /** Optimizer steps attempted. */
  steps: number;
  /** Preference pairs known; training examples (pairs and thumbs) not trained on yet. */
  pairs: number;
  pendingPairs: number;
  /** Unpaired thumbs known (trained with KTO), and those of pendingPairs not trained on yet. */
  thumbs?: number;
  pendingThumbs?: number;
  /** Steps dropped because they failed (non-finite log-probs, a read-back or device error); serving went on. */
  failedSteps: number;
  /** Pairs not queued because their conversation already had its share queued (LearningOptions.maxPairsPerConversation). */
  rateLimitedPairs?: number;
  /** The poisoning guard (src/engine/promotion.ts), when on. */
  guard?: GuardStatus;
  /** The last step's metrics, or null before the first. */
  last: FinetuneStats | null;
}
