/**
 * One generation request end to end, as `mace generate` runs it: load a model from a ModelSource
 * onto the GPU, serve it with the engine, run one completion (a prompt) or chat (messages) request,
 * stream its text to `onText`, and return a plain JSON result. Environment-agnostic (it takes a
 * GpuContext and a ModelSource), so the CLI runs this same code in Node + Dawn and in Chromium.
 */
import type { GpuContext } from '../src/gpu/device.ts';
import type { WeightFormat } from '../src/kernels/weights.ts';
import { createEngine, chatPromptIds } from '../src/engine/openai.ts';
import type { ChatCompletionMessageParam, ChatFinishReason, CompletionUsage, SamplingParams } from '../src/engine/types.ts';
import { InvalidRequestError } from '../src/engine/errors.ts';
import { loadModel, type LoadedModel, type LoadProgress } from '../src/model/loader.ts';
import type { ModelSource } from '../src/model/source.ts';

export interface GenerateRequest {
  /** Completion prompt; '' or absent (and no messages): BOS only. */
  prompt?: string;
  /** Chat messages (the model's chat template, or completion mode when it has none). */
  messages?: ChatCompletionMessageParam[];
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  dtype: WeightFormat;
}

/** What `mace generate --json` prints. */
export interface GenerateResult {
  text: string;
  token_ids: number[];
  prompt_token_ids: number[];
  finish_reason: ChatFinishReason;
  usage: CompletionUsage;
}

export interface GenerateHooks {
  /** Text deltas as they are generated (awaited, so a slow consumer keeps the order). */
  onText?: (text: string) => void | Promise<void>;
  /** Load progress and other notes for people (the CLI prints them on stderr). */
  onLog?: (message: string) => void;
}

/**
 * Prompt ids of a completion request. An empty prompt is BOS only: the tokenizer's post-processor
 * adds it when it has one; otherwise the BOS id of the configs is used.
 */
export function completionPromptIds(model: Pick<LoadedModel, 'tokenizer' | 'generation'>, prompt: string): number[] {
  const ids = model.tokenizer.encode(prompt);
  if (ids.length > 0) return ids;
  const bos = model.generation.bosTokenId;
  if (bos === null) throw new InvalidRequestError('prompt', 'is empty and the model has no BOS token to start from');
  return [bos];
}

/** User values win; generation_config.json fills what the user left out (as transformers does). */
function samplingParams(model: LoadedModel, r: GenerateRequest): SamplingParams {
  const g = model.generation;
  const greedy = g.doSample === false;
  return {
    max_tokens: r.maxTokens ?? g.maxNewTokens ?? null,
    temperature: r.temperature ?? (greedy ? 0 : g.temperature),
    top_p: r.topP ?? g.topP,
    top_k: g.topK,
    min_p: g.minP,
    repetition_penalty: g.repetitionPenalty,
    seed: r.seed,
    return_token_ids: true,
  };
}

function describeProgress(p: LoadProgress): string | null {
  if (p.phase === 'headers') return `checked ${p.file} (${p.loaded}/${p.total})`;
  if (p.phase === 'done') return 'weights on the GPU';
  return null;
}

export async function runGenerate(ctx: GpuContext, source: ModelSource, req: GenerateRequest, hooks: GenerateHooks = {}): Promise<GenerateResult> {
  const log = hooks.onLog ?? (() => {});
  const t0 = performance.now();
  const model = await loadModel(ctx, source, {
    format: req.dtype,
    onProgress: (p) => {
      const line = describeProgress(p);
      if (line) log(line);
    },
  });
  log(`loaded ${source.description} as ${req.dtype} in ${(performance.now() - t0).toFixed(0)} ms`);
  // One request at a time: a single-sequence engine keeps the arena and sampler small.
  const engine = createEngine(ctx, model, { maxSeqs: 1, modelName: source.description });
  try {
    const params = samplingParams(model, req);
    const chat = req.messages !== undefined;
    const promptIds = chat ? chatPromptIds(model.tokenizer, req.messages!) : completionPromptIds(model, req.prompt ?? '');
    const chunks = chat
      ? await engine.chat.completions.create({ ...params, messages: req.messages!, stream: true })
      : await engine.completions.create({ ...params, prompt: promptIds, stream: true });
    let text = '';
    const ids: number[] = [];
    let finish: ChatFinishReason | null = null;
    let usage: CompletionUsage | null = null;
    for await (const c of chunks) {
      const choice = c.choices[0];
      const delta = 'delta' in choice ? (choice.delta.content ?? '') : choice.text;
      ids.push(...(choice.token_ids ?? []));
      if (delta) {
        text += delta;
        await hooks.onText?.(delta);
      }
      if (choice.finish_reason) finish = choice.finish_reason;
      if (c.usage) usage = c.usage;
    }
    if (finish === null || usage === null) throw new Error('generate: the stream ended without a final chunk');
    return { text, token_ids: ids, prompt_token_ids: promptIds, finish_reason: finish, usage };
  } finally {
    engine.destroy();
    model.weights.destroy();
  }
}
