/**
 * The KTO training loop over unpaired thumbs (one completion + a label each), with held-out
 * evaluation — the unpaired sibling of train-loop.ts's trainDpo, on the same trainers
 * (DpoTrainer on the GPU, ReferenceTrainer on the CPU implement KtoLoopTrainer).
 *
 *   trainKto      validate the examples (typed error for malformed ones, a named, counted skip for
 *                 ones longer than maxTokens), give each one its FIXED mismatched partner
 *                 (kto.ts ktoPartners: TRL's KL rotation, seeded) — its KL sequence is the
 *                 example's prompt followed by the partner's completion, cut to fit maxTokens —
 *                 compute both sequences' reference log-probs ONCE, then optimizer steps over a
 *                 seeded shuffle (batchSize examples per step; z0 = the step's examples' KL
 *                 sequences), logging TRL's KTO metrics per step.
 *   evaluateKto   forward only: the held-out loss and metrics with z0 over all held-out KL
 *                 sequences, and REWARD ACCURACY over every (desirable, undesirable) couple of
 *                 held-out examples that share a prompt: the share whose desirable reward is above
 *                 the undesirable one, a tie counted half (so exactly 0.5 at init, where B = 0
 *                 makes every reward 0); the strict share and the tie count are reported too.
 */
import { mulberry32 } from '../util/prng.ts';
import { ktoBatch, ktoPartners, type KtoMetrics } from './kto.ts';
import type { KtoLogprobs, TokenKto } from './reference.ts';
import { trainingOrder, TrainLoopError, type SkippedPair } from './train-loop.ts';

/** One KTO step's log line (TRL's names; grad_norm and learning_rate as HF's Trainer logs them). */
export interface KtoStepMetrics extends KtoMetrics {
  loss: number;
  grad_norm: number;
  learning_rate: number;
  skipped: boolean;
  skipped_steps: number;
  step: number;
}

/** What the KTO loop needs of a trainer (DpoTrainer and ReferenceTrainer have all of it). */
export interface KtoLoopTrainer {
  readonly options: { readonly maxTokens: number; readonly beta: number; readonly desirableWeight?: number; readonly undesirableWeight?: number };
  readonly weights: { readonly config: { readonly vocabSize: number } };
  runKtoStep(example: TokenKto, ref: KtoLogprobs): Promise<KtoStepMetrics>;
  runKtoBatch(examples: readonly TokenKto[], refs: readonly KtoLogprobs[]): Promise<KtoStepMetrics>;
  ktoLogprobs(example: TokenKto, adapter: boolean): Promise<KtoLogprobs>;
  ktoReferenceLogprobs(example: TokenKto): Promise<KtoLogprobs>;
}

/** An unpaired example as token ids, with a name for messages (e.g. "thumbs.jsonl line 3"). */
export interface NamedThumb {
  name?: string;
  prompt: number[];
  completion: number[];
  label: boolean;
}

const nameOf = (list: string, e: NamedThumb, i: number) => e.name ?? `${list}[${i}]`;

/** Split examples into usable ones and named skips (prompt + completion > maxTokens); malformed ones throw. */
export function checkThumbs(list: string, examples: readonly NamedThumb[], maxTokens: number, vocabSize: number): { ok: NamedThumb[]; skipped: SkippedPair[] } {
  if (!Array.isArray(examples)) throw new TrainLoopError(list, 'must be an array of examples {prompt, completion, label}');
  const ok: NamedThumb[] = [];
  const skipped: SkippedPair[] = [];
  examples.forEach((e, i) => {
    if (!e || typeof e !== 'object') throw new TrainLoopError(`${list}[${i}]`, 'must be an example {prompt, completion, label} of token ids');
    const name = nameOf(list, e, i);
    for (const part of ['prompt', 'completion'] as const) {
      const ids = e[part];
      if (!Array.isArray(ids) || ids.length === 0) throw new TrainLoopError(`${name}: ${part}`, 'must be a non-empty array of token ids');
      const bad = ids.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= vocabSize);
      if (bad >= 0) throw new TrainLoopError(`${name}: ${part}[${bad}]`, `= ${ids[bad]} is not a token id < vocab ${vocabSize}`);
    }
    if (typeof e.label !== 'boolean') throw new TrainLoopError(`${name}: label`, `= ${String(e.label)}; it must be true (desirable) or false (undesirable)`);
    const T = e.prompt.length + e.completion.length;
    if (T > maxTokens) skipped.push({ name, index: i, reason: `prompt + completion = ${T} tokens exceeds maxTokens = ${maxTokens}` });
    else ok.push(e);
  });
  return { ok, skipped };
}

