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
import { createAdapter, readAdapter, type AdapterConfig, type HostAdapter } from '../src/learn/adapter.ts';
import { ktoStats, parsePreferenceFile, parseThumbsFile, type KtoStats } from '../src/learn/formats.ts';
import { checkThumbs, trainKto, type KtoEvalMetrics, type KtoLoopTrainer, type KtoStepMetrics, type NamedThumb } from '../src/learn/kto-loop.ts';
import { tokenizeThumb } from '../src/learn/pair-tokens.ts';
import { exportPeft } from '../src/learn/peft.ts';
import type { LrSchedule } from '../src/learn/schedule.ts';
import { DEFAULT_STORY_RULE, makeStoryPairs, makeStoryThumbs, meanRuleScore, type StoryPairs, type StoryThumbs } from '../src/learn/stories-prefs.ts';
import { checkPairs, optimizerSteps, trainDpo, type LoopTrainer, type EvalMetrics, type NamedPair, type SkippedPair } from '../src/learn/train-loop.ts';
import { DpoTrainer, TOKEN_BUCKET, type StepMetrics, type TrainerOptions } from '../src/learn/trainer.ts';
import { loadModel } from '../src/model/loader.ts';
import type { ModelSource } from '../src/model/source.ts';
import type { ChatCompletionMessageParam } from '../src/engine/types.ts';
import type { ModelConfig } from '../src/model/config.ts';
import type { TextTokenizer } from '../src/model/tokenizer.ts';
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
  'Anna wanted a new toy',
  'The dog ran to the',
  'Once upon a time, a little boy named Tim',
  'The girl looked at the sky',
  'Grandma baked a cake',
  'The big red truck',
  'A small frog sat',
  'It was a rainy day',
  'Tom and Sue were',
  'The teddy bear was',
  'One morning, a bunny',
  'Lucy found a shiny',
  'The farmer had a cow',
  'Jack liked to climb',
  'The baby was crying',
  'Emma went to school',
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
  /** Train prompts: dispreferred continuations paired with each preferred one (default 1). */
  rejectedPerChosen?: number;
  /** Sampled continuations per held-out prompt in the before/after check (default 8; 0: none). */
  checkSamples?: number;
  /** Unpaired thumbs instead of pairs: each sample labelled alone by the rule, trained with KTO. */
  thumbs?: boolean;
}

