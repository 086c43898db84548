/**
 * One iteration's plan, as a pure function of the queues (plain data in, plain data out).
 *
 * 1. Running decodes first, oldest first (stall-free batching): they are never dropped for time;
 *    when the KV pool cannot hold a running sequence's next token (a decode's or a chunked
 *    prefill's), the NEWEST running sequence is preempted (blocks freed, recomputed later) until
 *    it fits; that may be the sequence itself.
 * 2. Then best-fit packing of the optional work into what is left of the bin (GPU-time budget,
 *    free KV blocks, arena tokens, sequence slots): prefill chunks (running chunked prefills, then
 *    the head of the waiting queue: no overtaking, so a long prompt is never starved) and the next
 *    fine-tune units of one pair. Running chunked prefills come first (they hold blocks already). Each candidate is sized to the largest piece that fits; the one
 *    with the best score P(t) + λ1·memory fit + λ2·latency fit is taken, and so on until nothing fits.
 *    Memory fit is the share of what is left that the piece takes: KV blocks and arena tokens for a
 *    prefill chunk, training-arena bytes for fine-tune units (their activations).
 *    The plan's first prefill chunk may always take `minPrefillTokens` (prompts never starve
 *    behind running decodes; the plan is sliced if that goes over the budget). Fine-tune units
 *    take at most `finetuneShare` of the time inference leaves, and beside decodes at most
 *    `decodeStretch` of the decodes' own time (what colocation adds to every chat's TBT), unless
 *    pending fine-tuning has run no unit for `finetuneStarveMs` (learning never starves under load).
 * 3. If nothing at all fits (an item larger than the whole budget) the highest-priority item runs
 *    at its smallest size: work never stalls, the plan is split into layer-range slices instead.
 *
 * Policies: 'mace' (the above), 'inference-only' (no fine-tuning), 'periodic' (fine-tuning only
 * in windows — state.finetuneAllowed — and only in what inference leaves), 'sync' (pending
 * fine-tuning runs before any inference: decodes stall until it is done).
 */
import { BLOCK_SIZE, blocksForLength } from '../kv/layout.ts';
import { addFeatures, zeroFeatures, type CostModel, type WorkFeatures } from './cost-model.ts';
import { entryFeatures, mixedFor, unitFeatures } from './features.ts';
import { finetunePriority, pickJob, prefillPriority } from './priority.ts';
import type { TaskKind } from './stats.ts';
import type { FinetuneJobView, IterationPlan, PlannedEntry, RequestView, SchedulerConfig, SchedulerState } from './types.ts';

/** Slack on time comparisons: sums of float costs must not lose a piece that fits exactly. */
const EPS_MS = 1e-9;

/** What is left of the bin while packing. */
interface Capacity {
  ms: number;
  tokens: number;
  blocks: number;
  slots: number;
  /** Training-arena bytes (fine-tune units' memory; see SchedulerState.finetuneArenaBytes). */
  bytes: number;
}

/** A sized candidate: what it would take if chosen now. */
interface Sized {
  ms: number;
  blocks: number;
  tokens: number;
  bytes: number;
}

/** A running sequence whose next step is one generated token (a prompt's first pass is a prefill). */
export function isDecode(r: RequestView): boolean {
  return r.computed > 0 && r.length - r.computed === 1;
}

function extraBlocks(r: RequestView, count: number): number {
  return Math.max(0, blocksForLength(r.computed + count) - r.blocks);
}

