/**
 * The engine's public request/response types, mirroring OpenAI's chat completions and (legacy)
 * completions field names so client code written for the OpenAI SDK reads the same. Everything
 * here is plain data (structured-clone friendly) except `signal`, which a Web Worker wrapper
 * replaces with its own cancel message.
 *
 * Extensions beyond OpenAI (named as in vLLM where it has them): top_k, min_p,
 * repetition_penalty, ignore_eos, return_token_ids, adapter (a loaded LoRA adapter's name), and
 * the timing fields of `usage`.
 */
import type { PeriodicOptions } from '../scheduler/policy.ts';
import type { LearningStatus, PolicyName, PrefixStats } from '../scheduler/stats.ts';
import type { SchedulerConfig } from '../scheduler/types.ts';
import type { FrameBudgetOptions } from '../scheduler/frame-budget.ts';
import type { LinearModule } from '../model/tensors.ts';

/** Why a request ended; 'stop' also when a grammar's output (response_format) is complete. */
export type FinishReason = 'stop' | 'length' | 'abort';
/** A chat choice's: also 'tool_calls' when the answer is tool calls. */
export type ChatFinishReason = FinishReason | 'tool_calls';

import type { FunctionTool, ToolCall, ToolChoice } from './structured/tools.ts';
export type { FunctionTool, ToolCall, ToolChoice } from './structured/tools.ts';

/** OpenAI's response_format: free text, any JSON object, or JSON following a schema (its supported subset: src/engine/structured/schema.ts). */
export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema'; json_schema: { name: string; schema: Record<string, unknown>; strict?: boolean | null; description?: string } };

export type { ChatCompletionMessageParam, TextContentPart } from '../model/prompt.ts';
import type { ChatCompletionMessageParam } from '../model/prompt.ts';

/** Sampling and stopping parameters shared by both endpoints. */
export interface SamplingParams {
  model?: string;
  /** Most tokens to generate; default: until the context is full. */
  max_tokens?: number | null;
  /** OpenAI's newer name for max_tokens (used when max_tokens is absent). */
  max_completion_tokens?: number | null;
  /** In [0, 2]; 0 is greedy. Default 1. */
  temperature?: number | null;
  /** In (0, 1]. Default 1 (off). */
  top_p?: number | null;
  /** 0 or -1: off (every engine candidate); else keep the k most likely. */
  top_k?: number | null;
  /** In [0, 1]; keep tokens with p >= min_p * p_max. Default 0 (off). */
  min_p?: number | null;
  /** Same seed, same sampled tokens (for the same prompt and parameters). */
  seed?: number | null;
  /** Up to 4 strings; generation stops before the first one (it is not included). */
  stop?: string | string[] | null;
  /** In [-2, 2], OpenAI-style, on generated tokens: minus this once per distinct token. */
  presence_penalty?: number | null;
  /** In [-2, 2], OpenAI-style, on generated tokens: minus this times the token's count. */
  frequency_penalty?: number | null;
  /** > 0, HF-style, on prompt and generated tokens: positive logits divided, negative multiplied. */
  repetition_penalty?: number | null;
  /** Keep generating past EOS (benchmarks, golden tests). */
  ignore_eos?: boolean;
  /** Add the prompt's and the choice's token ids to the response. */
  return_token_ids?: boolean;
  /** Choices, in [1, 128] (default 1): each its own sequence with seed + i, sharing the prompt's cached blocks; not with stream. */
  n?: number | null;
  /** Name of a LoRA adapter loaded with engine.adapters.load; absent or null: the base model. */
  adapter?: string | null;
  /**
   * KV pruning (StreamingLLM): each query attends to the first `sinks` positions (default 0) and
   * the last `window` ones, its own included; blocks out of every later query's reach are freed as
   * the sequence grows. Absent or null: the engine's `kvWindow` (default: the full cache).
   */
  kv_window?: { sinks?: number; window: number } | null;
  user?: string;
  /**
   * OpenAI's logit_bias: token id (decimal string) → bias in [-100, 100] added to its logit on the
   * GPU before sampling (±100 in effect forces or bans the token); at most 300 entries.
   */
  logit_bias?: Record<string, number> | null;
  /**
   * Grammar-constrained decoding: output always parses (and follows the schema), also under
   * max_tokens (the mask forces the shortest completion as the budget runs out; a max_tokens below
   * the shortest output is refused). Unsupported schema keywords are InvalidRequestErrors.
   */
  response_format?: ResponseFormat | null;
  /** Cancels the request and frees its KV blocks; it then finishes with finish_reason 'abort'. */
  signal?: AbortSignal;
}

