/**
 * The endpoints' side of structured output, logit_bias and tools (openai.ts calls these):
 * request settings from response_format / a forced tool call / logit_bias, and a chat answer's
 * tool calls — whole (non-streaming) or as a stream that holds back text which may still become
 * a call (all of it when the call is forced) and then sends `delta.tool_calls`.
 */
import type { ModelConfig } from '../../model/config.ts';
import type { TextTokenizer } from '../../model/tokenizer.ts';
import { InvalidRequestError } from '../errors.ts';
import { logitBiasOf, type RequestSettings } from '../params.ts';
import type { RequestEvent } from '../request.ts';
import type { ChatFinishReason } from '../types.ts';
import { checkBudget, responseFormatNode } from './response-format.ts';
import type { SchemaNode } from './schema.ts';
import { mayBeToolCall, parseToolCalls, type ToolCall, type ToolPlan } from './tools.ts';
import { vocabFor } from './vocab.ts';

/** The grammar of a request: response_format's, or a forced tool call's; null: free text. */
export function requestGrammar(responseFormat: unknown, tools: ToolPlan | null): { node: SchemaNode; param: string } | null {
  const format = responseFormatNode(responseFormat);
  if (tools?.forced) {
    if (format) throw new InvalidRequestError('response_format', 'cannot be combined with a forced tool call (tool_choice required or a named function): the call has its own grammar');
    return { node: tools.forced, param: 'tool_choice' };
  }
  return format ? { node: format, param: 'response_format' } : null;
}

/**
 * Complete `settings` with the grammar and the logit bias (they need the model's vocabulary);
 * refuses a budget (max_tokens, or the context after `promptTokens`) below the grammar's shortest output.
 */
export function applyGrammarAndBias(settings: RequestSettings, grammar: { node: SchemaNode; param: string } | null, logitBias: unknown, model: { tokenizer: TextTokenizer; config: ModelConfig }, maxContext: number, promptTokens: number): void {
  settings.logitBias = logitBiasOf(logitBias, model.config.vocabSize);
  if (!grammar) return;
  // Both would break "the output parses": a stop string can cut the JSON, and past its end (EOS) nothing may follow.
  if (settings.stop.length) throw new InvalidRequestError('stop', `cannot be combined with ${grammar.param}: a stop string could cut the JSON short`);
  if (settings.ignoreEos) throw new InvalidRequestError('ignore_eos', `cannot be combined with ${grammar.param}: the output ends where its grammar does`);
  const vocab = vocabFor(model.tokenizer, model.config.vocabSize, [...model.tokenizer.eosIds, ...model.config.eosTokenIds]);
  const room = maxContext - promptTokens;
  const byMax = settings.maxTokens !== null && settings.maxTokens <= room;
  checkBudget(grammar.node, vocab, grammar.param, byMax ? settings.maxTokens! : room, byMax);
  settings.structured = { node: grammar.node, vocab, param: grammar.param };
}

/** A chat answer: its content, or its tool calls (content null, finish_reason 'tool_calls'). */
export function chatAnswer(text: string, reason: ChatFinishReason, plan: ToolPlan | null): { content: string | null; toolCalls: ToolCall[] | null; reason: ChatFinishReason } {
  const calls = plan && plan.choice !== 'none' && reason !== 'abort' ? parseToolCalls(text, plan) : null;
  return calls ? { content: null, toolCalls: calls, reason: 'tool_calls' } : { content: text, toolCalls: null, reason };
}

/** A chat stream's event: a text delta (maybe with tool calls), or the end. */
export type ChatEvent =
  | { kind: 'delta'; text: string; toolCalls: ToolCall[] | null; ids: number[]; logprobs: RequestEvent['logprobs'] }
  | { kind: 'done'; reason: ChatFinishReason; usage: Extract<RequestEvent, { kind: 'done' }>['usage']; ids: number[]; logprobs: RequestEvent['logprobs'] };

/**
 * A request's events as chat events. Without tools (or tool_choice 'none') the same events. With
 * tools, text that may still become a call is held back (all of it when the call is forced) and
 * its ids and logprobs wait with it; at the end held text is either the calls or content.
 */
export async function* chatEvents(events: AsyncIterable<RequestEvent>, plan: ToolPlan | null): AsyncGenerator<ChatEvent> {
  let holding = plan !== null && plan.choice !== 'none';
  let held = '';
  let ids: number[] = [];
  let logprobs: RequestEvent['logprobs'] = [];
  for await (const ev of events) {
    if (!holding) {
      if (ev.kind === 'delta') yield { kind: 'delta', text: ev.text, toolCalls: null, ids: ev.ids, logprobs: ev.logprobs };
      else yield { kind: 'done', reason: ev.reason, usage: ev.usage, ids: ev.ids, logprobs: ev.logprobs };
      continue;
    }
    ids = [...ids, ...ev.ids];
    logprobs = [...logprobs, ...ev.logprobs];
    if (ev.kind === 'delta') {
      held += ev.text;
      if (plan!.forced || mayBeToolCall(held)) continue;
      holding = false; // plain content after all: send what was held, then stream as usual
      yield { kind: 'delta', text: held, toolCalls: null, ids, logprobs };
      continue;
    }
    const answer = chatAnswer(held, ev.reason, plan);
    if (answer.toolCalls) yield { kind: 'delta', text: '', toolCalls: answer.toolCalls, ids, logprobs };
    else if (held) yield { kind: 'delta', text: held, toolCalls: null, ids, logprobs };
    const sent = answer.toolCalls || held;
    yield { kind: 'done', reason: answer.reason, usage: ev.usage, ids: sent ? [] : ids, logprobs: sent ? [] : logprobs };
  }
}
