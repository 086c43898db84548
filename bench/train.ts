/**
 * `mace train`: DPO training of a LoRA adapter on a model, end to end, in either runtime (it takes a
 * GpuContext and a ModelSource, like bench/generate.ts):
 *
 * 1. load the model; get pairs: a preference file's text (formats.ts: TRL JSONL and the shared
 *    formats, strict: a bad record fails naming file and line), or, with `stories`, pairs the model
 *    makes itself: its sampled continuations of story prompts judged by DEFAULT_STORY_RULE
 *    (makeStoryPairs; held-out prompts by hash);
 * 2. tokenize (train-data.ts), size the trainer's arena for the longest pair, create a PEFT-style
 *    LoRA (B = 0) and train with trainDpo: per-step TRL metrics, held-out metrics before/after;
 * 3. with `stories`, greedy (and sampled) continuations of the held-out prompts before and after
 *    training, served by the engine with the trained adapter, scored by the rule;
 * 4. optionally the PEFT files (adapter_model.safetensors as base64, adapter_config.json).
 */
import { describeGpu, type GpuContext } from '../src/gpu/device.ts';
import type { WeightFormat } from '../src/kernels/weights.ts';
import { createEngine, type Engine } from '../src/engine/openai.ts';
import { createAdapter, readAdapter } from '../src/learn/adapter.ts';
import { parsePreferenceFile } from '../src/learn/formats.ts';
import { exportPeft } from '../src/learn/peft.ts';
import type { LrSchedule } from '../src/learn/schedule.ts';
import { DEFAULT_STORY_RULE, makeStoryPairs, meanRuleScore, type StoryPairs } from '../src/learn/stories-prefs.ts';
import { checkPairs, trainDpo, type EvalMetrics, type NamedPair, type SkippedPair } from '../src/learn/train-loop.ts';
import { DpoTrainer, TOKEN_BUCKET, type StepMetrics } from '../src/learn/trainer.ts';
import { loadModel, type LoadedModel } from '../src/model/loader.ts';
import type { ModelSource } from '../src/model/source.ts';
import { LINEAR_MODULES } from '../src/model/tensors.ts';
import { tokenizeImported, tokenizePair, toBase64 } from './train-data.ts';

/** Story openings for `stories` (stories260K's TinyStories domain); a quarter are held out by hash. */
export const STORY_PROMPTS = [
  'Once upon a time',
  'One day, a little girl named Lily',
  'Tom went to the park',
  'There was a big',
  'The little bird',
  'Sam and his mom',
  'Once upon a time, there was a',
  'One day, a boy',
  'Lily had a red ball',
  'The sun was shining',
  'Ben saw a dog',
  'Mia and her friend',
  'In a small house',
  'The cat was sad',
  'Max liked to eat',
  'A little girl found',
];

/** Continuations generated at once (the engine batches them: far fewer decode iterations). */
const STORY_BATCH = 32;

export interface TextFile {
  file: string;
  content: string;
}

export interface StoriesOptions {
  /** Default STORY_PROMPTS. */
  prompts?: string[];
  /** Continuations sampled per prompt (default 16). */
  samplesPerPrompt?: number;
  /** Tokens per continuation (default 48). */
  tokens?: number;
  /** Sampled continuations per held-out prompt in the before/after check (default 8; 0: none). */
  checkSamples?: number;
}

export interface TrainRequest {
  dtype: WeightFormat;
  /** Training pairs from a file, or `stories`. */
  pairs?: TextFile;
  eval?: TextFile;
  stories?: StoriesOptions;
  steps?: number;
  epochs?: number;
  /** Defaults: lr 5e-4, beta 0.1, rank 8, alpha 2·rank, seed 0, warmup 10% of the steps. */
  lr?: number;
  beta?: number;
  rank?: number;
  alpha?: number;
  seed?: number;
  warmup?: number;
  /** Cap on prompt + response tokens (default 256); longer pairs are skipped and named. */
  maxTokens?: number;
  /** Return the PEFT files. */
  exportPeft?: boolean;
}