export interface ChatCompletionCreateParams extends SamplingParams {
  messages: ChatCompletionMessageParam[];
  stream?: boolean | null;
  /** Return the log-probability of each generated token. */
  logprobs?: boolean | null;
  /** With logprobs: also the n most likely tokens at each position, n in [0, 20]. */
  top_logprobs?: number | null;
  stream_options?: { include_usage?: boolean } | null;
  /**
   * A conversation longer than the context (as OpenAI's Responses API): 'disabled' (default) refuses
   * it with PromptTooLongError naming the limit; 'auto' drops the oldest messages after the leading
   * system/developer messages (never the last) until the prompt leaves room for max_tokens (at most a
   * quarter of the context); usage.truncated_messages then says how many went.
   */
  truncation?: 'auto' | 'disabled' | null;
  /** Functions the model may call: rendered by the chat template (or the fallback system message). */
  tools?: FunctionTool[] | null;
  /** 'auto' (default with tools), 'none', 'required' or a named function; the last two constrain decode to a call. */
  tool_choice?: ToolChoice | null;
  /** Several calls in one answer (default true); false keeps the first. */
  parallel_tool_calls?: boolean | null;
}

export interface CompletionCreateParams extends SamplingParams {
  /** Text (BOS added by the tokenizer) or token ids (used as given). */
  prompt: string | number[];
  stream?: boolean | null;
  /** Legacy completions: the number of top tokens per position, in [0, 20] (0: chosen only). */
  logprobs?: number | null;
  /** Streaming: the last chunk carries usage whatever include_usage says (accepted for OpenAI clients). */
  stream_options?: { include_usage?: boolean } | null;
}

/** Usage with the engine's timing figures. */
export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Prompt tokens over the time from first scheduling to the first sampled token. */
  prefill_tokens_per_s: number;
  /** Generated tokens after the first, over the time from the first to the last one. */
  decode_tokens_per_s: number;
  /** From the create() call to the first sampled token. */
  ttft_ms: number;
  /** As OpenAI's: prompt tokens whose K/V came from the prefix cache (not computed). */
  prompt_tokens_details: { cached_tokens: number };
  /** With truncation 'auto': messages dropped from the conversation's start to fit the context. */
  truncated_messages?: number;
}

export interface TopLogprob {
  token: string;
  logprob: number;
  bytes: number[] | null;
}

export interface ChatCompletionTokenLogprob extends TopLogprob {
  top_logprobs: TopLogprob[];
}

export interface ChatChoiceLogprobs {
  content: ChatCompletionTokenLogprob[] | null;
}

export interface ChatCompletionMessage {
  role: 'assistant';
  /** Null when the answer is tool calls. */
  content: string | null;
  refusal: null;
  tool_calls?: ToolCall[];
}

export interface ChatCompletionChoice {
  index: number;
  message: ChatCompletionMessage;
  finish_reason: ChatFinishReason;
  logprobs: ChatChoiceLogprobs | null;
  token_ids?: number[];
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: ChatCompletionChoice[];
  usage: CompletionUsage;
  prompt_token_ids?: number[];
}

export interface ChatCompletionChunkChoice {
  index: number;
  delta: { role?: 'assistant'; content?: string | null; tool_calls?: (ToolCall & { index: number })[] };
  finish_reason: ChatFinishReason | null;
  logprobs: ChatChoiceLogprobs | null;
  token_ids?: number[];
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: ChatCompletionChunkChoice[];
  /** On the final chunk only (the one with finish_reason); null before. */
  usage: CompletionUsage | null;
}

/** Legacy completions logprobs: parallel arrays over the generated tokens. */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Record<string, number>[] | null;
  text_offset: number[];
}

export interface CompletionChoice {
  index: number;
  text: string;
  finish_reason: FinishReason | null;
  logprobs: CompletionLogprobs | null;
  token_ids?: number[];
}

export interface Completion {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: CompletionChoice[];
  usage: CompletionUsage | null;
  prompt_token_ids?: number[];
}

