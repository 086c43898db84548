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
    expect(param({ messages: [], response_format: { type: 'json_object' } }, 'chat')).toBe('response_format');
    expect(() => checkRequestFields({ messages: [], tools: [{}] }, 'chat')).toThrow('request: tools is not supported by this engine: tool calling is not implemented yet');
    expect(param({ prompt: 'x', logit_bias: { 5: 10 } }, 'completions')).toBe('logit_bias');
    expect(param({ prompt: 'x', echo: true }, 'completions')).toBe('echo');
    expect(param({ messages: [], tools: undefined, tool_choice: null, response_format: null }, 'chat')).toBeNull();
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