/**
 * Each example with its KL sequence's completion: the partner's completion (ktoPartners), cut to
 * the tokens that fit after this prompt within maxTokens (at least 1 token always fits: the example
 * itself fits and has a completion).
 */
export function withPartners(examples: readonly NamedThumb[], maxTokens: number, seed: number): TokenKto[] {
  const partner = ktoPartners(examples.length, mulberry32((seed ^ 0x6b746f) >>> 0));
  return examples.map((e, i) => ({ prompt: e.prompt, completion: e.completion, label: e.label, kl: examples[partner[i]].completion.slice(0, maxTokens - e.prompt.length) }));
}

export interface KtoEvalMetrics extends KtoMetrics {
  loss: number;
  examples: number;
  /** (desirable, undesirable) couples of held-out examples with the same prompt. */
  reward_pairs: number;
  /** Couples whose two rewards are exactly equal (all at init). */
  reward_ties: number;
  /** (wins + ties / 2) / couples; null when no prompt has both labels. */
  reward_accuracy: number | null;
  /** wins / couples (TRL-style strict); null when no couple. */
  reward_accuracy_strict: number | null;
}

const promptKey = (ids: readonly number[]) => ids.join(',');

/** Held-out KTO metrics of the current adapter (see the file comment); refs cached in `refCache`. */
export async function evaluateKto(trainer: KtoLoopTrainer, examples: readonly TokenKto[], refCache: Map<TokenKto, KtoLogprobs> = new Map()): Promise<KtoEvalMetrics> {
  if (examples.length === 0) throw new TrainLoopError('evalExamples', 'is empty; evaluation needs at least one example');
  for (const e of examples) if (!refCache.has(e)) refCache.set(e, await trainer.ktoReferenceLogprobs(e));
  const pol: KtoLogprobs[] = [];
  for (const e of examples) pol.push(await trainer.ktoLogprobs(e, true));
  const refs = examples.map((e) => refCache.get(e)!);
  const res = ktoBatch(
    examples.map((e, i) => ({ policy: pol[i].completion, ref: refs[i].completion, label: e.label })),
    examples.map((_, i) => ({ policy: pol[i].kl, ref: refs[i].kl })),
    trainer.options,
  );
  const byPrompt = new Map<string, { up: number[]; down: number[] }>();
  examples.forEach((e, i) => {
    const k = promptKey(e.prompt);
    const g = byPrompt.get(k) ?? { up: [], down: [] };
    (e.label ? g.up : g.down).push(pol[i].completion - refs[i].completion);
    byPrompt.set(k, g);
  });
  let couples = 0, wins = 0, ties = 0;
  for (const g of byPrompt.values()) {
    for (const u of g.up) {
      for (const d of g.down) {
        couples++;
        if (u === d) ties++;
        else if (u > d) wins++;
      }
    }
  }
  return {
    loss: res.loss,
    ...res.metrics,
    examples: examples.length,
    reward_pairs: couples,
    reward_ties: ties,
    reward_accuracy: couples === 0 ? null : (wins + ties / 2) / couples,
    reward_accuracy_strict: couples === 0 ? null : wins / couples,
  };
}

