/**
 * Structured output, tools and logit_bias through the engine on the real stories260K (a model that
 * never saw JSON: whatever parses is the mask's doing). Sampling at temperature 1 over many seeds,
 * finite max_tokens, constrained and free requests batched in the same iterations.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createEngine, type Engine } from '../../src/engine/openai.ts';
import { GrammarMatcher, maskWords } from '../../src/engine/structured/matcher.ts';
import { compileSchema } from '../../src/engine/structured/schema.ts';
import { vocabFor } from '../../src/engine/structured/vocab.ts';
import type { ChatCompletionChunk } from '../../src/engine/types.ts';
import { applyLogitMaskRef } from '../../src/kernels/logit-mask.ts';
import { argmaxRef } from '../../src/kernels/sampling.ts';
import { ReferenceModel } from '../../src/model/reference.ts';
import { loadStories, SMALL_KV, type Loaded } from './engine-helpers.ts';
import { testGpu } from './gpu.ts';
import { validates } from '../util/json-schema.ts';

let engine: Engine;
let loaded: Loaded;

beforeAll(async () => {
  const ctx = await testGpu();
  loaded = await loadStories(ctx);
  engine = createEngine(ctx, loaded.model, { kvBudgetBytes: SMALL_KV, maxTokensPerIteration: 64, maxSeqs: 8, modelName: 'stories260K', scheduler: { budgetMs: Infinity } });
});

const PET = {
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 12 },
    age: { type: 'integer' },
    kind: { enum: ['cat', 'dog', 'bird'] },
    friends: { type: 'array', items: { type: 'string', maxLength: 6 }, maxItems: 3 },
    happy: { type: 'boolean' },
  },
  required: ['name', 'kind', 'age'],
  additionalProperties: false,
};

const messages = [{ role: 'user', content: 'Once upon a time, there was a pet named' }];

describe('response_format on stories260K', () => {
  it('json_schema: 24 seeds at temperature 1, 6 constrained + 2 free requests per batch, all parse and validate', async () => {
    const before = engine.stats().iterations;
    let tokens = 0;
    for (let batch = 0; batch < 4; batch++) {
      const seeds = Array.from({ length: 6 }, (_, i) => batch * 6 + i + 1);
      const constrained = seeds.map((seed) => engine.chat.completions.create({ messages, seed, temperature: 1, max_tokens: 40, response_format: { type: 'json_schema', json_schema: { name: 'pet', schema: PET } } }));
      const free = [0, 1].map((i) => engine.chat.completions.create({ messages, seed: 100 + batch * 2 + i, temperature: 1, max_tokens: 40 }));
      const [outs, frees] = await Promise.all([Promise.all(constrained), Promise.all(free)]);
      for (const r of outs) {
        const text = r.choices[0].message.content!;
        const value = JSON.parse(text);
        expect(validates(PET, value), text).toBe(true);
        expect(r.usage.completion_tokens).toBeLessThanOrEqual(40);
        expect(['stop', 'length']).toContain(r.choices[0].finish_reason);
        tokens += r.usage.completion_tokens;
      }
      // The free rows of the same iterations are not masked: stories260K writes prose, not JSON.
      for (const r of frees) expect(() => JSON.parse(r.choices[0].message.content!)).toThrow();
    }
    expect(tokens).toBeGreaterThan(24 * 12); // real outputs, not empty objects
    expect(engine.stats().iterations - before).toBeLessThan(4 * 45); // batched: ~one iteration per token of a batch
    expect(engine.stats().freeBlocks).toBe(engine.stats().totalBlocks);
  });

  it('greedy under a schema and a logit_bias, batched with a free row: exactly the CPU reference (forward + mask + bias + argmax)', async () => {
    const tok = loaded.model.tokenizer;
    const V = loaded.model.config.vocabSize;
    const vocab = vocabFor(tok, V, [...tok.eosIds, ...loaded.model.config.eosTokenIds]);
    const one = vocab.charToken.get('1')!;
    const prompt = 'Once upon a time';
    const max = 44;
    const [constrained, free] = await Promise.all([
      engine.completions.create({ prompt, temperature: 0, max_tokens: max, return_token_ids: true, logit_bias: { [one]: 3 }, response_format: { type: 'json_schema', json_schema: { name: 'pet', schema: PET } } }),
      engine.completions.create({ prompt: 'The cat', temperature: 0, max_tokens: max, return_token_ids: true }),
    ]);
    const ref = new ReferenceModel(loaded.model.config, loaded.host);
    const cache = ref.newCache(64);
    const ids = tok.encode(prompt);
    let logits = ref.forward(ids, cache).subarray((ids.length - 1) * V);
    const m = new GrammarMatcher(compileSchema(PET, 's'), vocab, 'r');
    const words = new Uint32Array(maskWords(V));
    const want: number[] = [];
    for (let i = 0; i < max; i++) {
      m.fillMask(words, 0, max - i);
      const next = argmaxRef(applyLogitMaskRef(logits, 1, V, [{ mask: words, bias: [{ id: one, value: 3 }] }]), 1, V)[0];
      want.push(next);
      m.accept(next);
      if (vocab.eos.has(next) || m.terminal) break;
      logits = ref.forward([next], cache);
    }
    expect(constrained.choices[0].token_ids).toEqual(want);
    expect(validates(PET, JSON.parse(constrained.choices[0].text))).toBe(true);
    // The free row of the same iterations: exactly what it writes alone.
    const alone = await engine.completions.create({ prompt: 'The cat', temperature: 0, max_tokens: max, return_token_ids: true });
    expect(free.choices[0].token_ids).toEqual(alone.choices[0].token_ids);
  });

  it('a tight max_tokens forces the shortest completion: still parses, finish_reason stop', async () => {
    const schema = { type: 'object', properties: { a: { type: 'string' }, b: { type: 'array', items: { type: 'integer' }, minItems: 2 } }, required: ['a', 'b'], additionalProperties: false };
    for (let seed = 1; seed <= 6; seed++) {
      const r = await engine.chat.completions.create({ messages, seed, temperature: 1, max_tokens: 19, response_format: { type: 'json_schema', json_schema: { name: 's', schema } } });
      const text = r.choices[0].message.content!;
      expect(validates(schema, JSON.parse(text)), text).toBe(true);
      expect(r.choices[0].finish_reason).toBe('stop'); // the object closed: the grammar completed
    }
    // The shortest output, '{"a":"","b":[0,0]}', is 18 characters (a token each at worst): 17 cannot hold it.
    await expect(engine.chat.completions.create({ messages, max_tokens: 17, response_format: { type: 'json_schema', json_schema: { name: 's', schema } } })).rejects.toMatchObject({ code: 'invalid-request', param: 'max_tokens' });
  });

  it('json_object (chat and completions, streaming too)', async () => {
    for (let seed = 1; seed <= 4; seed++) {
      const r = await engine.chat.completions.create({ messages, seed, temperature: 1, max_tokens: 24, response_format: { type: 'json_object' } });
      const v = JSON.parse(r.choices[0].message.content!);
      expect(typeof v === 'object' && v !== null && !Array.isArray(v)).toBe(true);
    }
    const c = await engine.completions.create({ prompt: 'The cat', seed: 9, max_tokens: 20, response_format: { type: 'json_object' } });
    expect(typeof JSON.parse(c.choices[0].text)).toBe('object');
    let text = '';
    for await (const ch of await engine.chat.completions.create({ messages, seed: 5, max_tokens: 20, stream: true, response_format: { type: 'json_object' } })) text += ch.choices[0].delta.content ?? '';
    expect(typeof JSON.parse(text)).toBe('object');
  });

  it('unsupported schema keywords are typed errors naming the path', async () => {
    await expect(engine.chat.completions.create({ messages, response_format: { type: 'json_schema', json_schema: { name: 's', schema: { type: 'object', properties: { d: { type: 'string', format: 'date' } } } } } })).rejects.toMatchObject({ code: 'invalid-request', param: 'response_format.json_schema.schema.properties.d.format' });
  });
});

const TOOLS = [
  { type: 'function' as const, function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 12 }, days: { type: 'integer' } }, required: ['city'], additionalProperties: false } } },
  { type: 'function' as const, function: { name: 'tell_story', parameters: { type: 'object', properties: { topic: { enum: ['cat', 'dog'] } }, required: ['topic'], additionalProperties: false } } },
];

describe('tools on stories260K', () => {
  it("tool_choice 'required': 8 seeds in one batch, every answer parses into tool_calls of the tools", async () => {
    const rs = await Promise.all(Array.from({ length: 8 }, (_, i) => engine.chat.completions.create({ messages: [{ role: 'user', content: 'What is the weather?' }], tools: TOOLS, tool_choice: 'required', seed: i + 1, temperature: 1, max_tokens: 64 })));
    for (const r of rs) {
      const choice = r.choices[0];
      expect(choice.finish_reason).toBe('tool_calls');
      expect(choice.message.content).toBeNull();
      const call = choice.message.tool_calls![0];
      expect(call.type).toBe('function');
      expect(call.id).toMatch(/^call_/);
      expect(TOOLS.map((t) => t.function.name)).toContain(call.function.name);
      const tool = TOOLS.find((t) => t.function.name === call.function.name)!;
      expect(validates(tool.function.parameters, JSON.parse(call.function.arguments))).toBe(true);
    }
  });

  it('a named function is the one called; streaming sends delta.tool_calls; a tool result turn is accepted', async () => {
    const named = { type: 'function' as const, function: { name: 'tell_story' } };
    const r = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'A story' }], tools: TOOLS, tool_choice: named, seed: 3, max_tokens: 64 });
    expect(r.choices[0].message.tool_calls![0].function.name).toBe('tell_story');
    const chunks: ChatCompletionChunk[] = [];
    for await (const c of await engine.chat.completions.create({ messages: [{ role: 'user', content: 'A story' }], tools: TOOLS, tool_choice: named, seed: 4, max_tokens: 64, stream: true })) chunks.push(c);
    const calls = chunks.flatMap((c) => c.choices[0].delta.tool_calls ?? []);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ index: 0, type: 'function', function: { name: 'tell_story' } });
    expect(JSON.parse(calls[0].function.arguments).topic).toMatch(/^(cat|dog)$/);
    expect(chunks.at(-1)!.choices[0].finish_reason).toBe('tool_calls');
    const call = r.choices[0].message.tool_calls![0];
    const next = await engine.chat.completions.create({
      messages: [{ role: 'user', content: 'A story' }, { role: 'assistant', content: null, tool_calls: [call] }, { role: 'tool', tool_call_id: call.id, content: 'Once upon a time' }],
      tools: TOOLS, tool_choice: 'none', seed: 1, max_tokens: 8,
    });
    expect(next.choices[0].finish_reason).not.toBe('tool_calls');
    expect(typeof next.choices[0].message.content).toBe('string');
  });
});

describe('tools with tool_choice auto on stories260K', () => {
  it('the fallback system block lists the tools; prose comes back as content (streamed too)', async () => {
    const ask = [{ role: 'user', content: 'Once upon a time' }];
    const plain = await engine.chat.completions.create({ messages: ask, seed: 1, max_tokens: 12 });
    const auto = await engine.chat.completions.create({ messages: ask, tools: TOOLS, seed: 1, max_tokens: 12 });
    expect(auto.usage.prompt_tokens).toBeGreaterThan(plain.usage.prompt_tokens + 20); // the tools' JSON is in the prompt
    expect(auto.choices[0].finish_reason).not.toBe('tool_calls');
    expect(typeof auto.choices[0].message.content).toBe('string');
    expect(auto.choices[0].message.tool_calls).toBeUndefined();
    let text = '';
    for await (const c of await engine.chat.completions.create({ messages: ask, tools: TOOLS, seed: 1, max_tokens: 12, stream: true })) text += c.choices[0].delta.content ?? '';
    expect(text).toBe(auto.choices[0].message.content);
    const none = await engine.chat.completions.create({ messages: ask, tools: TOOLS, tool_choice: 'none', seed: 1, max_tokens: 12 });
    expect(none.usage.prompt_tokens).toBe(plain.usage.prompt_tokens); // 'none': the tools are not offered
  });
});

describe('logit_bias on stories260K', () => {
  const prompt = 'Once upon a time';
  it('+100 on one token: it is sampled every time; -100 bans a token the model otherwise writes', async () => {
    const forced = await engine.completions.create({ prompt, seed: 1, temperature: 1, max_tokens: 12, logit_bias: { 400: 100 }, return_token_ids: true, ignore_eos: true });
    expect(forced.choices[0].token_ids).toEqual(new Array(12).fill(400));
    const free = await engine.completions.create({ prompt, seed: 2, temperature: 1, max_tokens: 40, return_token_ids: true, ignore_eos: true });
    const common = [...new Set(free.choices[0].token_ids!)].sort((a, b) => free.choices[0].token_ids!.filter((t) => t === b).length - free.choices[0].token_ids!.filter((t) => t === a).length)[0];
    const banned = await engine.completions.create({ prompt, seed: 2, temperature: 1, max_tokens: 40, logit_bias: { [common]: -100 }, return_token_ids: true, ignore_eos: true });
    expect(banned.choices[0].token_ids).not.toContain(common);
    await expect(engine.completions.create({ prompt, logit_bias: { 9999: 1 } })).rejects.toMatchObject({ code: 'invalid-request', param: 'logit_bias.9999' });
    await expect(engine.chat.completions.create({ messages, logit_bias: { 5: 200 } })).rejects.toMatchObject({ code: 'invalid-request', param: 'logit_bias.5' });
  });
});