/** Largest n in 1..max with ok(n), for ok monotone (true then false); 0 when ok(1) fails. */
function largest(max: number, ok: (n: number) => boolean): number {
  if (max < 1 || !ok(1)) return 0;
  let lo = 1, hi = max;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (ok(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** The batch so far, as the cost of one more prefill chunk depends on it (mixed mode, features.ts mixedFor). */
interface BatchSoFar {
  tokens: number;
  mixed: boolean;
}

/** Features of a prefill chunk of n tokens of r added to the batch. */
function chunkFeatures(r: RequestView, n: number, batch: BatchSoFar): WorkFeatures {
  return entryFeatures(r.computed, n, mixedFor(n, batch.tokens, batch.mixed));
}

/** Largest prefill chunk of r that fits `cap` (0: none). */
function sizePrefill(r: RequestView, cap: Capacity, cost: CostModel, batch: BatchSoFar): number {
  const byBlocks = (r.blocks + cap.blocks) * BLOCK_SIZE - r.computed;
  const max = Math.min(r.length - r.computed, cap.tokens, byBlocks);
  return largest(max, (n) => cost.marginalMs(chunkFeatures(r, n, batch)) <= cap.ms + EPS_MS);
}

/** Largest prefix of the job's ready units that fits the time left (0: none). */
function sizeUnits(j: FinetuneJobView, ms: number, cost: CostModel): number {
  let total = 0;
  let n = 0;
  for (const u of j.ready) {
    total += cost.marginalMs(unitFeatures(u));
    if (total > ms + EPS_MS) break;
    n++;
  }
  return n;
}

function unitsFeatures(j: FinetuneJobView, n: number): WorkFeatures {
  return j.ready.slice(0, n).reduce((f, u) => addFeatures(f, unitFeatures(u)), zeroFeatures());
}

/** Fraction of the remaining capacity an item fills (0 when the capacity is unbounded or empty). */
function fill(used: number, left: number): number {
  return Number.isFinite(left) && left > 0 ? used / left : 0;
}

class PlanBuilder {
  readonly entries: PlannedEntry[] = [];
  readonly preempted: number[] = [];
  readonly admitted: number[] = [];
  finetune: IterationPlan['finetune'] = null;
  blocksTaken = 0;
  readonly features: Record<TaskKind, WorkFeatures> = { decode: zeroFeatures(), prefill: zeroFeatures(), finetune: zeroFeatures() };

  constructor(readonly cost: CostModel) {}

  addEntry(r: RequestView, count: number, f: WorkFeatures, blocks: number): void {
    const kind = isDecode(r) ? 'decode' : 'prefill';
    this.entries.push({ id: r.id, count, sample: r.computed + count === r.length, kind });
    this.features[kind] = addFeatures(this.features[kind], f);
    this.blocksTaken += blocks;
  }

  /** Tokens and mode of the batch so far. */
  get batch(): BatchSoFar {
    return { tokens: this.entries.reduce((a, e) => a + e.count, 0), mixed: this.entries.some((e) => e.count > 1) };
  }

  /** The per-submission fixed cost this plan pays (see CostModel.interceptFor). */
  get interceptMs(): number {
    return this.empty ? 0 : this.cost.interceptFor(this.entries.length > 0);
  }

  addUnits(j: FinetuneJobView, n: number): void {
    this.finetune = { job: j.id, units: n };
    this.features.finetune = unitsFeatures(j, n);
  }

  get empty(): boolean {
    return this.entries.length === 0 && this.finetune === null;
  }

  /** Predicted ms so far, the intercept included once work exists. */
  get ms(): number {
    if (this.empty) return 0;
    return this.interceptMs + this.cost.marginalMs(this.features.decode) + this.cost.marginalMs(this.features.prefill) + this.cost.marginalMs(this.features.finetune);
  }

  build(budgetMs: number): IterationPlan {
    const predictedMs: Record<TaskKind, number> = { decode: 0, prefill: 0, finetune: 0 };
    let interceptGiven = false;
    for (const k of ['decode', 'prefill', 'finetune'] as const) {
      const present = k === 'finetune' ? this.finetune !== null : this.entries.some((e) => e.kind === k);
      if (!present) continue;
      predictedMs[k] = this.cost.marginalMs(this.features[k]) + (interceptGiven ? 0 : this.interceptMs);
      interceptGiven = true;
    }
    const total = predictedMs.decode + predictedMs.prefill + predictedMs.finetune;
    const slices = Number.isFinite(budgetMs) && total > budgetMs ? Math.ceil(total / budgetMs) : 1;
    return { entries: this.entries, preempted: this.preempted, admitted: this.admitted, finetune: this.finetune, predictedMs, slices, blocks: this.blocksTaken };
  }
}

/** Sync policy: pending fine-tuning runs first and alone (inference waits). */
function planSync(s: SchedulerState, c: SchedulerConfig, cost: CostModel): IterationPlan | null {
  const job = pickJob(s.finetune, s.now, c, true);
  if (!job) return null;
  const b = new PlanBuilder(cost);
  b.addUnits(job, Math.max(1, sizeUnits(job, c.budgetMs - cost.interceptFor(false), cost)));
  return b.build(c.budgetMs);
}

/**
 * Step 1: running sequences oldest first. Each must be able to take its next token (a decode's,
 * or a chunked prefill's first): when the pool cannot hold it, the NEWEST running sequence is
 * preempted until it can (that may be the sequence itself). Decodes are planned here; the blocks
 * of a chunked prefill's next token are reserved for it (`reserved`), its chunk is sized in step 2.
 */
function planRunning(s: SchedulerState, b: PlanBuilder, cap: Capacity, reserved: Map<number, number>): RequestView[] {
  const running = [...s.running];
  for (let i = 0; i < running.length; i++) {
    const r = running[i];
    if (r.length <= r.computed || cap.tokens === 0) continue;
    const need = extraBlocks(r, 1);
    while (need > cap.blocks && running.length > i) {
      const victim = running.pop()!;
      b.preempted.push(victim.id);
      cap.blocks += victim.exclusiveBlocks ?? victim.blocks;
      cap.blocks += reserved.get(victim.id) ?? 0;
      reserved.delete(victim.id);
    }
    if (running.length === i) break; // r itself was preempted
    cap.blocks -= need;
    if (isDecode(r)) {
      b.addEntry(r, 1, entryFeatures(r.computed, 1), need);
      cap.tokens -= 1;
    } else reserved.set(r.id, need);
  }
  return running;
}

/** A piece of optional work. Running chunked prefills (tier 0: they hold blocks) go before the rest (tier 1). */
type Candidate = { kind: 'prefill'; r: RequestView; waiting: boolean; priority: number; tier: number } | { kind: 'finetune'; j: FinetuneJobView; priority: number; tier: number; maxMs: number };

const NOTHING = { n: 0, sized: { ms: 0, blocks: 0, tokens: 0, bytes: 0 } };

/**
 * The largest piece of `cand` that fits. A running prefill may use the blocks reserved for it; a
 * waiting prompt is admitted only when the blocks of its token-budget chunk are free (as before
 * time budgets), so a prompt is never admitted into blocks it would have to give back at once.
 */
function size(cand: Candidate, cap: Capacity, cost: CostModel, reserved: ReadonlyMap<number, number>, batch: BatchSoFar, minPrefill = 0): { n: number; sized: Sized } {
  if (cand.kind === 'finetune') {
    const n = sizeUnits(cand.j, Math.min(cap.ms, cand.maxMs), cost);
    const bytes = cand.j.ready.slice(0, n).reduce((a, u) => a + u.bytes, 0);
    return { n, sized: { ms: cost.marginalMs(unitsFeatures(cand.j, n)), blocks: 0, tokens: 0, bytes } };
  }
  const r = cand.r;
  // A waiting prompt's cached prefix blocks that sit free cost their count at admission (own < 0).
  const own = cand.waiting ? -(r.cachedFree ?? 0) : reserved.get(r.id) ?? 0;
  if (cand.waiting && (cap.slots === 0 || extraBlocks(r, Math.min(r.length - r.computed, cap.tokens)) > cap.blocks + own)) return NOTHING;
  // The plan's first prefill may take `minPrefill` tokens whatever the time left (no starvation).
  const floorMs = minPrefill > 0 ? cost.marginalMs(chunkFeatures(r, Math.min(minPrefill, r.length - r.computed), batch)) : 0;
  const n = sizePrefill(r, { ...cap, ms: Math.max(cap.ms, floorMs), blocks: cap.blocks + own }, cost, batch);
  return { n, sized: { ms: cost.marginalMs(chunkFeatures(r, n, batch)), blocks: extraBlocks(r, n) - own, tokens: n, bytes: 0 } };
}

function take(cand: Candidate, n: number, sized: Sized, b: PlanBuilder, cap: Capacity, reserved: Map<number, number>): void {
  cap.ms -= sized.ms;
  cap.blocks -= sized.blocks;
  cap.tokens -= sized.tokens;
  cap.bytes -= sized.bytes;
  if (cand.kind === 'finetune') b.addUnits(cand.j, n);
  else {
    const own = cand.waiting ? -(cand.r.cachedFree ?? 0) : reserved.get(cand.r.id) ?? 0;
    reserved.delete(cand.r.id);
    b.addEntry(cand.r, n, chunkFeatures(cand.r, n, b.batch), sized.blocks + own);
    if (cand.waiting) {
      b.admitted.push(cand.r.id);
      cap.slots--;
    }
  }
}

/** Take the highest-priority candidate that can make progress when time is no constraint, sized to `ms` (at least one token or unit). */
function forceTop(candidates: Candidate[], cap: Capacity, b: PlanBuilder, cost: CostModel, ms: number, reserved: Map<number, number>): void {
  const order = [...candidates].sort((x, y) => x.tier - y.tier || y.priority - x.priority);
  const batch = b.batch;
  for (const top of order) {
    // Alone in the plan: fine-tuning is beside nothing, so its share cap does not apply.
    const cand: Candidate = top.kind === 'finetune' ? { ...top, maxMs: Infinity } : top;
    if (size(cand, { ...cap, ms: Infinity }, cost, reserved, batch).n === 0) continue; // blocks, tokens or slots missing
    const minMs = cand.kind === 'finetune' ? cost.marginalMs(unitFeatures(cand.j.ready[0])) : cost.marginalMs(chunkFeatures(cand.r, 1, batch));
    const sz = size(cand, { ...cap, ms: Math.max(ms, minMs) }, cost, reserved, batch);
    take(cand, sz.n, sz.sized, b, cap, reserved);
    return;
  }
}

export function planIteration(s: SchedulerState, c: SchedulerConfig, cost: CostModel): IterationPlan {
  const ftAllowed = s.finetuneAllowed && c.policy !== 'inference-only';
  if (c.policy === 'sync' && ftAllowed) {
    const sync = planSync(s, c, cost);
    if (sync) return sync;
  }
  const b = new PlanBuilder(cost);
  const cap: Capacity = { ms: c.budgetMs, tokens: s.maxTokens, blocks: s.freeBlocks, slots: s.maxSeqs - s.running.length, bytes: s.finetuneArenaBytes };
  const reserved = new Map<number, number>();
  const running = planRunning(s, b, cap, reserved);
  // Nothing planned yet: keep the inference intercept (the plan will most likely hold inference rows).
  cap.ms = c.budgetMs - b.ms - (b.empty ? cost.interceptFor(true) : 0);

  // Step 2: candidates. Waiting sequences are admitted only when nothing was preempted.
  const candidates: Candidate[] = running.filter((r) => !isDecode(r) && r.length > r.computed).map((r) => ({ kind: 'prefill', r, waiting: false, priority: prefillPriority(r, s.now, c), tier: 0 }));
  let nextWaiting = 0;
  const waitingHead = (): Candidate | null => (b.preempted.length === 0 && nextWaiting < s.waiting.length ? { kind: 'prefill', r: s.waiting[nextWaiting], waiting: true, priority: prefillPriority(s.waiting[nextWaiting], s.now, c), tier: 1 } : null);
  const head = waitingHead();
  if (head) candidates.push(head);
  const job = ftAllowed ? pickJob(s.finetune, s.now, c, c.policy === 'periodic') : null;
  // Beside inference rows only with a measured cost (see SchedulerConfig.minFinetuneSamples).
  const ftBeside = cost.finetuneSamples >= c.minFinetuneSamples;
  const inferenceWork = b.entries.length > 0 || candidates.length > 0;
  // Beside inference rows fine-tuning takes at most its share of the time left (SchedulerConfig.finetuneShare),
  // and beside decodes at most decodeStretch of the decodes' own time (the TBT it adds to every chat).
  // Work that has waited finetuneStarveMs without a unit is no longer held to the stretch.
  const stretch = (s.finetuneWaitMs ?? 0) >= c.finetuneStarveMs ? Infinity : c.decodeStretch;
  const decodeMs = b.ms;
  const maxMs = inferenceWork ? Math.min(c.finetuneShare * cap.ms, b.entries.length > 0 ? stretch * decodeMs : Infinity) : Infinity;
  if (job && (ftBeside || !inferenceWork)) candidates.push({ kind: 'finetune', j: job, priority: c.policy === 'periodic' ? -Infinity : finetunePriority(job, s.now, c), tier: 1, maxMs });

  while (candidates.length > 0) {
    let best = -1;
    let bestScore = -Infinity;
    let bestSize: { n: number; sized: Sized } | null = null;
    candidates.forEach((cand, i) => {
      const floor = b.entries.some((e) => e.kind === 'prefill') ? 0 : c.minPrefillTokens;
      const sz = size(cand, cap, cost, reserved, b.batch, floor);
      if (sz.n === 0) return;
      const memFit = Math.max(fill(sz.sized.blocks, cap.blocks), fill(sz.sized.tokens, cap.tokens), fill(sz.sized.bytes, cap.bytes));
      const score = cand.priority + c.lambdaMemory * memFit + c.lambdaLatency * fill(sz.sized.ms, cap.ms);
      if (best < 0 || cand.tier < candidates[best].tier || (cand.tier === candidates[best].tier && score > bestScore)) {
        best = i;
        bestScore = score;
        bestSize = sz;
      }
    });
    if (best < 0) {
      // Step 3: nothing fits the time left. With an empty plan, the top item that can make
      // progress runs alone at up to one budget's worth (at least its smallest piece).
      if (b.empty) forceTop(candidates, cap, b, cost, c.budgetMs - cost.interceptFor(true), reserved);
      break;
    }
    const cand = candidates[best];
    const sz = bestSize!;
    take(cand, sz.n, sz.sized, b, cap, reserved);
    candidates.splice(best, 1);
    if (cand.kind === 'prefill' && cand.waiting) {
      nextWaiting++;
      const next = waitingHead();
      if (next) candidates.push(next);
    }
  }
  return b.build(c.budgetMs);
}
