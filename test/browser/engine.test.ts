/**
 * The serving engine end to end on stories260K (SwiftShader): the golden output through the
 * OpenAI-style API, continuous batching and preemption against single-request runs, seeds, stop
 * rules, streaming, abort, penalties and logprobs against CPU references, and per-request errors.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createEngine, type Engine } from '../../src/engine/openai.ts';
import { PromptTooLongError } from '../../src/engine/errors.ts';
import type { ChatCompletionChunk } from '../../src/engine/types.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import { applyPenaltiesRef } from '../../src/kernels/penalties.ts';
import { logprobsRef } from '../../src/kernels/logprobs.ts';
import { argmaxRef } from '../../src/kernels/sampling.ts';
import { ReferenceModel } from '../../src/model/reference.ts';
import { loadStories, SMALL_KV, type Loaded } from './engine-helpers.ts';
import { testGpu } from './gpu.ts';

let ctx: GpuContext;
let loaded: Loaded;
let engine: Engine;

beforeAll(async () => {
  ctx = await testGpu();
  loaded = await loadStories(ctx);
  engine = createEngine(ctx, loaded.model, { kvBudgetBytes: SMALL_KV, maxTokensPerIteration: 64, maxSeqs: 8, modelName: 'stories260K', scheduler: { budgetMs: Infinity } }); // no time budget: exact iteration counts
});

const PROMPTS = ['Once upon a time', 'The cat', 'Lily and Ben went to the park', 'One day, a big dog', 'Tom had a red ball.', 'She was sad', 'The sun', 'Mom said'];

async function greedyIds(e: Engine, prompt: string, max_tokens: number): Promise<number[]> {
  const r = await e.completions.create({ prompt, temperature: 0, max_tokens, return_token_ids: true, ignore_eos: true });
  return r.choices[0].token_ids!;
}

describe('engine on stories260K', () => {
  it('golden: completion of BOS alone, greedy, 200 tokens = reference.json ids and text', async () => {
    const r = await engine.completions.create({ prompt: '', temperature: 0, max_tokens: 200, return_token_ids: true });
    expect(r.prompt_token_ids).toEqual([1]);
    expect(r.choices[0].token_ids).toEqual(loaded.reference.output_ids_after_bos);
    expect(r.choices[0].text).toBe(loaded.reference.text);
    expect(r.choices[0].finish_reason).toBe('length');
    expect(r.object).toBe('text_completion');
    expect(r.model).toBe('stories260K');
    expect(r.usage).toMatchObject({ prompt_tokens: 1, completion_tokens: 200, total_tokens: 201 });
    expect(r.usage!.ttft_ms).toBeGreaterThan(0);
    expect(r.usage!.decode_tokens_per_s).toBeGreaterThan(0);
    expect(engine.stats()).toMatchObject({ running: 0, waiting: 0, freeBlocks: engine.stats().totalBlocks });
  });

  it('batches 8 concurrent greedy requests, each getting exactly its tokens when alone', async () => {
    const alone: number[][] = [];
    const before = engine.stats().iterations;
    for (const p of PROMPTS) alone.push(await greedyIds(engine, p, 24));
    const aloneIters = engine.stats().iterations - before;
    const together = await Promise.all(PROMPTS.map((p) => greedyIds(engine, p, 24)));
    const togetherIters = engine.stats().iterations - before - aloneIters;
    expect(together).toEqual(alone);
    // 8 x (1 prefill + 23 decodes) alone; together the prefills share one step and the decodes run as a batch.
    expect(aloneIters).toBe(8 * 24);
    expect(togetherIters).toBe(24);
  });

  it('preempts the newest request when KV blocks run out and still gives every request its own tokens', async () => {
    // 6 blocks = 96 tokens of cache for 4 requests that each grow to ~50 tokens (4 blocks).
    const small = createEngine(ctx, loaded.model, { kvBudgetBytes: 6 * 20480, maxTokensPerIteration: 64, maxSeqs: 4 });
    expect(small.stats().totalBlocks).toBe(6);
    const prompts = PROMPTS.slice(0, 4);
    const want = [];
    for (const p of prompts) want.push(await greedyIds(engine, p, 40));
    const got = await Promise.all(prompts.map((p) => greedyIds(small, p, 40)));
    expect(got).toEqual(want);
    expect(small.stats().preemptions).toBeGreaterThan(0);
    expect(small.stats().freeBlocks).toBe(6);
    small.destroy();
  });

  it('same seed gives the same sampled text, different seeds differ', async () => {
    const run = async (seed: number) => (await engine.completions.create({ prompt: 'Once upon a time', temperature: 1, top_p: 0.95, max_tokens: 40, seed })).choices[0].text;
    const a = await run(42);
    const b = await run(42);
    const [c, d] = await Promise.all([run(43), run(42)]); // seeded output does not depend on batching
    expect(b).toBe(a);
    expect(d).toBe(a);
    expect(c).not.toBe(a);
  });

  it('keeps the leading space of a continuation (text = decode(prompt + output) minus the prompt)', async () => {
    const prompt = 'Once upon a time, a little fox';
    const r = await engine.completions.create({ prompt, temperature: 0, max_tokens: 6, return_token_ids: true });
    const tok = loaded.model.tokenizer;
    const promptIds = tok.encode(prompt);
    expect(r.choices[0].text).toBe(tok.decode([...promptIds, ...r.choices[0].token_ids!]).slice(tok.decode(promptIds).length));
    expect(r.choices[0].text.startsWith(' ')).toBe(true);
  });

  it('feedback: thumbs-down, regenerate, thumbs-up on one context forms a DPO pair', async () => {
    const messages = [{ role: 'user' as const, content: 'The little dog' }];
    const first = await engine.chat.completions.create({ messages, temperature: 1, seed: 1, max_tokens: 8 });
    // The regenerate streams: streamed answers are recorded too.
    let streamed = '';
    let secondId = '';
    for await (const c of await engine.chat.completions.create({ messages, temperature: 1, seed: 2, max_tokens: 8, stream: true })) {
      streamed += c.choices[0].delta.content ?? '';
      secondId = c.id;
    }
    expect(streamed).not.toBe(first.choices[0].message.content);
    const before = engine.preferences.list().length;
    await engine.feedback({ completionId: first.id, rating: 'down' });
    expect(engine.preferences.list().length).toBe(before);
    const r = await engine.feedback({ completionId: secondId, rating: 'up' });
    expect(r.added).toHaveLength(1);
    const pair = engine.preferences.list().at(-1)!;
    expect(pair).toMatchObject({ chosen: streamed, rejected: first.choices[0].message.content, source: 'feedback' });
    await expect(engine.feedback({ completionId: 'chatcmpl-nope', rating: 'up' })).rejects.toMatchObject({ code: 'unknown-completion' });
    await expect(engine.feedback({ completionId: first.id, rating: 'meh' as 'up' })).rejects.toMatchObject({ code: 'bad-preference' });
    await expect(engine.preferences.add({ prompt: 'Once', chosen: 'a', rejected: 'a' })).rejects.toMatchObject({ code: 'bad-preference' });
    const added = await engine.preferences.add({ prompt: 'Once upon a time', chosen: ' there was a cat.', rejected: ' there was a dog.' });
    expect(added.added).toBe(true);
  });

  it('stops before a stop string and at max_tokens', async () => {
    const stopped = await engine.completions.create({ prompt: '', temperature: 0, stop: [' girl', 'never'], max_tokens: 100 });
    expect(stopped.choices[0].text).toBe('Once upon a time, there was a little');
    expect(stopped.choices[0].finish_reason).toBe('stop');
    const short = await engine.completions.create({ prompt: '', temperature: 0, max_tokens: 5, return_token_ids: true });
    expect(short.choices[0].token_ids).toEqual(loaded.reference.output_ids_after_bos.slice(0, 5));
    expect(short.choices[0].text).toBe(loaded.model.tokenizer.decode(loaded.reference.output_ids_after_bos.slice(0, 5)));
    expect(short.choices[0].finish_reason).toBe('length');
    expect(short.usage!.completion_tokens).toBe(5);
  });

  it('runs chat requests in completion mode (no chat template): BOS + contents joined by newlines', async () => {
    const chat = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Once upon a time' }], temperature: 0, max_tokens: 20, return_token_ids: true });
    const plain = await engine.completions.create({ prompt: 'Once upon a time', temperature: 0, max_tokens: 20 });
    expect(chat.prompt_token_ids).toEqual(loaded.model.tokenizer.encode('Once upon a time'));
    expect(chat.object).toBe('chat.completion');
    expect(chat.choices[0].message).toEqual({ role: 'assistant', content: plain.choices[0].text, refusal: null });
  });

  it('streams chunks that concatenate to the non-streamed content, usage on the final chunk', async () => {
    const params = { messages: [{ role: 'user', content: 'Lily and Ben' }], temperature: 0, max_tokens: 60, stop: 'park' };
    const whole = await engine.chat.completions.create(params);
    const stream = await engine.chat.completions.create({ ...params, stream: true });
    const got: ChatCompletionChunk[] = [];
    for await (const c of stream) got.push(c);
    expect(got.length).toBeGreaterThan(2);
    expect(got[0].choices[0].delta.role).toBe('assistant');
    expect(got.map((c) => c.choices[0].delta.content ?? '').join('')).toBe(whole.choices[0].message.content);
    const last = got[got.length - 1];
    expect(last.choices[0].finish_reason).toBe(whole.choices[0].finish_reason);
    expect(last.usage?.completion_tokens).toBe(whole.usage.completion_tokens);
    expect(got.slice(0, -1).every((c) => c.choices[0].finish_reason === null && c.usage === null)).toBe(true);
    expect(new Set(got.map((c) => c.id)).size).toBe(1);
  });

  it('abort mid-stream finishes with "abort" and gives every KV block back', async () => {
    const free = engine.stats().freeBlocks;
    const ac = new AbortController();
    const stream = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'The cat' }], temperature: 0, max_tokens: 300, ignore_eos: true, stream: true, signal: ac.signal });
    const got: ChatCompletionChunk[] = [];
    for await (const c of stream) {
      got.push(c);
      if (got.length === 5) ac.abort();
    }
    expect(got[got.length - 1].choices[0].finish_reason).toBe('abort');
    expect(got[got.length - 1].usage!.completion_tokens).toBeLessThan(20);
    expect(engine.stats()).toMatchObject({ freeBlocks: free, running: 0, waiting: 0 });

    // Leaving the for-await loop early cancels too.
    const s2 = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'The sun' }], temperature: 0, max_tokens: 300, ignore_eos: true, stream: true });
    let n = 0;
    for await (const _ of s2) if (++n === 3) break;
    await engine.completions.create({ prompt: 'x', max_tokens: 1 }); // one more step: the loop reaps the cancelled request
    expect(engine.stats()).toMatchObject({ freeBlocks: free, running: 0, waiting: 0 });

    // Aborted while still waiting (before the loop's first step), or before it was created.
    const ac2 = new AbortController();
    const waiting = engine.completions.create({ prompt: 'The dog', max_tokens: 50, signal: ac2.signal });
    ac2.abort();
    expect((await waiting).choices[0]).toMatchObject({ text: '', finish_reason: 'abort' });
    const pre = await engine.completions.create({ prompt: 'The dog', max_tokens: 50, signal: AbortSignal.abort() });
    expect(pre.choices[0].finish_reason).toBe('abort');
    expect(pre.usage!.completion_tokens).toBe(0);
    expect(engine.stats()).toMatchObject({ freeBlocks: free, running: 0, waiting: 0 });
  });

  it('greedy with penalties follows the CPU reference (reference forward + applyPenaltiesRef + argmax)', async () => {
    const tok = loaded.model.tokenizer;
    const prompt = tok.encode('Once upon a time');
    const pen = { repetition: 1.3, presence: 0.4, frequency: 0.3 };
    const r = await engine.completions.create({ prompt, temperature: 0, max_tokens: 30, ignore_eos: true, return_token_ids: true, repetition_penalty: pen.repetition, presence_penalty: pen.presence, frequency_penalty: pen.frequency });
    const ref = new ReferenceModel(loaded.model.config, loaded.host);
    const cache = ref.newCache(64);
    const V = loaded.model.config.vocabSize;
    const order: number[] = [];
    const counts = new Map<number, number>();
    for (const t of prompt) if (!counts.has(t)) (order.push(t), counts.set(t, 0));
    let logits = ref.forward(prompt, cache).subarray((prompt.length - 1) * V);
    const want: number[] = [];
    for (let i = 0; i < 30; i++) {
      const seen = { ids: order, counts: order.map((t) => counts.get(t)!) };
      const next = argmaxRef(applyPenaltiesRef(logits, 1, V, [{ ...pen, slot: 0, nSeen: order.length }], [seen]), 1, V)[0];
      want.push(next);
      if (!counts.has(next)) order.push(next);
      counts.set(next, (counts.get(next) ?? 0) + 1);
      logits = ref.forward([next], cache);
    }
    expect(r.choices[0].token_ids).toEqual(want);
    const plain = await greedyIds(engine, 'Once upon a time', 30);
    expect(plain).not.toEqual(want); // the penalties changed something
  });

  it('returns logprobs of the chosen token and the top candidates (vs the CPU reference)', async () => {
    const r = await engine.chat.completions.create({ messages: [{ role: 'user', content: '' }], temperature: 0, max_tokens: 4, logprobs: true, top_logprobs: 3 });
    const content = r.choices[0].logprobs!.content!;
    expect(content.length).toBe(4);
    const ref = new ReferenceModel(loaded.model.config, loaded.host);
    const V = loaded.model.config.vocabSize;
    const logits = ref.forward([1], ref.newCache(8));
    const [want] = logprobsRef(logits, 1, V, argmaxRef(logits, 1, V), 3);
    const tok = loaded.model.tokenizer;
    expect(content[0].token).toBe(tok.decode([want.top[0].id], false));
    expect(Math.abs(content[0].logprob - want.chosen)).toBeLessThan(1e-3);
    expect(content[0].top_logprobs.map((t) => t.token)).toEqual(want.top.map((t) => tok.decode([t.id], false)));
    content[0].top_logprobs.forEach((t, j) => expect(Math.abs(t.logprob - want.top[j].logprob)).toBeLessThan(1e-3));
    for (const c of content) expect(c.logprob).toBe(c.top_logprobs[0].logprob); // greedy: chosen = best
    const legacy = await engine.completions.create({ prompt: '', temperature: 0, max_tokens: 3, logprobs: 2 });
    expect(legacy.choices[0].logprobs!.tokens.length).toBe(3);
    expect(legacy.choices[0].logprobs!.token_logprobs[0]).toBeCloseTo(content[0].logprob, 5);
    expect(Object.keys(legacy.choices[0].logprobs!.top_logprobs![0]).length).toBe(2);
  });

  it('refuses a prompt longer than the context with a typed error and keeps serving', async () => {
    const max = engine.stats().maxContext;
    const long = Array.from({ length: max }, (_, i) => 3 + (i % 400));
    await expect(engine.completions.create({ prompt: long, max_tokens: 4 })).rejects.toBeInstanceOf(PromptTooLongError);
    await expect(engine.completions.create({ prompt: long, max_tokens: 4 })).rejects.toMatchObject({ code: 'prompt-too-long', promptTokens: max });
    await expect(engine.completions.create({ prompt: 'hi', temperature: 5 })).rejects.toMatchObject({ code: 'invalid-request', param: 'temperature' });
    const ok = await engine.completions.create({ prompt: long.slice(0, max - 3), temperature: 0, max_tokens: 10, ignore_eos: true });
    expect(ok.choices[0].finish_reason).toBe('length');
    expect(ok.usage!.completion_tokens).toBe(3); // the context filled up first
    expect(engine.stats().freeBlocks).toBe(engine.stats().totalBlocks);
  });

  it('n choices: each as its own seeded request would be, sharing the prompt\'s cached blocks; usage counts the prompt once', async () => {
    const prompt = [1, ...loaded.reference.output_ids_after_bos.slice(0, 40)];
    const hitsBefore = engine.stats().prefixCache!.hits;
    const r = await engine.completions.create({ prompt, n: 3, seed: 11, temperature: 1, max_tokens: 6, ignore_eos: true, return_token_ids: true });
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(engine.stats().prefixCache!.hits - hitsBefore).toBe(4); // choices 1 and 2 reuse the prompt's 2 full blocks
    for (let i = 0; i < 3; i++) {
      const alone = await engine.completions.create({ prompt, seed: 11 + i, temperature: 1, max_tokens: 6, ignore_eos: true, return_token_ids: true });
      expect(r.choices[i].token_ids).toEqual(alone.choices[0].token_ids);
    }
    expect(r.usage).toMatchObject({ prompt_tokens: 41, completion_tokens: 18, total_tokens: 59 });
    const chat = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Once upon a time' }], n: 2, temperature: 0, max_tokens: 4 });
    expect(chat.choices.map((c) => c.message.content)).toEqual([chat.choices[0].message.content, chat.choices[0].message.content]); // greedy: equal
    await expect(engine.completions.create({ prompt, n: 2, stream: true })).rejects.toMatchObject({ param: 'n' });
    await expect(engine.completions.create({ prompt, n: 0 })).rejects.toMatchObject({ param: 'n' });
    expect(engine.stats().freeBlocks).toBe(engine.stats().totalBlocks);
  });

  it('refuses unimplemented and unknown request fields by name, before anything is queued', async () => {
    const before = engine.stats().iterations;
    await expect(engine.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], functions: [{ name: 'f' }] } as never)).rejects.toMatchObject({ code: 'invalid-request', param: 'functions' });
    await expect(engine.completions.create({ prompt: 'hi', echo: true } as never)).rejects.toMatchObject({ code: 'invalid-request', param: 'echo' });
    await expect(engine.completions.create({ prompt: 'hi', max_token: 3 } as never)).rejects.toMatchObject({ param: 'max_token' });
    expect(engine.stats().iterations).toBe(before);
    const ok = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, ...({ tools: undefined } as object) });
    expect(ok.usage.completion_tokens).toBeGreaterThan(0);
  });

  it("a chat longer than the context: refused by default, truncated from its oldest messages with truncation 'auto'", async () => {
    const max = engine.stats().maxContext;
    const turn = (i: number) => [
      { role: 'user', content: `Once upon a time there was a little girl named Lily number ${i}. She liked to play outside in the sun.` },
      { role: 'assistant', content: `Lily number ${i} went to the park with her mom and saw a big dog. They played all day and were very happy.` },
    ];
    const messages = [...Array.from({ length: 40 }, (_, i) => turn(i)).flat(), { role: 'user', content: 'The end.' }];
    await expect(engine.chat.completions.create({ messages, max_tokens: 8 })).rejects.toMatchObject({ code: 'prompt-too-long', maxContext: max });
    await expect(engine.chat.completions.create({ messages, truncation: 'middle' as 'auto' })).rejects.toMatchObject({ code: 'invalid-request', param: 'truncation' });
    const r = await engine.chat.completions.create({ messages, truncation: 'auto', max_tokens: 8, temperature: 0, ignore_eos: true, return_token_ids: true });
    expect(r.usage.truncated_messages).toBeGreaterThan(0);
    expect(r.usage.truncated_messages).toBeLessThan(messages.length);
    expect(r.usage.prompt_tokens).toBeLessThanOrEqual(max - 8);
    expect(r.choices[0].finish_reason).toBe('length');
    expect(r.usage.completion_tokens).toBe(8);
    // Streaming says the same in its usage chunk.
    const stream = await engine.chat.completions.create({ messages, truncation: 'auto', max_tokens: 8, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } });
    let usage = null;
    for await (const c of stream) usage = c.usage ?? usage;
    expect(usage).toMatchObject({ truncated_messages: r.usage.truncated_messages, prompt_tokens: r.usage.prompt_tokens });
    expect(engine.stats().freeBlocks).toBe(engine.stats().totalBlocks);
  });
});
