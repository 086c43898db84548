/**
 * The DPO training loop over many preference pairs, with held-out evaluation.
 *
 *   trainDpo      validate the pairs (typed error for malformed ones, a named, counted skip for
 *                 ones longer than the trainer's maxTokens), compute each pair's reference
 *                 log-probs ONCE (adapter off) into a cache, then run optimizer steps over a
 *                 deterministic shuffle (a new permutation per epoch, seeded), logging TRL's
 *                 metrics per step; non-finite steps are counted (the trainer skips them).
 *   evaluateDpo   forward only (no update): the policy's log-probs of held-out pairs against the
 *                 cached reference → TRL's metrics averaged over the pairs, plus the tie count.
 *
 * About accuracy at init: PEFT's B = 0 makes the policy equal the reference, so every reward is
 * exactly 0 and TRL's strict `chosen > rejected` counts 0 of n. `rewards/accuracies` here is TRL's
 * strict count; `ties` says how many pairs had equal rewards, and `accuracy_ties_half` counts a tie
 * as half right (0.5 at init: the "chance" figure).
 *
 * The trainer is taken through the small LoopTrainer interface (DpoTrainer implements it), so the
 * loop's bookkeeping is testable on the CPU.
 */
import { mulberry32 } from '../util/prng.ts';
import { dpoBatch, type DpoMetrics } from './dpo.ts';
import { LearnError } from './errors.ts';
import type { TokenPair } from './reference.ts';
import type { PairLogprobs, StepMetrics } from './trainer.ts';

/** What the loop needs of a trainer (DpoTrainer has all of it). */
export interface LoopTrainer {
  readonly options: { readonly maxTokens: number; readonly beta: number };
  readonly weights: { readonly config: { readonly vocabSize: number } };
  runStep(pair: TokenPair, ref: PairLogprobs): Promise<StepMetrics>;
  /** One optimizer step on the mean loss of several pairs. */
  runBatch(pairs: readonly TokenPair[], refs: readonly PairLogprobs[]): Promise<StepMetrics>;
  logprobs(pair: TokenPair, adapter: boolean): Promise<PairLogprobs>;
  referenceLogprobs(pair: TokenPair): Promise<PairLogprobs>;
}

/** A token pair with a name for messages (e.g. "prefs.jsonl line 3" or "train[4]"). */
export interface NamedPair extends TokenPair {
  name?: string;
}

/** A malformed pair or loop option: names the pair and field. */
export class TrainLoopError extends LearnError {
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super('bad-train-loop-input', `${field} ${detail}`);
  }
}

export interface SkippedPair {
  name: string;
  /** Index in the list given. */
  index: number;
  reason: string;
}

/** Reference log-probs per pair (keyed by the pair object, so equal token lists in two pairs are two entries). */
export type RefCache = Map<TokenPair, PairLogprobs>;

const label = (list: string, p: NamedPair, i: number) => p.name ?? `${list}[${i}]`;

/**
 * Split pairs into those the trainer can take and named skips (prompt + response > maxTokens).
 * Malformed pairs (a missing or empty part, an id that is not an integer in [0, vocab)) throw.
 */
export function checkPairs(list: string, pairs: readonly NamedPair[], maxTokens: number, vocabSize: number): { ok: NamedPair[]; skipped: SkippedPair[] } {
  if (!Array.isArray(pairs)) throw new TrainLoopError(list, 'must be an array of token pairs');
  const ok: NamedPair[] = [];
  const skipped: SkippedPair[] = [];
  pairs.forEach((p, i) => {
    const name = p && typeof p === 'object' ? label(list, p, i) : `${list}[${i}]`;
    if (!p || typeof p !== 'object') throw new TrainLoopError(name, 'must be a pair {prompt, chosen, rejected} of token ids');
    for (const part of ['prompt', 'chosen', 'rejected'] as const) {
      const ids = p[part];
      if (!Array.isArray(ids) || ids.length === 0) throw new TrainLoopError(`${name}: ${part}`, 'must be a non-empty array of token ids');
      const bad = ids.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= vocabSize);
      if (bad >= 0) throw new TrainLoopError(`${name}: ${part}[${bad}]`, `= ${ids[bad]} is not a token id < vocab ${vocabSize}`);
    }
    const longest = p.prompt.length + Math.max(p.chosen.length, p.rejected.length);
    if (longest > maxTokens) skipped.push({ name, index: i, reason: `prompt + response = ${longest} tokens exceeds maxTokens = ${maxTokens}` });
    else ok.push(p);
  });
  return { ok, skipped };
}