export interface Continuation {
  prompt: string;
  before: string;
  after: string;
  scoreBefore: number;
  scoreAfter: number;
}

export interface StoriesReport {
  rule: { name: string; description: string };
  trainPrompts: string[];
  heldOutPrompts: string[];
  totals: StoryPairs['totals'];
  perPrompt: StoryPairs['perPrompt'];
  generateMs: number;
  greedy: Continuation[];
  greedyMeanBefore: number;
  greedyMeanAfter: number;
  /** Share of sampled held-out continuations the rule prefers (temperature 1), before/after. */
  sampled: { perPrompt: number; meanBefore: number; meanAfter: number } | null;
}

/** What `mace train --json` prints (less `peft`, which the CLI writes to --out). */
export interface TrainResult {
  device: string;
  model: string;
  dtype: WeightFormat;
  hyper: { lr: number; beta: number; rank: number; alpha: number; seed: number; steps: number; warmup: number; maxTokens: number; schedule: string };
  pairs: { train: number; eval: number; skipped: SkippedPair[] };
  steps: StepMetrics[];
  before?: EvalMetrics;
  after?: EvalMetrics;
  nonFiniteSteps: number;
  timing: { loadMs: number; trainMs: number; msPerStep: number; tokensPerStep: number; tokensPerSec: number };
  arenaBytes: number;
  adapterParams: number;
  stories?: StoriesReport;
  peft?: { weightsBase64: string; config: string };
}

export interface TrainHooks {
  onLog?: (message: string) => void;
  onStep?: (m: StepMetrics) => void;
}

/** A typed error for a request the trainer cannot run (no pairs, bad option). */
export class TrainRequestError extends Error {
  readonly code = 'bad-train-request';
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super(`${field} ${detail}`);
    this.name = 'TrainRequestError';
  }
}

const mean = (xs: number[]) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);

function readPairs(model: LoadedModel, f: TextFile): NamedPair[] {
  const parsed = parsePreferenceFile(f.file, f.content, { strict: true });
  if (parsed.pairs.length === 0) throw new TrainRequestError(f.file, `holds no usable preference pairs (${parsed.records} records)`);
  const eos = model.generation.eosTokenIds[0] ?? null;
  return tokenizeImported(model.tokenizer, parsed.pairs, { eos });
}

/** The engine that samples pairs and serves the before/after continuations (one adapter slot). */
function storyEngine(ctx: GpuContext, model: LoadedModel, rank: number): Engine {
  return createEngine(ctx, model, { maxSeqs: STORY_BATCH, maxTokensPerIteration: 512, kvBudgetBytes: 16 * 2 ** 20, modelName: 'train', adapters: { slots: 1, maxRank: rank } });
}

async function complete(engine: Engine, prompt: string, tokens: number, temperature: number, seed: number, adapter?: string): Promise<string> {
  const r = await engine.completions.create({ prompt, max_tokens: tokens, temperature, seed, adapter: adapter ?? null });
  return r.choices[0].text;
}

interface StoryData {
  pairs: StoryPairs;
  train: NamedPair[];
  heldOut: NamedPair[];
  generateMs: number;
}

async function storyPairs(engine: Engine, model: LoadedModel, o: StoriesOptions, seed: number, log: (m: string) => void): Promise<StoryData> {
  const tokens = o.tokens ?? 48;
  const t0 = performance.now();
  const pairs = await makeStoryPairs({ complete: (p, s) => complete(engine, p, tokens, 1, s), prompts: o.prompts ?? STORY_PROMPTS, samplesPerPrompt: o.samplesPerPrompt ?? 16, rule: DEFAULT_STORY_RULE, seed: seed * 100_000, concurrency: STORY_BATCH });
  const generateMs = performance.now() - t0;
  const t = pairs.totals;
  log(`stories: ${t.samples} continuations in ${(generateMs / 1000).toFixed(1)} s, ${t.preferred} preferred / ${t.dispreferred} not by '${pairs.rule.name}'; ${pairs.train.length} train pairs (${pairs.trainPrompts.length} prompts), ${pairs.heldOut.length} held-out pairs (${pairs.heldOutPrompts.length} prompts)`);
  // The model's own continuations: no EOS (they were cut at `tokens`, not ended).
  const tok = (list: typeof pairs.train, what: string) => list.map((p, i) => tokenizePair(model.tokenizer, p, `${what}[${i}] (${JSON.stringify(p.prompt)}, seeds ${p.chosenSeed}/${p.rejectedSeed})`, { eos: null }));
  return { pairs, train: tok(pairs.train, 'stories.train'), heldOut: tok(pairs.heldOut, 'stories.heldOut'), generateMs };
}

