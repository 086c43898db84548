/**
 * Structured output and tools through `mace serve --node` with the official `openai` client: the
 * engine's response_format (json_schema, json_object) and forced tool calls (src/engine/structured/)
 * reach HTTP clients in OpenAI's shapes, streaming and not.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMace, STORIES, type MaceServer } from './serve-helpers.ts';

const T = 120_000;
let srv: MaceServer;
let client: OpenAI;

beforeAll(async () => {
  srv = await startMace(['--node']);
  client = new OpenAI({ baseURL: srv.baseURL, apiKey: 'unused', maxRetries: 0 });
}, T);

afterAll(async () => {
  await srv?.stop();
}, T);

const messages = [{ role: 'user' as const, content: 'Tell me about a pet.' }];
const schema = { type: 'object', properties: { name: { type: 'string' }, age: { type: 'integer' } }, required: ['name', 'age'], additionalProperties: false };
const weather = { type: 'function' as const, function: { name: 'get_weather', description: 'Weather in a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false } } };

describe('mace serve: response_format and tools with the openai client', () => {
  it('json_schema output parses and fits the schema, over several seeds, non-streaming and streaming', async () => {
    const response_format = { type: 'json_schema' as const, json_schema: { name: 'pet', schema, strict: true } };
    for (const seed of [1, 2]) {
      const r = await client.chat.completions.create({ model: STORIES, messages, response_format, seed, temperature: 1, max_tokens: 48 });
      const v = JSON.parse(r.choices[0].message.content!);
      expect(Object.keys(v).sort()).toEqual(['age', 'name']);
      expect(typeof v.name).toBe('string');
      expect(Number.isInteger(v.age)).toBe(true);
    }
    let text = '';
    for await (const c of await client.chat.completions.create({ model: STORIES, messages, response_format, seed: 3, temperature: 1, max_tokens: 48, stream: true })) text += c.choices[0]?.delta?.content ?? '';
    expect(Object.keys(JSON.parse(text)).sort()).toEqual(['age', 'name']);
  }, T);

  it('a forced tool call comes back as tool_calls with JSON arguments (and streamed as delta.tool_calls)', async () => {
    const tool_choice = { type: 'function' as const, function: { name: 'get_weather' } };
    const r = await client.chat.completions.create({ model: STORIES, messages: [{ role: 'user', content: 'Weather in Paris?' }], tools: [weather], tool_choice, max_tokens: 48, temperature: 0 });
    const choice = r.choices[0];
    expect(choice.finish_reason).toBe('tool_calls');
    const call = choice.message.tool_calls![0] as { type: string; function: { name: string; arguments: string } };
    expect([call.type, call.function.name]).toEqual(['function', 'get_weather']);
    expect(typeof JSON.parse(call.function.arguments).city).toBe('string');
    const deltas: { function?: { name?: string; arguments?: string } }[] = [];
    let finish: string | null = null;
    for await (const c of await client.chat.completions.create({ model: STORIES, messages: [{ role: 'user', content: 'Weather in Paris?' }], tools: [weather], tool_choice, max_tokens: 48, temperature: 0, stream: true })) {
      deltas.push(...(c.choices[0]?.delta?.tool_calls ?? []));
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    expect(finish).toBe('tool_calls');
    expect(deltas.map((d) => d.function?.name ?? '').join('')).toBe('get_weather');
    expect(deltas.map((d) => d.function?.arguments ?? '').join('')).toBe(call.function.arguments);
  }, T);

  it('an unsupported schema feature is a 400 naming the field', async () => {
    const bad = await client.chat.completions
      .create({ model: STORIES, messages, max_tokens: 8, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', pattern: '^(a|b)+$', format: 'made-up-format' } } } })
      .catch((e) => e);
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
    expect(String(bad.param)).toMatch(/^response_format/);
  }, T);
});
