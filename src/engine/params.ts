/**
 * Request parameters (OpenAI names, possibly null) -> the engine's normalised per-request settings,
 * with every range checked up front so a bad request fails alone with an InvalidRequestError that
 * names the field, before it takes any queue slot or KV block.
 */
import type { SamplingSettings } from '../kernels/sampling.ts';
import { InvalidRequestError } from './errors.ts';
import type { SamplingParams } from './types.ts';
import type { SinksWindow } from '../kv/pruning.ts';
import { MAX_LOGIT_BIAS } from '../kernels/logit-mask.ts';
import type { SchemaNode } from './structured/schema.ts';
import type { TokenVocab } from './structured/vocab.ts';
import type { LogitBiasEntry } from './sampler.ts';

/** The grammar a request's output follows (structured output or a forced tool call). */
export interface StructuredSettings {
  node: SchemaNode;
  vocab: TokenVocab;
  /** The request field its errors name ('response_format', 'tool_choice'). */
  param: string;
}

export interface PenaltySettings {
  repetition: number;
  presence: number;
  frequency: number;
}

export interface RequestSettings {
  sampling: SamplingSettings;
  penalty: PenaltySettings;
  /** u32 seed of the request's PRNG. */
  seed: number;
  stop: string[];
  /** null: until the context is full. */
  maxTokens: number | null;
  ignoreEos: boolean;
  /** null: no logprobs; else the number of top candidates per token. */
  topLogprobs: number | null;
  returnTokenIds: boolean;
  /** Name of the LoRA adapter to run with (checked against the loaded ones at submit); null: none. */
  adapter: string | null;
  /** Attention sinks + recent window (KV pruning, src/kv/pruning.ts); null: the engine's default. */
  kvWindow: SinksWindow | null;
  /** Choices to generate (each its own sequence, seed + i; they share the prompt's cached blocks). */
  n: number;
  /** Grammar-constrained decoding (set by the endpoint from response_format / tool_choice); null: none. */
  structured: StructuredSettings | null;
  /** logit_bias entries (set by the endpoint, which knows the vocabulary); null: none. */
  logitBias: LogitBiasEntry[] | null;
}

/** Most choices one request may ask for (OpenAI's limit). */
export const MAX_CHOICES = 128;

export interface ParamLimits {
  /** Candidates the engine keeps per row: top_k above it is clamped to it. */
  candidates: number;
  /** Most top logprobs the engine can return per token. */
  topLogprobs: number;
}

const MAX_STOPS = 4;

export { checkPromptChars, promptCharLimit, PROMPT_CHARS_PER_TOKEN } from '../model/prompt.ts';

function num(name: string, v: number | null | undefined, def: number, lo: number, hi: number, loOpen = false): number {
  if (v === null || v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new InvalidRequestError(name, `= ${String(v)} must be a finite number`);
  if (v < lo || v > hi || (loOpen && v === lo)) throw new InvalidRequestError(name, `= ${v} must be in ${loOpen ? '(' : '['}${lo}, ${hi}]`);
  return v;
}

function int(name: string, v: number | null | undefined, lo: number): number | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo) throw new InvalidRequestError(name, `= ${String(v)} must be an integer >= ${lo}`);
  return v;
}

function stops(v: string | string[] | null | undefined): string[] {
  if (v === null || v === undefined) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length > MAX_STOPS) throw new InvalidRequestError('stop', `must be a string or an array of at most ${MAX_STOPS} strings`);
  list.forEach((s, i) => {
    if (typeof s !== 'string' || s.length === 0) throw new InvalidRequestError(`stop[${i}]`, 'must be a non-empty string');
  });
  return [...list];
}

/** A seed from the platform when the request gave none (so two unseeded requests differ). */
function freshSeed(): number {
  const c = (globalThis as { crypto?: Crypto }).crypto;
  if (c?.getRandomValues) return c.getRandomValues(new Uint32Array(1))[0];
  return Math.floor(Math.random() * 2 ** 32);
}

/**
 * Normalise the shared sampling parameters. `topLogprobs` comes from the endpoint (chat:
 * logprobs + top_logprobs, completions: logprobs as a count).
 */