/** Greedy continuations (and sampled ones) of the held-out prompts with or without the adapter. */
async function heldOutTexts(engine: Engine, prompts: string[], o: StoriesOptions, adapter?: string): Promise<{ greedy: string[]; sampled: string[] }> {
  const tokens = o.tokens ?? 48;
  const n = o.checkSamples ?? 8;
  const greedy = await Promise.all(prompts.map((p) => complete(engine, p, tokens, 0, 0, adapter)));
  const sampled = await Promise.all(prompts.flatMap((p, i) => Array.from({ length: n }, (_, s) => complete(engine, p, tokens, 1, 900_000 + i * 1000 + s, adapter))));
  return { greedy, sampled };
}

function schedule(r: TrainRequest, steps: number): { s: LrSchedule; warmup: number } {
  const warmup = r.warmup ?? Math.round(0.1 * steps);
  return { s: { kind: 'linear', baseLr: r.lr ?? 5e-4, warmupSteps: warmup, totalSteps: steps }, warmup };
}

/** The arena's token length: the longest usable pair, bucketed, within the cap. */
function arenaTokens(pairs: readonly NamedPair[], cap: number): number {
  const longest = Math.max(2, ...pairs.map((p) => p.prompt.length + Math.max(p.chosen.length, p.rejected.length)).filter((n) => n <= cap));
  return Math.min(cap, Math.ceil(longest / TOKEN_BUCKET) * TOKEN_BUCKET);
}