/** Options of createEngine. Sizes are fixed at creation: buffers and pipelines are built once. */
export interface EngineOptions {
  /** Bytes of GPU memory for the paged KV cache. Default 64 MiB. */
  kvBudgetBytes?: number;
  /** Token budget of one iteration (decode tokens + prefill chunks). Default 256. */
  maxTokensPerIteration?: number;
  /** Most sequences in one iteration (and running at once). Default 8. */
  maxSeqs?: number;
  /** Longest sequence (prompt + output). Default: the model's max_position_embeddings, capped by the KV pool. */
  maxContext?: number;
  /** Candidates kept per row before sampling (top-k on the GPU, <= 256). Default 64. Caps top_k and top_logprobs. */
  candidates?: number;
  /** Name reported in responses. */
  modelName?: string;
  /** LoRA serving; absent (or slots 0): no adapter bank, no LoRA cost at all. */
  adapters?: AdapterOptions;
  /** The iteration scheduler (policy, per-submission GPU-time budget). */
  scheduler?: SchedulerOptions;
  /** Default kv_window of requests that give none (see SamplingParams.kv_window); absent: the full cache. */
  kvWindow?: { sinks?: number; window: number };
  /**
   * Reuse the K/V of cached prompt prefixes (full 16-token blocks: a chat's earlier turns, a shared
   * system prompt) per model/adapter version; unreferenced blocks stay matchable until the pool
   * needs them (src/engine/prefix.ts). Default true.
   */
  prefixCache?: boolean;
}

/** How each iteration is planned (src/scheduler/). */
export interface SchedulerOptions {
  /** Default 'mace'. */
  policy?: PolicyName;
  /**
   * GPU-time budget of one submission in ms; larger iterations are split into layer-range slices.
   * Default 8 (half a 60 Hz frame, so the page keeps the other half); Infinity or 0: no budget.
   * With `budget: 'frames'` this is the fallback while no fresh frame report is in (headless).
   */
  budgetMs?: number;
  /**
   * Where the budget comes from: 'frames' = the page's frames (reportFrames; the worker client
   * sends them), `budgetMs` being the fallback; 'constant' = always `budgetMs`. Default: 'frames'
   * unless `budgetMs` is given (an explicit budget is kept as it is).
   */
  budget?: 'frames' | 'constant';
  /** Tuning of the frame rule (src/scheduler/frame-budget.ts; defaults DEFAULT_FRAME_BUDGET). */
  frames?: Partial<FrameBudgetOptions>;
  /** Windows of the 'periodic' policy. */
  periodic?: Partial<PeriodicOptions>;
  /** Priority and best-fit weights (see SchedulerConfig). */
  tuning?: Partial<Omit<SchedulerConfig, 'policy' | 'budgetMs'>>;
  /**
   * How the cost model measures iterations: 'auto' (default) = GPU time per kind from timestamp
   * queries when the device has 'timestamp-query', else wall time; 'wall' = always wall time.
   */
  timing?: 'auto' | 'wall';
}

/** The adapter bank's sizes, fixed at engine creation. */
export interface AdapterOptions {
  /** Adapters resident at once. */
  slots: number;
  /** Highest LoRA rank a loaded adapter may have (lower ranks are zero-padded). Default 16. */
  maxRank?: number;
  /** Modules the bank serves; an adapter may target a subset. Default: all seven Linears. */
  targetModules?: LinearModule[];
}

/** A loaded adapter, as engine.adapters.list() reports it. */
export interface AdapterInfo {
  name: string;
  /** Its bank slot (stable while loaded, kept by a replacement under the same name). */
  slot: number;
  r: number;
  loraAlpha: number;
  useRslora: boolean;
  targetModules: LinearModule[];
  baseModelNameOrPath: string;
  /** 1 on the first load, +1 on each replacement under the same name. */
  version: number;
}

/** Plain snapshot of the engine's state (tests, dashboards). */
export interface EngineStats {
  running: number;
  waiting: number;
  freeBlocks: number;
  totalBlocks: number;
  maxContext: number;
  iterations: number;
  preemptions: number;
  policy: PolicyName;
  /** Per-submission GPU-time budget (ms; Infinity: none). */
  budgetMs: number;
  /** Iterations split into several submissions because they exceeded the budget. */
  slicedIterations: number;
  /** Measurements the cost model has absorbed. */
  costSamples: number;
  /** On-device learning, or null when it is off. */
  learning: LearningStatus | null;
  /** The prefix cache's counts (src/engine/prefix.ts), or null when it is off. */
  prefixCache: PrefixCacheCounts | null;
  /** KV blocks freed early because no later query of their sequence could attend to them (kv_window). */
  prunedBlocks: number;
}

/** Cumulative prefix-cache counts (see PrefixStats in src/scheduler/stats.ts for their meaning). */
export type PrefixCacheCounts = Omit<PrefixStats, 'type' | 't'>;
