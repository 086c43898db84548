/**
 * Every request field is either understood or refused: a field the engine does not implement
 * (functions, echo, audio, …) or does not know (a typo, another API's name) fails the
 * request with an InvalidRequestError naming it (`param`, OpenAI's invalid_request_error), instead of
 * being silently ignored and answered as if it had not been asked.
 */
import { InvalidRequestError } from './errors.ts';

/** Fields both endpoints take (SamplingParams in types.ts). */
const SAMPLING = ['model', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'top_k', 'min_p', 'seed', 'stop', 'presence_penalty', 'frequency_penalty', 'repetition_penalty', 'ignore_eos', 'return_token_ids', 'n', 'adapter', 'user', 'signal', 'kv_window', 'logit_bias', 'response_format'] as const;

const FIELDS = {
  chat: new Set<string>([...SAMPLING, 'messages', 'stream', 'stream_options', 'logprobs', 'top_logprobs', 'truncation', 'tools', 'tool_choice', 'parallel_tool_calls']),
  completions: new Set<string>([...SAMPLING, 'prompt', 'stream', 'stream_options', 'logprobs']),
};

/** Fields of OpenAI's API (or a peer's) this engine knows and does not implement, and what to do instead. */
const NOT_IMPLEMENTED: Record<string, string> = {
  functions: 'is the deprecated form of tools: use tools and tool_choice',
  function_call: 'is the deprecated form of tool_choice: use tools and tool_choice',
  echo: 'is not implemented (return_token_ids gives the prompt ids)',
  suffix: 'is not implemented (no fill-in-the-middle)',
  best_of: 'is not implemented (n gives several choices)',
  audio: 'is not implemented: the engine generates text only',
  modalities: 'is not implemented: the engine generates text only',
  prediction: 'is not implemented',
  reasoning_effort: 'is not implemented',
  service_tier: 'does not apply to a local engine',
  store: 'does not apply to a local engine',
  metadata: 'does not apply to a local engine',
  web_search_options: 'is not implemented',
};

/** Refuse a field `endpoint` does not take (null/undefined values of known OpenAI fields count as absent). */
export function checkRequestFields(params: unknown, endpoint: keyof typeof FIELDS): void {
  if (typeof params !== 'object' || params === null || Array.isArray(params)) throw new InvalidRequestError('(request)', 'must be an object of request fields');
  const known = FIELDS[endpoint];
  for (const [field, value] of Object.entries(params)) {
    if (known.has(field)) continue;
    const why = NOT_IMPLEMENTED[field];
    if (why !== undefined) {
      if (value === null || value === undefined) continue;
      throw new InvalidRequestError(field, `is not supported by this engine: ${why}`);
    }
    throw new InvalidRequestError(field, `is not a field of ${endpoint === 'chat' ? 'chat.completions' : 'completions'}.create (known: ${[...known].sort().join(', ')})`);
  }
  const so = (params as { stream_options?: unknown }).stream_options;
  if (so !== undefined && so !== null) {
    if (typeof so !== 'object' || Array.isArray(so)) throw new InvalidRequestError('stream_options', 'must be an object {include_usage}');
    for (const k of Object.keys(so)) if (k !== 'include_usage') throw new InvalidRequestError(`stream_options.${k}`, 'is not supported (only include_usage)');
  }
}
