/** Unknown and unimplemented request fields are refused by name (issue 16), never ignored. */
import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../src/engine/errors.ts';
import { checkRequestFields } from '../../src/engine/request-fields.ts';

function param(p: unknown, endpoint: 'chat' | 'completions'): string | null {
  try {
    checkRequestFields(p, endpoint);
    return null;
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidRequestError);
    return (e as InvalidRequestError).param;
  }
}

describe('request fields', () => {
  it('every field the endpoints implement passes', () => {
    const chat = { model: 'm', messages: [], stream: true, stream_options: { include_usage: true }, logprobs: true, top_logprobs: 2, truncation: 'auto', max_tokens: 3, max_completion_tokens: 3, temperature: 0, top_p: 1, top_k: 0, min_p: 0, seed: 1, stop: ['x'], presence_penalty: 0, frequency_penalty: 0, repetition_penalty: 1, ignore_eos: true, return_token_ids: true, n: 1, adapter: null, user: 'u', signal: undefined, kv_window: null };
    expect(param(chat, 'chat')).toBeNull();
    const { messages: _m, truncation: _t, top_logprobs: _l, ...rest } = chat;
    expect(param({ ...rest, prompt: 'hi', logprobs: 2 }, 'completions')).toBeNull();
  });

  it('refuses fields it does not implement, naming them and saying why; null or undefined counts as absent', () => {
    expect(param({ messages: [], functions: [{ name: 'f' }] }, 'chat')).toBe('functions');
    expect(() => checkRequestFields({ messages: [], function_call: 'auto' }, 'chat')).toThrow('request: function_call is not supported by this engine: is the deprecated form of tool_choice: use tools and tool_choice');
    expect(param({ prompt: 'x', best_of: 2 }, 'completions')).toBe('best_of');
    expect(param({ prompt: 'x', echo: true }, 'completions')).toBe('echo');
    expect(param({ messages: [], functions: undefined, audio: null }, 'chat')).toBeNull();
  });

  it('structured output, logit_bias and tools are fields now (their values are checked by the endpoints)', () => {
    expect(param({ messages: [], response_format: { type: 'json_object' }, logit_bias: { 5: 10 }, tools: [], tool_choice: 'auto', parallel_tool_calls: false }, 'chat')).toBeNull();
    expect(param({ prompt: 'x', response_format: { type: 'json_object' }, logit_bias: { 5: 10 } }, 'completions')).toBeNull();
    expect(param({ prompt: 'x', tools: [] }, 'completions')).toBe('tools'); // chat only
  });

  it('refuses unknown fields and the other endpoint\'s fields, listing the known ones', () => {
    expect(param({ messages: [], temprature: 0.5 }, 'chat')).toBe('temprature');
    expect(() => checkRequestFields({ messages: [], temprature: 0.5 }, 'chat')).toThrow(/temprature is not a field of chat\.completions\.create \(known: .*temperature/);
    expect(param({ prompt: 'x', messages: [] }, 'completions')).toBe('messages');
    expect(param({ prompt: 'x', truncation: 'auto' }, 'completions')).toBe('truncation');
    expect(param({ messages: [], stream_options: { include_usage: true, chunk_size: 3 } }, 'chat')).toBe('stream_options.chunk_size');
    expect(param('not an object', 'chat')).toBe('(request)');
  });
});