export interface TrainRequest {
  dtype: WeightFormat;
  /** Training pairs from a file, or `stories`. */
  pairs?: TextFile;
  eval?: TextFile;
  /** Unpaired thumbs (TRL KTO JSONL or the KTO demo format), trained with KTO; held-out ones in evalThumbs. */
  thumbs?: TextFile;
  evalThumbs?: TextFile;
  /** KTO's desirable_weight / undesirable_weight (default 1, 1). */
  desirableWeight?: number;
  undesirableWeight?: number;
  /** KTO: held-out metrics every N steps too (the curve; default none). */
  evalEvery?: number;
  /** false: append no EOS to file completions (TRL appends one; wrong for texts that were cut, not ended, e.g. saved stories thumbs). */
  eos?: boolean;
  /** With stories thumbs: return the generated examples as TRL KTO records (to save as JSONL). */
  returnThumbs?: boolean;
  stories?: StoriesOptions;
  /** Optimizer steps; or epochs (passes over the pairs, default 1). */
  steps?: number;
  epochs?: number;
  /** Pairs per optimizer step (default 1). */
  batch?: number;
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
  hyper: { lr: number; beta: number; rank: number; alpha: number; seed: number; steps: number; batch: number; warmup: number; maxTokens: number; schedule: string };
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

/** What `mace train --thumbs` / `--stories --thumbs-from-stories` returns (KTO on unpaired examples). */
export interface KtoTrainResult {
  method: 'kto';
  device: string;
  model: string;
  dtype: WeightFormat;
  hyper: TrainResult['hyper'] & { desirableWeight: number; undesirableWeight: number };
  examples: { train: number; eval: number; skipped: SkippedPair[]; trainStats: KtoStats; evalStats?: KtoStats };
  steps: KtoStepMetrics[];
  before?: KtoEvalMetrics;
  after?: KtoEvalMetrics;
  /** Held-out metrics every evalEvery steps (with before and after: the curve). */
  curve: { step: number; eval: KtoEvalMetrics }[];
  nonFiniteSteps: number;
  timing: TrainResult['timing'];
  arenaBytes: number;
  adapterParams: number;
  stories?: StoriesReport;
  /** returnThumbs: the generated examples, TRL KTO records {prompt, completion, label}. */
  thumbs?: { train: TrlKtoRecord[]; heldOut: TrlKtoRecord[] };
  peft?: { weightsBase64: string; config: string };
}

export interface TrlKtoRecord {
  prompt: string;
  completion: string;
  label: boolean;
}

export interface TrainHooks {
  onLog?: (message: string) => void;
  onStep?: (m: StepMetrics | KtoStepMetrics) => void;
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

/**
 * What runTrain needs of a runtime: the model's files, continuations (pair sampling and the
 * before/after check) and a trainer. gpuTrainBackend: the engine and DpoTrainer on a GPU context;
 * cpuTrainBackend (bench/train-cpu.ts): ReferenceModel sampling and the ReferenceTrainer.
 */
export interface TrainBackend {
  readonly device: string;
  readonly model: string;
  readonly config: ModelConfig;
  readonly tokenizer: TextTokenizer;
  /** EOS appended to imported pairs' responses (TRL's behaviour); null: none. */
  readonly eos: number | null;
  readonly loadMs: number;
  /** A continuation of `prompt`: temperature 0 is greedy; `adapter` applied when given. */
  complete(prompt: string, tokens: number, temperature: number, seed: number, adapter?: HostAdapter): Promise<string>;
  /** Continuations in flight at once when sampling pairs. */
  readonly concurrency: number;
  createTrainer(adapter: AdapterConfig, seed: number, options: TrainerOptions): Promise<BackendTrainer>;
  destroy(): void;
}

export interface BackendTrainer {
  /** DPO on pairs (LoopTrainer) and KTO on unpaired examples (KtoLoopTrainer). */
  readonly trainer: LoopTrainer & KtoLoopTrainer;
  /** Activation memory of a step (GPU arena; 0 on the CPU). */
  readonly arenaBytes: number;
  read(): Promise<HostAdapter>;
  destroy(): void;
}

function readPairs(b: TrainBackend, f: TextFile): NamedPair[] {
  const parsed = parsePreferenceFile(f.file, f.content, { strict: true });
  if (parsed.pairs.length === 0) throw new TrainRequestError(f.file, `holds no usable preference pairs (${parsed.records} records)`);
  return tokenizeImported(b.tokenizer, parsed.pairs, { eos: b.eos });
}

/** The GPU runtime: the model loaded in `dtype`, an engine for continuations (made on first use), DpoTrainer. */
export async function gpuTrainBackend(ctx: GpuContext, source: ModelSource, dtype: WeightFormat, rank: number): Promise<TrainBackend> {
  const t0 = performance.now();
  const model = await loadModel(ctx, source, { format: dtype });
  const loadMs = performance.now() - t0;
  let engine: Engine | null = null;
  let loaded: HostAdapter | null = null;
  const storyEngine = () => (engine ??= createEngine(ctx, model, { maxSeqs: STORY_BATCH, maxTokensPerIteration: 512, kvBudgetBytes: 16 * 2 ** 20, modelName: 'train', adapters: { slots: 1, maxRank: rank } }));
  return {
    device: describeGpu(ctx),
    model: source.description,
    config: model.config,
    tokenizer: model.tokenizer,
    eos: model.generation.eosTokenIds[0] ?? null,
    loadMs,
    concurrency: STORY_BATCH,
    async complete(prompt, tokens, temperature, seed, adapter) {
      const e = storyEngine();
      if (adapter && adapter !== loaded) {
        await e.adapters.load('trained', adapter);
        loaded = adapter;
      }
      const r = await e.completions.create({ prompt, max_tokens: tokens, temperature, seed, adapter: adapter ? 'trained' : null });
      return r.choices[0].text;
    },
    async createTrainer(config, seed, options) {
      const adapter = await createAdapter(ctx, model.config, config, seed);
      try {
        const trainer = new DpoTrainer(ctx, model.weights, adapter, options);
        return {
          trainer,
          arenaBytes: trainer.arena.bytes,
          read: () => readAdapter(ctx, adapter),
          destroy: () => {
            trainer.destroy();
            adapter.destroy();
          },
        };
      } catch (e) {
        adapter.destroy();
        throw e;
      }
    },
    destroy() {
      engine?.destroy();
      model.weights.destroy();
    },
  };
}

interface StoryData {
  pairs: StoryPairs;
  train: NamedPair[];
  heldOut: NamedPair[];
  generateMs: number;
}

async function storyPairs(b: TrainBackend, o: StoriesOptions, seed: number, log: (m: string) => void): Promise<StoryData> {
  const tokens = o.tokens ?? 48;
  const t0 = performance.now();
  const pairs = await makeStoryPairs({ complete: (p, s) => b.complete(p, tokens, 1, s), prompts: o.prompts ?? STORY_PROMPTS, samplesPerPrompt: o.samplesPerPrompt ?? 16, rule: DEFAULT_STORY_RULE, seed: seed * 100_000, concurrency: b.concurrency, rejectedPerChosen: o.rejectedPerChosen });
  const generateMs = performance.now() - t0;
  const t = pairs.totals;
  log(`stories: ${t.samples} continuations in ${(generateMs / 1000).toFixed(1)} s, ${t.preferred} preferred / ${t.dispreferred} not by '${pairs.rule.name}'; ${pairs.train.length} train pairs (${pairs.trainPrompts.length} prompts), ${pairs.heldOut.length} held-out pairs (${pairs.heldOutPrompts.length} prompts)`);
  // The model's own continuations: no EOS (they were cut at `tokens`, not ended).
  const tok = (list: typeof pairs.train, what: string) => list.map((p, i) => tokenizePair(b.tokenizer, p, `${what}[${i}] (${JSON.stringify(p.prompt)}, seeds ${p.chosenSeed}/${p.rejectedSeed})`, { eos: null }));
  return { pairs, train: tok(pairs.train, 'stories.train'), heldOut: tok(pairs.heldOut, 'stories.heldOut'), generateMs };
}

/** Greedy continuations (and sampled ones) of the held-out prompts with or without the adapter. */
async function heldOutTexts(b: TrainBackend, prompts: string[], o: StoriesOptions, adapter?: HostAdapter): Promise<{ greedy: string[]; sampled: string[] }> {
  const tokens = o.tokens ?? 48;
  const n = o.checkSamples ?? 8;
  const greedy = await Promise.all(prompts.map((p) => b.complete(p, tokens, 0, 0, adapter)));
  const sampled = await Promise.all(prompts.flatMap((p, i) => Array.from({ length: n }, (_, s) => b.complete(p, tokens, 1, 900_000 + i * 1000 + s, adapter))));
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

/** `mace train` on the GPU: load `source` in req.dtype, then trainOn. */
export async function runTrain(ctx: GpuContext, source: ModelSource, req: TrainRequest, hooks: TrainHooks = {}): Promise<TrainResult | KtoTrainResult> {
  if (!req.pairs && !req.stories && !req.thumbs) throw new TrainRequestError('pairs', 'are missing: give a preference file, a thumbs file or use stories');
  const backend = await gpuTrainBackend(ctx, source, req.dtype, req.rank ?? 8);
  try {
    return await trainOn(backend, req, hooks);
  } finally {
    backend.destroy();
  }
}

/** `mace train` on any backend (see the file comment). */
export async function trainOn(b: TrainBackend, req: TrainRequest, hooks: TrainHooks = {}): Promise<TrainResult | KtoTrainResult> {
  if (req.thumbs || req.stories?.thumbs) return trainKtoOn(b, req, hooks);
  const log = hooks.onLog ?? (() => {});
  if (!req.pairs && !req.stories) throw new TrainRequestError('pairs', 'are missing: give a preference file, a thumbs file or use stories');
  const rank = req.rank ?? 8;
  const alpha = req.alpha ?? 2 * rank;
  const beta = req.beta ?? 0.1;
  const seed = req.seed ?? 0;
  const cap = req.maxTokens ?? 256;
  log(`loaded ${b.model} as ${req.dtype} in ${b.loadMs.toFixed(0)} ms`);
  const cleanup: (() => void)[] = [];
  try {
    let train: NamedPair[];
    let evalPairs: NamedPair[] | undefined;
    let stories: StoryData | undefined;
    if (req.stories) {
      stories = await storyPairs(b, req.stories, seed, log);
      train = stories.train;
      evalPairs = req.eval ? readPairs(b, req.eval) : stories.heldOut;
    } else {
      train = readPairs(b, req.pairs!);
      evalPairs = req.eval ? readPairs(b, req.eval) : undefined;
    }
    const maxTokens = arenaTokens([...train, ...(evalPairs ?? [])], cap);
    const usable = checkPairs('pairs', train, maxTokens, b.config.vocabSize).ok.length;
    if (usable === 0) throw new TrainRequestError('pairs', `none of the ${train.length} pairs fits ${cap} tokens (prompt + response)`);
    const batch = req.batch ?? 1;
    const steps = req.steps ?? optimizerSteps((req.epochs ?? 1) * usable, batch);
    const { s, warmup } = schedule(req, steps);
    const made = await b.createTrainer({ r: rank, loraAlpha: alpha, useRslora: false, targetModules: [...LINEAR_MODULES], baseModelNameOrPath: b.model }, seed + 1, { maxTokens, beta, schedule: s });
    cleanup.unshift(() => made.destroy());
    const { trainer } = made;
    log(`training ${usable} pairs for ${steps} steps of ${batch} pair${batch === 1 ? '' : 's'} (rank ${rank}, alpha ${alpha}, lr ${s.baseLr}, beta ${beta}, warmup ${warmup}, arena ${maxTokens} tokens = ${(made.arenaBytes / 2 ** 20).toFixed(1)} MiB)`);

    const before = stories ? await heldOutTexts(b, stories.pairs.heldOutPrompts, req.stories!) : undefined;
    const tokensPerStep: number[] = [];
    const result = await trainDpo({
      trainer,
      pairs: train,
      evalPairs,
      ...(req.steps === undefined ? { epochs: req.epochs ?? 1 } : { steps }),
      batchSize: batch,
      seed,
      onReady: (i) => i.before && log(`held-out before: accuracy ${i.before['rewards/accuracies'].toFixed(3)} (ties ${i.before.ties}/${i.before.pairs}), margin ${i.before['rewards/margins'].toFixed(4)}`),
      onMetrics: (m, pairs) => {
        tokensPerStep.push(pairs.reduce((n, pair) => n + 2 * pair.prompt.length + pair.chosen.length + pair.rejected.length, 0));
        hooks.onStep?.(m);
      },
    });
    const host = await made.read();
    const out: TrainResult = {
      device: b.device,
      model: b.model,
      dtype: req.dtype,
      hyper: { lr: s.baseLr, beta, rank, alpha, seed, steps, batch, warmup, maxTokens, schedule: s.kind },
      pairs: { train: usable, eval: result.before?.pairs ?? 0, skipped: result.skippedPairs },
      steps: result.steps,
      before: result.before,
      after: result.after,
      nonFiniteSteps: result.nonFiniteSteps,
      timing: { loadMs: b.loadMs, trainMs: result.trainMs, msPerStep: result.trainMs / Math.max(1, steps), tokensPerStep: mean(tokensPerStep), tokensPerSec: (tokensPerStep.reduce((a, c) => a + c, 0) * 1000) / Math.max(1e-9, result.trainMs) },
      arenaBytes: made.arenaBytes,
      adapterParams: host.tensors.reduce((n, t) => n + t.A.length + t.B.length, 0),
    };
    if (stories && before) {
      const after = await heldOutTexts(b, stories.pairs.heldOutPrompts, req.stories!, host);
      out.stories = storiesReport(stories, before, after, req.stories!);
    }
    if (req.exportPeft) {
      const files = exportPeft(b.config, host);
      out.peft = { weightsBase64: toBase64(files.weights), config: files.config };
    }
    return out;
  } finally {
    for (const f of cleanup) f();
  }
}

function storiesReport(d: { pairs: Pick<StoryPairs, 'rule' | 'trainPrompts' | 'heldOutPrompts' | 'totals' | 'perPrompt'>; generateMs: number }, before: { greedy: string[]; sampled: string[] }, after: { greedy: string[]; sampled: string[] }, o: StoriesOptions): StoriesReport {
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

// ---------------------------------------------------------------- KTO on unpaired thumbs

function readThumbs(b: TrainBackend, f: TextFile, eos: boolean): { examples: NamedThumb[]; stats: KtoStats } {
  const parsed = parseThumbsFile(f.file, f.content, { strict: true });
  if (parsed.examples.length === 0) throw new TrainRequestError(f.file, `holds no usable examples (${parsed.records} records)`);
  const examples = parsed.examples.map((e) => ({ name: `${e.file} ${e.record}`, ...tokenizeThumb(b.tokenizer, { prompt: e.prompt, messages: e.messages as ChatCompletionMessageParam[] | undefined, completion: e.completion, label: e.label }, { eos: eos ? b.eos : null }) }));
  return { examples, stats: parsed.stats };
}

async function storyThumbs(b: TrainBackend, o: StoriesOptions, seed: number, log: (m: string) => void): Promise<{ thumbs: StoryThumbs; train: NamedThumb[]; heldOut: NamedThumb[]; generateMs: number }> {
  const tokens = o.tokens ?? 48;
  const t0 = performance.now();
  const thumbs = await makeStoryThumbs({ complete: (p, s) => b.complete(p, tokens, 1, s), prompts: o.prompts ?? STORY_PROMPTS, samplesPerPrompt: o.samplesPerPrompt ?? 16, rule: DEFAULT_STORY_RULE, seed: seed * 100_000, concurrency: b.concurrency });
  const generateMs = performance.now() - t0;
  const t = thumbs.totals;
  log(`stories: ${t.samples} continuations in ${(generateMs / 1000).toFixed(1)} s, each labelled alone by '${thumbs.rule.name}': ${t.preferred} thumbs-up / ${t.dispreferred} thumbs-down; ${thumbs.train.length} train examples (${thumbs.trainPrompts.length} prompts), ${thumbs.heldOut.length} held-out (${thumbs.heldOutPrompts.length} prompts)`);
  // The model's own continuations: no EOS (cut at `tokens`, not ended).
  const tok = (list: StoryThumbs['train'], what: string) => list.map((e, i) => ({ name: `${what}[${i}] (${JSON.stringify(e.prompt)}, seed ${e.seed}, ${e.label ? 'up' : 'down'})`, ...tokenizeThumb(b.tokenizer, e, { eos: null }) }));
  return { thumbs, train: tok(thumbs.train, 'stories.train'), heldOut: tok(thumbs.heldOut, 'stories.heldOut'), generateMs };
}

const ktoEvalLine = (e: KtoEvalMetrics) => `reward accuracy ${e.reward_accuracy === null ? 'n/a' : e.reward_accuracy.toFixed(3)} (${e.reward_pairs} same-prompt couples, ${e.reward_ties} ties), loss ${e.loss.toFixed(4)}, kl ${e.kl.toFixed(4)}, rewards/chosen ${e['rewards/chosen'].toFixed(4)}, rewards/rejected ${e['rewards/rejected'].toFixed(4)}`;

/** `mace train --thumbs FILE` or `--stories --thumbs-from-stories`: KTO on unpaired examples. */
export async function trainKtoOn(b: TrainBackend, req: TrainRequest, hooks: TrainHooks = {}): Promise<KtoTrainResult> {
  const log = hooks.onLog ?? (() => {});
  const rank = req.rank ?? 8;
  const alpha = req.alpha ?? 2 * rank;
  const beta = req.beta ?? 0.1;
  const seed = req.seed ?? 0;
  const cap = req.maxTokens ?? 256;
  const desirableWeight = req.desirableWeight ?? 1;
  const undesirableWeight = req.undesirableWeight ?? 1;
  log(`loaded ${b.model} as ${req.dtype} in ${b.loadMs.toFixed(0)} ms`);
  const cleanup: (() => void)[] = [];
  try {
    let train: NamedThumb[];
    let evalSet: NamedThumb[] | undefined;
    let trainStats: KtoStats;
    let evalStats: KtoStats | undefined;
    let stories: Awaited<ReturnType<typeof storyThumbs>> | undefined;
    if (req.stories?.thumbs) {
      stories = await storyThumbs(b, req.stories, seed, log);
      train = stories.train;
      trainStats = ktoStats(stories.thumbs.train);
      if (req.evalThumbs) ({ examples: evalSet, stats: evalStats } = readThumbs(b, req.evalThumbs, req.eos !== false));
      else ({ heldOut: evalSet } = stories), (evalStats = ktoStats(stories.thumbs.heldOut));
    } else {
      if (!req.thumbs) throw new TrainRequestError('thumbs', 'is missing: give a thumbs file or use stories with thumbs');
      ({ examples: train, stats: trainStats } = readThumbs(b, req.thumbs, req.eos !== false));
      if (req.evalThumbs) ({ examples: evalSet, stats: evalStats } = readThumbs(b, req.evalThumbs, req.eos !== false));
    }
    const longest = Math.max(2, ...[...train, ...(evalSet ?? [])].map((e) => e.prompt.length + e.completion.length).filter((n) => n <= cap));
    const maxTokens = Math.min(cap, Math.ceil(longest / TOKEN_BUCKET) * TOKEN_BUCKET);
    const usable = checkThumbs('examples', train, maxTokens, b.config.vocabSize).ok.length;
    if (usable < 2) throw new TrainRequestError('thumbs', `only ${usable} of the ${train.length} examples fit ${cap} tokens (prompt + completion); KTO needs at least 2`);
    const batch = req.batch ?? 1;
    const steps = req.steps ?? optimizerSteps((req.epochs ?? 1) * usable, batch);
    const { s, warmup } = schedule(req, steps);
    const made = await b.createTrainer({ r: rank, loraAlpha: alpha, useRslora: false, targetModules: [...LINEAR_MODULES], baseModelNameOrPath: b.model }, seed + 1, { maxTokens, beta, desirableWeight, undesirableWeight, schedule: s });
    cleanup.unshift(() => made.destroy());
    const { trainer } = made;
    log(`KTO: ${usable} examples (${trainStats.liked} up / ${trainStats.disliked} down) for ${steps} steps of ${batch} (rank ${rank}, alpha ${alpha}, lr ${s.baseLr}, beta ${beta}, weights ${desirableWeight}/${undesirableWeight}, warmup ${warmup}, arena ${maxTokens} tokens = ${(made.arenaBytes / 2 ** 20).toFixed(1)} MiB)`);
    const before = stories ? await heldOutTexts(b, stories.thumbs.heldOutPrompts, req.stories!) : undefined;
    const tokensPerStep: number[] = [];
    const curve: KtoTrainResult['curve'] = [];
    const result = await trainKto({
      trainer,
      examples: train,
      evalExamples: evalSet,
      ...(req.steps === undefined ? { epochs: req.epochs ?? 1 } : { steps }),
      batchSize: batch,
      seed,
      evalEvery: req.evalEvery,
      onReady: (i) => i.before && log(`held-out before: ${ktoEvalLine(i.before)}`),
      onEval: (step, e) => {
        curve.push({ step, eval: e });
        log(`held-out at step ${step}: ${ktoEvalLine(e)}`);
      },
      onMetrics: (m, list) => {
        tokensPerStep.push(list.reduce((n, e) => n + 2 * e.prompt.length + e.completion.length + e.kl.length, 0));
        hooks.onStep?.(m);
      },
    });
    if (result.before) curve.unshift({ step: 0, eval: result.before });
    if (result.after) curve.push({ step: result.steps.length, eval: result.after });
    const host = await made.read();
    const out: KtoTrainResult = {
      method: 'kto',
      device: b.device,
      model: b.model,
      dtype: req.dtype,
      hyper: { lr: s.baseLr, beta, rank, alpha, seed, steps, batch, warmup, maxTokens, schedule: s.kind, desirableWeight, undesirableWeight },
      examples: { train: usable, eval: result.before?.examples ?? 0, skipped: result.skippedExamples, trainStats, evalStats },
      steps: result.steps,
      before: result.before,
      after: result.after,
      curve,
      nonFiniteSteps: result.nonFiniteSteps,
      timing: { loadMs: b.loadMs, trainMs: result.trainMs, msPerStep: result.trainMs / Math.max(1, steps), tokensPerStep: mean(tokensPerStep), tokensPerSec: (tokensPerStep.reduce((a, c) => a + c, 0) * 1000) / Math.max(1e-9, result.trainMs) },
      arenaBytes: made.arenaBytes,
      adapterParams: host.tensors.reduce((n, t) => n + t.A.length + t.B.length, 0),
    };
    if (stories && before) {
      const after = await heldOutTexts(b, stories.thumbs.heldOutPrompts, req.stories!, host);
      out.stories = storiesReport({ pairs: stories.thumbs, generateMs: stories.generateMs }, before, after, req.stories!);
    }
    if (stories && req.returnThumbs) {
      const rec = (list: StoryThumbs['train']) => list.map((e) => ({ prompt: e.prompt, completion: e.completion, label: e.label }));
      out.thumbs = { train: rec(stories.thumbs.train), heldOut: rec(stories.thumbs.heldOut) };
    }
    if (req.exportPeft) {
      const files = exportPeft(b.config, host);
      out.peft = { weightsBase64: toBase64(files.weights), config: files.config };
    }
    return out;
  } finally {
    for (const f of cleanup) f();
  }
}
