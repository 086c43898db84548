/**
 * The OpenAI-compatible surface over EngineCore: `engine.chat.completions.create` and
 * `engine.completions.create`, returning ChatCompletion / Completion objects, or with stream: true
 * a Promise of an AsyncIterable of chunks (as the OpenAI SDK: `for await (const c of await create(...))`).
 * Parameter errors and over-long prompts reject the promise before anything is queued.
 *
 * Prompts: chat messages through src/model/prompt.ts (the chat template, or completion mode for a
 * model without one; `truncation: 'auto'` drops the oldest messages of a conversation longer than the
 * context, the default refuses it); completions: a string is encoded with BOS, token ids are used as
 * given. Oversized prompts are refused before tokenizing: over promptCharLimit characters, or more
 * ids than the context holds.
 *
 * LoRA: `engine.adapters.load(name, adapter)` puts a host adapter or PEFT files in the engine's
 * bank (created with options.adapters); a request then names it with `adapter: name` (an
 * extension of both endpoints, like vLLM's LoRA model names, but as its own field).
 */
import type { GpuContext } from '../gpu/device.ts';
import type { HostAdapter } from '../learn/adapter.ts';
import type { LearningOptions } from './learner.ts';
import type { LearningStatus } from '../scheduler/stats.ts';
import type { PreferencePair } from '../learn/pairs.ts';
import { importPeft, type PeftImportInput } from '../learn/peft.ts';
import type { TextTokenizer } from '../model/tokenizer.ts';
import { EngineCore, type EngineModel } from './engine.ts';
import { EngineOptionsError, InvalidRequestError, PromptTooLongError } from './errors.ts';
import { engineFeedback, memoryFeedback, type EngineFeedback, type FeedbackSink } from './feedback.ts';
import type { CompletionInput, Thumb } from '../learn/feedback.ts';
import { checkPromptChars, normalizeParams, promptCharLimit, type RequestSettings } from './params.ts';
import { fitChatPrompt, truncationOf, type PromptBound } from '../model/prompt.ts';
import { checkRequestFields } from './request-fields.ts';
import { applyGrammarAndBias, chatAnswer, chatEvents, requestGrammar } from './structured/endpoint.ts';
import { toolPlanOf, toolsSystemText } from './structured/tools.ts';
export { chatPromptIds, type PromptBound } from '../model/prompt.ts';
import type { Request, RequestEvent, TokenLogprob } from './request.ts';
import type {
  AdapterInfo,
  ChatChoiceLogprobs,
  ChatFinishReason,
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionCreateParams,
  ChatCompletionMessageParam,
  ChatCompletionTokenLogprob,
  Completion,
  CompletionCreateParams,
  CompletionLogprobs,
  CompletionUsage,
  EngineOptions,
  EngineStats,
  FinishReason,
  TopLogprob,
} from './types.ts';