export function normalizeParams(p: SamplingParams, topLogprobs: number | null, limits: ParamLimits): RequestSettings {
  const n = p.n ?? 1;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_CHOICES) throw new InvalidRequestError('n', `= ${String(n)} must be an integer in [1, ${MAX_CHOICES}]`);
  const temperature = num('temperature', p.temperature, 1, 0, 2);
  const topP = num('top_p', p.top_p, 1, 0, 1);
  const minP = num('min_p', p.min_p, 0, 0, 1);
  const rawTopK = p.top_k ?? 0;
  if (typeof rawTopK !== 'number' || !Number.isInteger(rawTopK) || rawTopK < -1) throw new InvalidRequestError('top_k', `= ${String(rawTopK)} must be -1, 0 (off) or a positive integer`);
  // Sampling only ever sees the engine's candidates, so a larger top_k means the same as off.
  const topK = rawTopK <= 0 ? 0 : Math.min(rawTopK, limits.candidates);
  const seed = p.seed === null || p.seed === undefined ? freshSeed() : seedOf(p.seed);
  const maxTokens = int('max_tokens', p.max_tokens ?? p.max_completion_tokens, 1);
  if (topLogprobs !== null && (!Number.isInteger(topLogprobs) || topLogprobs < 0 || topLogprobs > limits.topLogprobs)) {
    throw new InvalidRequestError('top_logprobs', `= ${topLogprobs} must be an integer in [0, ${limits.topLogprobs}]`);
  }
  return {
    sampling: { temperature, topP, minP, topK },
    penalty: {
      repetition: num('repetition_penalty', p.repetition_penalty, 1, 0, 100, true),
      presence: num('presence_penalty', p.presence_penalty, 0, -2, 2),
      frequency: num('frequency_penalty', p.frequency_penalty, 0, -2, 2),
    },
    seed,
    stop: stops(p.stop),
    maxTokens,
    ignoreEos: p.ignore_eos === true,
    topLogprobs,
    returnTokenIds: p.return_token_ids === true,
    adapter: adapterOf(p.adapter),
    kvWindow: kvWindowOf(p.kv_window, 'kv_window'),
    n,
    structured: null,
    logitBias: null,
  };
}

/**
 * OpenAI's logit_bias: a map from token id (a decimal string) to a bias in [-100, 100] added to
 * that token's logit before sampling; at most MAX_LOGIT_BIAS entries. Null when absent or empty.
 */
export function logitBiasOf(v: unknown, vocab: number): LogitBiasEntry[] | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'object' || Array.isArray(v)) throw new InvalidRequestError('logit_bias', `must be an object mapping token ids to biases in [-100, 100], got ${JSON.stringify(v)}`);
  const entries = Object.entries(v as Record<string, unknown>);
  if (entries.length > MAX_LOGIT_BIAS) throw new InvalidRequestError('logit_bias', `has ${entries.length} entries; at most ${MAX_LOGIT_BIAS}`);
  const out = entries.map(([key, bias]) => {
    const id = Number(key);
    if (!/^(0|[1-9][0-9]*)$/.test(key) || id >= vocab) throw new InvalidRequestError(`logit_bias.${key}`, `is not a token id of this model (an integer in [0, ${vocab}) written in decimal)`);
    if (typeof bias !== 'number' || !Number.isFinite(bias) || bias < -100 || bias > 100) throw new InvalidRequestError(`logit_bias.${key}`, `= ${JSON.stringify(bias)} must be a number in [-100, 100]`);
    return { id, value: bias };
  });
  return out.length ? out : null;
}

/** A request's kv_window ({sinks, window}), checked; null when absent. */
export function kvWindowOf(v: unknown, field: string): SinksWindow | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'object' || Array.isArray(v)) throw new InvalidRequestError(field, `must be an object {sinks, window}, got ${JSON.stringify(v)}`);
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (k !== 'sinks' && k !== 'window') throw new InvalidRequestError(`${field}.${k}`, 'is not a field of kv_window (it takes sinks and window)');
  const sinks = o.sinks ?? 0;
  const window = o.window;
  if (typeof sinks !== 'number' || !Number.isInteger(sinks) || sinks < 0) throw new InvalidRequestError(`${field}.sinks`, `= ${String(sinks)} must be an integer >= 0`);
  if (typeof window !== 'number' || !Number.isInteger(window) || window < 1) throw new InvalidRequestError(`${field}.window`, `= ${String(window)} must be an integer >= 1 (the positions a query sees, its own included)`);
  return { sinks, window };
}

function adapterOf(v: string | null | undefined): string | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'string' || v.length === 0) throw new InvalidRequestError('adapter', `= ${JSON.stringify(v) ?? String(v)} must be the name of a loaded adapter (a non-empty string)`);
  return v;
}

function seedOf(v: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new InvalidRequestError('seed', `= ${String(v)} must be an integer`);
  return v >>> 0;
}