/** Indices 0..n-1 in a seeded Fisher–Yates order. */
export function shuffled(n: number, rand: () => number): number[] {
  const out = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/**
 * The order pairs are trained in: `steps` indices, a fresh seeded permutation of 0..n-1 per pass
 * (so every pair is seen once per epoch, and the same seed gives the same order).
 */
export function trainingOrder(n: number, steps: number, seed: number): number[] {
  if (!(Number.isInteger(n) && n > 0)) throw new TrainLoopError('pairs', `has ${n} usable pairs; training needs at least one`);
  if (!(Number.isInteger(steps) && steps >= 0)) throw new TrainLoopError('steps', `= ${steps}; it must be an integer >= 0`);
  const rand = mulberry32(seed >>> 0);
  const order: number[] = [];
  while (order.length < steps) order.push(...shuffled(n, rand));
  return order.slice(0, steps);
}

/** The reference log-probs of each pair, computed once (adapter off) and kept in `cache`. */
export async function cacheReference(trainer: LoopTrainer, pairs: readonly TokenPair[], cache: RefCache = new Map()): Promise<RefCache> {
  for (const p of pairs) if (!cache.has(p)) cache.set(p, await trainer.referenceLogprobs(p));
  return cache;
}

export interface EvalMetrics extends DpoMetrics {
  loss: number;
  /** Pairs evaluated. */
  pairs: number;
  /** Pairs whose two rewards are exactly equal (all of them at init, B = 0). */
  ties: number;
  /** (wins + ties / 2) / pairs: 0.5 at init. */
  accuracy_ties_half: number;
}

/** Mean DPO metrics of the current adapter over `pairs` (forward only, nothing updated). */
export async function evaluateDpo(trainer: LoopTrainer, pairs: readonly TokenPair[], refCache: RefCache = new Map()): Promise<EvalMetrics> {
  if (pairs.length === 0) throw new TrainLoopError('evalPairs', 'is empty; evaluation needs at least one pair');
  await cacheReference(trainer, pairs, refCache);
  const rows = [];
  let ties = 0;
  let wins = 0;
  for (const p of pairs) {
    const ref = refCache.get(p)!;
    const pol = await trainer.logprobs(p, true);
    const rc = pol.chosen - ref.chosen;
    const rr = pol.rejected - ref.rejected;
    if (rc === rr) ties++;
    else if (rc > rr) wins++;
    rows.push({ policyChosen: pol.chosen, policyRejected: pol.rejected, refChosen: ref.chosen, refRejected: ref.rejected });
  }
  const { loss, metrics } = dpoBatch(rows, trainer.options.beta);
  return { loss, ...metrics, pairs: pairs.length, ties, accuracy_ties_half: (wins + ties / 2) / pairs.length };
}

export interface TrainDpoOptions {
  trainer: LoopTrainer;
  pairs: readonly NamedPair[];
  /** Held-out pairs: evaluated before the first and after the last step. */
  evalPairs?: readonly NamedPair[];
  /** Passes over the pairs (default 1 when steps is absent). */
  epochs?: number;
  /** Optimizer steps in all (batchSize pairs each); overrides epochs. */
  steps?: number;
  /** Pairs per optimizer step (mean loss; default 1). */
  batchSize?: number;
  /** Shuffle seed (default 0). */
  seed?: number;
  /** After each optimizer step, with the pairs it trained on. */
  onMetrics?: (m: StepMetrics, pairs: readonly NamedPair[]) => void;
  /** Called once the reference log-probs are cached and evaluation ran, before training. */
  onReady?: (info: { pairs: number; evalPairs: number; before?: EvalMetrics }) => void;
}

export interface TrainDpoResult {
  steps: StepMetrics[];
  before?: EvalMetrics;
  after?: EvalMetrics;
  /** Pairs left out (too long), named. */
  skippedPairs: SkippedPair[];
  /** Steps whose gradient norm was not finite (the adapter was left unchanged). */
  nonFiniteSteps: number;
  /** Reference log-probs of every train and eval pair (reusable). */
  refCache: RefCache;
  /** Milliseconds spent in training steps (not reference or evaluation). */
  trainMs: number;
}

/** Pair visits in all: steps × batch, or epochs × n (the last batch of a run may be short). */
function visitCount(o: TrainDpoOptions, n: number, batch: number): number {
  if (o.steps !== undefined && o.epochs !== undefined) throw new TrainLoopError('steps', 'and epochs exclude each other');
  if (o.steps !== undefined) return o.steps * batch;
  const epochs = o.epochs ?? 1;
  if (!(Number.isInteger(epochs) && epochs >= 1)) throw new TrainLoopError('epochs', `= ${epochs}; it must be an integer >= 1`);
  return epochs * n;
}

/** Optimizer steps of a run: ceil(visits / batch). */
export function optimizerSteps(visits: number, batch: number): number {
  return Math.ceil(visits / batch);
}

function batchSize(o: TrainDpoOptions): number {
  const b = o.batchSize ?? 1;
  if (!(Number.isInteger(b) && b >= 1)) throw new TrainLoopError('batchSize', `= ${b}; it must be an integer >= 1`);
  return b;
}

/** Train on `pairs` (see the file comment). */
export async function trainDpo(o: TrainDpoOptions): Promise<TrainDpoResult> {
  const { trainer } = o;
  const max = trainer.options.maxTokens;
  const V = trainer.weights.config.vocabSize;
  const train = checkPairs('pairs', o.pairs, max, V);
  const held = o.evalPairs ? checkPairs('evalPairs', o.evalPairs, max, V) : undefined;
  const batch = batchSize(o);
  const order = trainingOrder(train.ok.length, visitCount(o, train.ok.length, batch), o.seed ?? 0);
  const refCache = await cacheReference(trainer, train.ok);
  const evalOk = held?.ok ?? [];
  const before = evalOk.length > 0 ? await evaluateDpo(trainer, evalOk, refCache) : undefined;
  o.onReady?.({ pairs: train.ok.length, evalPairs: evalOk.length, before });
  const steps: StepMetrics[] = [];
  let nonFinite = 0;
  const t0 = performance.now();
  for (let i = 0; i < order.length; i += batch) {
    const pairs = order.slice(i, i + batch).map((j) => train.ok[j]);
    const refs = pairs.map((p) => refCache.get(p)!);
    const m = batch === 1 ? await trainer.runStep(pairs[0], refs[0]) : await trainer.runBatch(pairs, refs);
    if (m.skipped || !Number.isFinite(m.grad_norm)) nonFinite++;
    steps.push(m);
    o.onMetrics?.(m, pairs);
  }
  const trainMs = performance.now() - t0;
  const after = evalOk.length > 0 ? await evaluateDpo(trainer, evalOk, refCache) : undefined;
  return { steps, before, after, skippedPairs: [...train.skipped, ...(held?.skipped ?? [])], nonFiniteSteps: nonFinite, refCache, trainMs };
}