export interface TrainKtoOptions {
  trainer: KtoLoopTrainer;
  examples: readonly NamedThumb[];
  evalExamples?: readonly NamedThumb[];
  epochs?: number;
  steps?: number;
  /** Examples per optimizer step (mean loss; z0 over their KL sequences). Default 1. */
  batchSize?: number;
  seed?: number;
  onMetrics?: (m: KtoStepMetrics, examples: readonly TokenKto[]) => void;
  onReady?: (info: { examples: number; evalExamples: number; before?: KtoEvalMetrics }) => void;
  /** After each `evalEvery` steps: held-out metrics (the curve). */
  evalEvery?: number;
  onEval?: (step: number, m: KtoEvalMetrics) => void;
}

export interface TrainKtoResult {
  steps: KtoStepMetrics[];
  before?: KtoEvalMetrics;
  after?: KtoEvalMetrics;
  skippedExamples: SkippedPair[];
  nonFiniteSteps: number;
  trainMs: number;
}

/** Train on unpaired `examples` with KTO (see the file comment). */
export async function trainKto(o: TrainKtoOptions): Promise<TrainKtoResult> {
  const { trainer } = o;
  const max = trainer.options.maxTokens;
  const V = trainer.weights.config.vocabSize;
  const seed = o.seed ?? 0;
  const train = checkThumbs('examples', o.examples, max, V);
  const held = o.evalExamples ? checkThumbs('evalExamples', o.evalExamples, max, V) : undefined;
  const batch = o.batchSize ?? 1;
  if (!(Number.isInteger(batch) && batch >= 1)) throw new TrainLoopError('batchSize', `= ${batch}; it must be an integer >= 1`);
  if (o.steps !== undefined && o.epochs !== undefined) throw new TrainLoopError('steps', 'and epochs exclude each other');
  const epochs = o.epochs ?? 1;
  if (o.steps === undefined && !(Number.isInteger(epochs) && epochs >= 1)) throw new TrainLoopError('epochs', `= ${epochs}; it must be an integer >= 1`);
  if (train.ok.length < 2) throw new TrainLoopError('examples', `has ${train.ok.length} usable examples; KTO needs at least 2 (the KL sequences pair an example's prompt with another's completion)`);
  const examples = withPartners(train.ok, max, seed);
  const evalSet = held && held.ok.length >= 2 ? withPartners(held.ok, max, seed + 1) : [];
  if (held && held.ok.length === 1) throw new TrainLoopError('evalExamples', 'has 1 usable example; held-out KTO needs at least 2');
  const refCache = new Map<TokenKto, KtoLogprobs>();
  for (const e of examples) refCache.set(e, await trainer.ktoReferenceLogprobs(e));
  const visits = o.steps !== undefined ? o.steps * batch : epochs * examples.length;
  const order = trainingOrder(examples.length, visits, seed);
  const before = evalSet.length > 0 ? await evaluateKto(trainer, evalSet, refCache) : undefined;
  o.onReady?.({ examples: examples.length, evalExamples: evalSet.length, before });
  const steps: KtoStepMetrics[] = [];
  let nonFinite = 0;
  let trainMs = 0;
  for (let i = 0; i < order.length; i += batch) {
    const t0 = performance.now();
    const list = order.slice(i, i + batch).map((j) => examples[j]);
    const refs = list.map((e) => refCache.get(e)!);
    const m = list.length === 1 ? await trainer.runKtoStep(list[0], refs[0]) : await trainer.runKtoBatch(list, refs);
    trainMs += performance.now() - t0;
    if (m.skipped || !Number.isFinite(m.grad_norm)) nonFinite++;
    steps.push(m);
    o.onMetrics?.(m, list);
    if (o.evalEvery && evalSet.length > 0 && steps.length % o.evalEvery === 0 && i + batch < order.length) o.onEval?.(steps.length, await evaluateKto(trainer, evalSet, refCache));
  }
  const after = evalSet.length > 0 ? await evaluateKto(trainer, evalSet, refCache) : undefined;
  return { steps, before, after, skippedExamples: [...train.skipped, ...(held?.skipped ?? [])], nonFiniteSteps: nonFinite, trainMs };
}