export async function runTrain(ctx: GpuContext, source: ModelSource, req: TrainRequest, hooks: TrainHooks = {}): Promise<TrainResult> {
  const log = hooks.onLog ?? (() => {});
  if (!req.pairs && !req.stories) throw new TrainRequestError('pairs', 'are missing: give a preference file or use stories');
  const rank = req.rank ?? 8;
  const alpha = req.alpha ?? 2 * rank;
  const beta = req.beta ?? 0.1;
  const seed = req.seed ?? 0;
  const cap = req.maxTokens ?? 256;
  const t0 = performance.now();
  const model = await loadModel(ctx, source, { format: req.dtype });
  const loadMs = performance.now() - t0;
  log(`loaded ${source.description} as ${req.dtype} in ${loadMs.toFixed(0)} ms`);
  let engine: Engine | null = null;
  const cleanup: (() => void)[] = [() => model.weights.destroy()];
  try {
    let train: NamedPair[];
    let evalPairs: NamedPair[] | undefined;
    let stories: StoryData | undefined;
    if (req.stories) {
      engine = storyEngine(ctx, model, rank);
      cleanup.unshift(() => engine!.destroy());
      stories = await storyPairs(engine, model, req.stories, seed, log);
      train = stories.train;
      evalPairs = req.eval ? readPairs(model, req.eval) : stories.heldOut;
    } else {
      train = readPairs(model, req.pairs!);
      evalPairs = req.eval ? readPairs(model, req.eval) : undefined;
    }
    const maxTokens = arenaTokens([...train, ...(evalPairs ?? [])], cap);
    const usable = checkPairs('pairs', train, maxTokens, model.config.vocabSize).ok.length;
    if (usable === 0) throw new TrainRequestError('pairs', `none of the ${train.length} pairs fits ${cap} tokens (prompt + response)`);
    const steps = req.steps ?? (req.epochs ?? 1) * usable;
    const { s, warmup } = schedule(req, steps);
    const adapter = await createAdapter(ctx, model.config, { r: rank, loraAlpha: alpha, useRslora: false, targetModules: [...LINEAR_MODULES], baseModelNameOrPath: source.description }, seed + 1);
    cleanup.unshift(() => adapter.destroy());
    const trainer = new DpoTrainer(ctx, model.weights, adapter, { maxTokens, beta, schedule: s });
    cleanup.unshift(() => trainer.destroy());
    log(`training ${usable} pairs for ${steps} steps (rank ${rank}, alpha ${alpha}, lr ${s.baseLr}, beta ${beta}, warmup ${warmup}, arena ${maxTokens} tokens = ${(trainer.arena.bytes / 2 ** 20).toFixed(1)} MiB)`);

    const before = stories && engine ? await heldOutTexts(engine, stories.pairs.heldOutPrompts, req.stories!) : undefined;
    const tokensPerStep: number[] = [];
    const result = await trainDpo({
      trainer,
      pairs: train,
      evalPairs,
      steps,
      seed,
      onReady: (i) => i.before && log(`held-out before: accuracy ${i.before['rewards/accuracies'].toFixed(3)} (ties ${i.before.ties}/${i.before.pairs}), margin ${i.before['rewards/margins'].toFixed(4)}`),
      onMetrics: (m, pair) => {
        tokensPerStep.push(2 * pair.prompt.length + pair.chosen.length + pair.rejected.length);
        hooks.onStep?.(m);
      },
    });
    const out: TrainResult = {
      device: describeGpu(ctx),
      model: source.description,
      dtype: req.dtype,
      hyper: { lr: s.baseLr, beta, rank, alpha, seed, steps, warmup, maxTokens, schedule: s.kind },
      pairs: { train: usable, eval: result.before?.pairs ?? 0, skipped: result.skippedPairs },
      steps: result.steps,
      before: result.before,
      after: result.after,
      nonFiniteSteps: result.nonFiniteSteps,
      timing: { loadMs, trainMs: result.trainMs, msPerStep: result.trainMs / Math.max(1, steps), tokensPerStep: mean(tokensPerStep), tokensPerSec: (tokensPerStep.reduce((a, b) => a + b, 0) * 1000) / Math.max(1e-9, result.trainMs) },
      arenaBytes: trainer.arena.bytes,
      adapterParams: adapter.layout.slices.reduce((n, sl) => n + rank * (sl.inDim + sl.outDim), 0),
    };
    const host = (req.exportPeft || stories) ? await readAdapter(ctx, adapter) : undefined;
    if (stories && engine && before) {
      await engine.adapters.load('trained', host!);
      const after = await heldOutTexts(engine, stories.pairs.heldOutPrompts, req.stories!, 'trained');
      out.stories = storiesReport(stories, before, after, req.stories!);
    }
    if (req.exportPeft) {
      const files = exportPeft(model.config, host!);
      out.peft = { weightsBase64: toBase64(files.weights), config: files.config };
    }
    return out;
  } finally {
    for (const f of cleanup) f();
  }
}

function storiesReport(d: StoryData, before: { greedy: string[]; sampled: string[] }, after: { greedy: string[]; sampled: string[] }, o: StoriesOptions): StoriesReport {
  const score = (t: string) => DEFAULT_STORY_RULE.score(t);
  const greedy = d.pairs.heldOutPrompts.map((prompt, i) => ({ prompt, before: before.greedy[i], after: after.greedy[i], scoreBefore: score(before.greedy[i]), scoreAfter: score(after.greedy[i]) }));
  const n = o.checkSamples ?? 8;
  return {
    rule: d.pairs.rule,
    trainPrompts: d.pairs.trainPrompts,
    heldOutPrompts: d.pairs.heldOutPrompts,
    totals: d.pairs.totals,
    perPrompt: d.pairs.perPrompt,
    generateMs: d.generateMs,
    greedy,
    greedyMeanBefore: meanRuleScore(before.greedy),
    greedyMeanAfter: meanRuleScore(after.greedy),
    sampled: n > 0 ? { perPrompt: n, meanBefore: meanRuleScore(before.sampled), meanAfter: meanRuleScore(after.sampled) } : null,
  };
}