export interface ChatCompletions {
  create(p: ChatCompletionCreateParams & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
  create(p: ChatCompletionCreateParams & { stream?: false | null }): Promise<ChatCompletion>;
  create(p: ChatCompletionCreateParams): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>>;
}

export interface Completions {
  create(p: CompletionCreateParams & { stream: true }): Promise<AsyncIterable<Completion>>;
  create(p: CompletionCreateParams & { stream?: false | null }): Promise<Completion>;
  create(p: CompletionCreateParams): Promise<Completion | AsyncIterable<Completion>>;
}

/** The engine's resident LoRA adapters. */
export interface EngineAdapters {
  /**
   * Load `adapter` (a host adapter, or PEFT's adapter_model.safetensors + adapter_config.json)
   * under `name`, replacing the adapter of that name if there is one. Rejects with a typed error
   * (AdapterConfigError, PeftFormatError, AdapterShapeError, AdapterSlotError, ...) and changes
   * nothing when it does not fit the model or the bank. Requests see it from the next iteration.
   */
  load(name: string, adapter: HostAdapter | PeftImportInput): Promise<AdapterInfo>;
  /** Unload `name`; requests naming it fail with AdapterUnloadedError. Throws AdapterNotFoundError. */
  unload(name: string): AdapterInfo;
  /** Loaded adapters, by slot. */
  list(): AdapterInfo[];
}

/** A learnt adapter as saved: its weights, version and the pairs it was fully trained on. */
export interface SavedLearning {
  host: HostAdapter;
  version: number;
  trainedKeys: readonly string[];
}

/** On-device learning: a LoRA adapter trained with DPO on the pairs, served as a named adapter. */
export interface EngineLearning {
  /**
   * Start learning (needs adapter slots); pairs already held are queued. Idempotent. `saved`: an
   * adapter saved earlier to continue from; when it does not fit, learning starts fresh and
   * `restoreError` says why (nothing stored is touched).
   */
  enable(options?: LearningOptions, saved?: SavedLearning): Promise<LearningStatus & { restoreError?: string }>;
  /** Null while learning is off. */
  status(): LearningStatus | null;
  /** The learnt adapter now, to save it. */
  snapshot(): Promise<{ host: HostAdapter; version: number; trainedKeys: string[] }>;
  /**
   * Serve and train from `saved` from now on (a stored version, a rollback, an imported adapter):
   * applied at the next step boundary, the step in flight starting over; pairs in its trainedKeys
   * are not trained again. A host that does not fit the model is refused, changing nothing.
   */
  restore(saved: SavedLearning): Promise<LearningStatus>;
  /** Back to the base model's behaviour: the adapter's B matrices zeroed (version 0); new feedback trains it again. */
  reset(): Promise<LearningStatus>;
}

export interface Engine extends EngineFeedback {
  readonly learning: EngineLearning;
  readonly chat: { readonly completions: ChatCompletions };
  readonly completions: Completions;
  readonly adapters: EngineAdapters;
  /** The model name responses report. */
  readonly modelName: string;
  stats(): EngineStats;
  destroy(): void;
  /** The machinery (tests, the scheduler issue). */
  readonly core: EngineCore;
}

/** Non-serialisable parts of an engine (the worker passes a persistent feedback sink). */
export interface EngineExtras {
  /** Where finished completions, ratings and pairs go; default an in-memory FeedbackLog. */
  feedback?: FeedbackSink;
}

export function createEngine(ctx: GpuContext, model: EngineModel, options: EngineOptions = {}, extras: EngineExtras = {}): Engine {
  const core = new EngineCore(ctx, model, options);
  const modelName = options.modelName ?? 'local';
  const sink = extras.feedback ?? memoryFeedback();
  const record: Recorder = (input) => {
    // A completion that cannot be recorded (e.g. an empty answer) just cannot be rated later:
    // feedback bookkeeping never fails the request itself.
    try {
      void Promise.resolve(sink.recordCompletion(input)).catch(() => undefined);
    } catch {
      /* see above */
    }
  };
  const chatCreate = (p: ChatCompletionCreateParams) => chatCompletion(core, modelName, p, record);
  const complCreate = (p: CompletionCreateParams) => completion(core, modelName, p, record);
  const fb = engineFeedback(sink);
  const learnFrom = (p: PreferencePair) => core.learnPair(p.id, p.messages ? { messages: p.messages as ChatCompletionMessageParam[], chosen: p.chosen, rejected: p.rejected } : { prompt: p.prompt, chosen: p.chosen, rejected: p.rejected });
  // The mixing rule: answers of a context rated both ways train as DPO pairs; a rated answer no pair uses trains alone with KTO.
  const learnThumb = (t: Thumb) => core.learnThumb(t.id, { ...(t.messages ? { messages: t.messages as ChatCompletionMessageParam[] } : { prompt: t.prompt }), completion: t.completion, label: t.label });
  return {
    // Pairs that form (thumbs) or are added go to the learner when learning is on.
    feedback: async (f) => {
      const r = await fb.feedback(f);
      for (const p of r.removed) core.forgetPair(p.id);
      for (const t of r.thumbsRemoved) core.forgetPair(t.id);
      for (const p of r.added) learnFrom(p);
      for (const t of r.thumbsAdded) learnThumb(t);
      return r;
    },
    preferences: {
      add: async (p) => {
        const r = await fb.preferences.add(p);
        learnFrom(r.pair);
        return r;
      },
      list: fb.preferences.list,
    },
    learning: {
      enable: async (o, saved) => {
        const status = await core.enableLearning(o);
        let restoreError: string | undefined;
        if (saved) {
          // Before any pair is queued: a restore must precede the first step.
          try {
            core.learnerState!.restore(saved.host, saved.version, saved.trainedKeys);
          } catch (e) {
            restoreError = e instanceof Error ? e.message : String(e);
          }
        }
        for (const p of sink.pairs()) learnFrom(p); // pairs kept from earlier sessions
        for (const t of sink.thumbs()) learnThumb(t); // and unpaired thumbs
        return { ...(core.learningStatus() ?? status), ...(restoreError ? { restoreError } : {}) };
      },
      status: () => core.learningStatus(),
      snapshot: async () => {
        const l = core.learnerState;
        if (!l) throw new EngineOptionsError('learning', 'is off: call learning.enable() first');
        return l.snapshot();
      },
      restore: (saved) => core.replaceLearnt(saved.host, saved.version, saved.trainedKeys),
      reset: async () => {
        const l = core.learnerState;
        if (!l) throw new EngineOptionsError('learning', 'is off: call learning.enable() first');
        const { host, trainedKeys } = await l.snapshot();
        // B = 0: the LoRA delta is exactly zero (A keeps its init, so training can start again).
        const base: HostAdapter = { config: host.config, tensors: host.tensors.map((t) => ({ ...t, B: new Float32Array(t.B.length) })) };
        return core.replaceLearnt(base, 0, trainedKeys);
      },
    },
    chat: { completions: { create: chatCreate as ChatCompletions['create'] } },
    completions: { create: complCreate as Completions['create'] },
    adapters: {
      load: (name, adapter) => loadAdapter(core, name, adapter),
      unload: (name) => core.unloadAdapter(name),
      list: () => core.listAdapters(),
    },
    modelName,
    stats: () => core.stats(),
    destroy: () => core.destroy(),
    core,
  };
}

async function loadAdapter(core: EngineCore, name: string, adapter: HostAdapter | PeftImportInput): Promise<AdapterInfo> {
  if (typeof adapter !== 'object' || adapter === null) throw new InvalidRequestError('adapter', 'must be a host adapter {config, tensors} or PEFT files {weights, config}');
  const host = 'tensors' in adapter ? adapter : await importPeft(core.model.config, adapter);
  return core.loadAdapter(name, host);
}

// ---------------------------------------------------------------- prompts

function completionPromptIds(tokenizer: TextTokenizer, prompt: string | number[], bound: PromptBound): number[] {
  if (typeof prompt === 'string') {
    checkPromptChars('prompt', prompt.length, promptCharLimit(bound.maxContext, tokenizer.maxTokenChars), bound.maxContext);
    return tokenizer.encode(prompt);
  }
  if (Array.isArray(prompt)) {
    if (prompt.length >= bound.maxContext) throw new PromptTooLongError(prompt.length, bound.maxContext);
    return [...prompt];
  }
  throw new InvalidRequestError('prompt', 'must be a string or an array of token ids');
}

// ---------------------------------------------------------------- responses

let serial = 0;
function responseId(prefix: string): string {
  serial = (serial + 1) % 1e9;
  return `${prefix}-${Date.now().toString(36)}${serial.toString(36)}`;
}

const encoder = new TextEncoder();

function tokenText(tok: TextTokenizer, id: number): string {
  return tok.decode([id], false);
}

function topLogprob(tok: TextTokenizer, id: number, logprob: number): TopLogprob {
  const token = tokenText(tok, id);
  return { token, logprob, bytes: [...encoder.encode(token)] };
}

function chatLogprobs(tok: TextTokenizer, lps: readonly TokenLogprob[]): ChatCompletionTokenLogprob[] {
  return lps.map((l) => ({ ...topLogprob(tok, l.id, l.logprob), top_logprobs: l.top.map((t) => topLogprob(tok, t.id, t.logprob)) }));
}

/** Everything a request produced, gathered from its events. */
interface Gathered {
  text: string;
  ids: number[];
  logprobs: TokenLogprob[];
  reason: FinishReason;
  usage: CompletionUsage;
}

async function gather(req: Request): Promise<Gathered> {
  let text = '';
  const ids: number[] = [];
  const logprobs: TokenLogprob[] = [];
  for await (const ev of req.events) {
    ids.push(...ev.ids);
    logprobs.push(...ev.logprobs);
    if (ev.kind === 'delta') text += ev.text;
    else return { text, ids, logprobs, reason: ev.reason, usage: ev.usage };
  }
  throw new Error('engine: request ended without a final event');
}

/**
 * The requests of `n` choices: the first now; the others once its prompt is computed, so they take
 * its full blocks from the prefix cache instead of computing the prompt again (seeds seed + i).
 */
async function submitChoices(core: EngineCore, ids: number[], settings: RequestSettings, signal: AbortSignal | undefined, first: Request): Promise<Request[]> {
  const reqs = [first];
  if (settings.n > 1) await first.prefilled;
  for (let i = 1; i < settings.n; i++) reqs.push(core.submit(ids, { ...settings, seed: (settings.seed + i) >>> 0 }, signal));
  return reqs;
}

/** One usage for all choices: the prompt once, the completions summed (as OpenAI counts). */
function choicesUsage(gs: readonly Gathered[]): CompletionUsage {
  const u = gs[0].usage;
  const completion = gs.reduce((a, g) => a + g.usage.completion_tokens, 0);
  return { ...u, completion_tokens: completion, total_tokens: u.prompt_tokens + completion };
}

/** Completion id of choice `i` in the feedback log (choice 0 keeps the response id). */
const choiceId = (id: string, i: number) => (i === 0 ? id : `${id}:${i}`);

/** Records a finished completion for feedback (see createEngine). */
type Recorder = (input: CompletionInput) => void;

/** What a completion answered, for the feedback log (aborted answers are not recorded). */
function recordFinished(record: Recorder, completionId: string, context: { messages: unknown } | { prompt: unknown }, text: string, reason: ChatFinishReason): void {
  if (reason !== 'abort') record({ completionId, ...context, answer: text });
}

/**
 * Wrap a request's events (or a chat's, src/engine/structured/endpoint.ts) as an async iterable of
 * chunks (one per text delta, then a final one); `onDone` gets the whole text when it finishes.
 */
function chunks<E extends { kind: 'delta'; text: string } | { kind: 'done'; reason: ChatFinishReason }, C>(events: AsyncIterable<E>, make: (ev: E, first: boolean) => C, onDone?: (text: string, reason: ChatFinishReason) => void): AsyncIterable<C> {
  return {
    async *[Symbol.asyncIterator]() {
      let first = true;
      let text = '';
      for await (const ev of events) {
        if (ev.kind === 'delta') text += ev.text;
        else onDone?.(text, ev.reason);
        yield make(ev, first);
        first = false;
      }
    },
  };
}

function chatCompletion(core: EngineCore, model: string, p: ChatCompletionCreateParams, record: Recorder): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>> {
  try {
    checkRequestFields(p, 'chat');
    if (p.top_logprobs !== null && p.top_logprobs !== undefined && p.logprobs !== true) throw new InvalidRequestError('top_logprobs', 'needs logprobs: true');
    const settings = normalizeParams(p, p.logprobs === true ? (p.top_logprobs ?? 0) : null, core.limits);
    const tok = core.model.tokenizer;
    // Tools go to the template (or the fallback system text); a forced call and response_format constrain decoding.
    const plan = toolPlanOf(p);
    const grammar = requestGrammar(p.response_format, plan);
    const promptTools = plan && plan.choice !== 'none' ? { tools: plan.tools, toolsFallback: toolsSystemText(plan) } : null;
    // A conversation longer than the context: refused by default; 'auto' drops its oldest messages
    // and keeps room for max_tokens, up to a quarter of the context (src/model/prompt.ts).
    const reserve = Math.min(settings.maxTokens ?? 1, Math.max(1, Math.floor(core.limits.maxContext / 4)));
    const truncation = truncationOf(p.truncation);
    const fitted = fitChatPrompt(tok, p.messages, core.limits, truncation, reserve, promptTools);
    applyGrammarAndBias(settings, grammar, p.logit_bias, core.model, core.limits.maxContext, fitted.ids.length);
    if (p.stream && settings.n > 1) throw new InvalidRequestError('n', `= ${settings.n} with stream: true is not supported yet (n > 1 is, without streaming)`);
    const req = core.submit(fitted.ids, settings, p.signal);
    if (truncation === 'auto') req.truncatedMessages = fitted.droppedMessages;
    const id = responseId('chatcmpl');
    const created = Math.floor(Date.now() / 1000);
    const wantLp = settings.topLogprobs !== null;
    const ids = settings.returnTokenIds;
    if (p.stream) {
      return Promise.resolve(
        chunks(chatEvents(req.events, plan), (ev, first): ChatCompletionChunk => {
          const done = ev.kind === 'done';
          const calls = ev.kind === 'delta' && ev.toolCalls ? { content: null, tool_calls: ev.toolCalls.map((c, index) => ({ index, ...c })) } : null;
          const text = calls ?? (done ? (first ? { content: '' } : {}) : { content: ev.text });
          const delta: ChatCompletionChunk['choices'][0]['delta'] = first ? { role: 'assistant', ...text } : text;
          const logprobs: ChatChoiceLogprobs | null = wantLp ? { content: chatLogprobs(tok, ev.logprobs) } : null;
          return {
            id,
            object: 'chat.completion.chunk',
            created,
            model,
            choices: [{ index: 0, delta, finish_reason: done ? ev.reason : null, logprobs, ...(ids ? { token_ids: ev.ids } : {}) }],
            usage: done ? ev.usage : null,
          };
        }, (text, reason) => recordFinished(record, id, { messages: p.messages }, text, reason)),
      );
    }
    return submitChoices(core, fitted.ids, settings, p.signal, req).then(async (reqs) => {
      const gs = await Promise.all(reqs.map(gather));
      gs.forEach((g, i) => recordFinished(record, choiceId(id, i), { messages: p.messages }, g.text, g.reason));
      return {
        id,
        object: 'chat.completion' as const,
        created,
        model,
        choices: gs.map((g, i) => {
          const a = chatAnswer(g.text, g.reason, plan);
          const message = { role: 'assistant' as const, content: a.content, refusal: null, ...(a.toolCalls ? { tool_calls: a.toolCalls } : {}) };
          return { index: i, message, finish_reason: a.reason, logprobs: wantLp ? { content: chatLogprobs(tok, g.logprobs) } : null, ...(ids ? { token_ids: g.ids } : {}) };
        }),
        usage: choicesUsage(gs),
        ...(ids ? { prompt_token_ids: fitted.ids } : {}),
      };
    });
  } catch (e) {
    return Promise.reject(e);
  }
}

/** Legacy completions logprobs for tokens generated after `offset` characters of text. */
function legacyLogprobs(tok: TextTokenizer, lps: readonly TokenLogprob[], offset: number, top: number): CompletionLogprobs {
  const tokens = lps.map((l) => tokenText(tok, l.id));
  const text_offset: number[] = [];
  let at = offset;
  for (const t of tokens) {
    text_offset.push(at);
    at += t.length;
  }
  return {
    tokens,
    token_logprobs: lps.map((l) => l.logprob),
    top_logprobs: top > 0 ? lps.map((l) => Object.fromEntries(l.top.map((t) => [tokenText(tok, t.id), t.logprob]))) : null,
    text_offset,
  };
}

function completion(core: EngineCore, model: string, p: CompletionCreateParams, record: Recorder): Promise<Completion | AsyncIterable<Completion>> {
  try {
    checkRequestFields(p, 'completions');
    const settings = normalizeParams(p, p.logprobs ?? null, core.limits);
    const tok = core.model.tokenizer;
    const promptIds = completionPromptIds(tok, p.prompt, core.limits);
    applyGrammarAndBias(settings, requestGrammar(p.response_format, null), p.logit_bias, core.model, core.limits.maxContext, promptIds.length);
    if (p.stream && settings.n > 1) throw new InvalidRequestError('n', `= ${settings.n} with stream: true is not supported yet (n > 1 is, without streaming)`);
    const req = core.submit(promptIds, settings, p.signal);
    const id = responseId('cmpl');
    const created = Math.floor(Date.now() / 1000);
    const top = settings.topLogprobs;
    const ids = settings.returnTokenIds;
    if (p.stream) {
      let offset = 0;
      return Promise.resolve(
        chunks(req.events, (ev): Completion => {
          const text = ev.kind === 'delta' ? ev.text : '';
          const lp = top !== null ? legacyLogprobs(tok, ev.logprobs, offset, top) : null;
          offset += text.length;
          const done = ev.kind === 'done';
          return { id, object: 'text_completion', created, model, choices: [{ index: 0, text, finish_reason: done ? ev.reason : null, logprobs: lp, ...(ids ? { token_ids: ev.ids } : {}) }], usage: done ? ev.usage : null };
        }, (all, reason) => recordFinished(record, id, { prompt: p.prompt }, all, reason)),
      );
    }
    return submitChoices(core, promptIds, settings, p.signal, req).then(async (reqs) => {
      const gs = await Promise.all(reqs.map(gather));
      gs.forEach((g, i) => recordFinished(record, choiceId(id, i), { prompt: p.prompt }, g.text, g.reason));
      return {
        id,
        object: 'text_completion' as const,
        created,
        model,
        choices: gs.map((g, i) => ({ index: i, text: g.text, finish_reason: g.reason, logprobs: top !== null ? legacyLogprobs(tok, g.logprobs, 0, top) : null, ...(ids ? { token_ids: g.ids } : {}) })),
        usage: choicesUsage(gs),
        ...(ids ? { prompt_token_ids: promptIds } : {}),
      };
    });
  } catch (e) {
    return Promise.reject(e);
  }
}
