/**
 * The engine in a real Web Worker (Chromium, SwiftShader), driven through the page-side client:
 * the stories260K golden output, streaming, batching, abort, typed errors that keep the worker
 * serving, device-loss recovery, worker death, the f16/q4 agreement with the f32 reference, and the
 * page's frame reports setting the engine's budget.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWorkerEngine, type WorkerEngine } from '../../src/engine/client.ts';
import { MaceRemoteError } from '../../src/engine/errors-wire.ts';
import type { Completion, ChatCompletionChunk } from '../../src/engine/types.ts';
import type { LoadRequest } from '../../src/engine/worker-api.ts';
import type { WeightFormat } from '../../src/kernels/weights.ts';
import type { LoadProgress } from '../../src/model/loader.ts';
import type { IterationStats } from '../../src/scheduler/stats.ts';
import { FakeFrames } from '../node/fake-frames.ts';

const BASE = '/models/stories260K/';

interface Reference {
  output_ids_after_bos: number[];
  text: string;
}

/** 2 MiB of KV: 102 blocks of stories260K; small batches keep SwiftShader fast. */
const ENGINE = { kvBudgetBytes: 2 * 2 ** 20, maxTokensPerIteration: 64, maxSeqs: 8, modelName: 'stories260K', scheduler: { budgetMs: 0 } }; // no time budget: exact iteration counts
const stories = (format: WeightFormat = 'f32'): LoadRequest => ({ source: { kind: 'url', base: BASE }, format, engine: ENGINE });

let engine: WorkerEngine;
let reference: Reference;

beforeAll(async () => {
  reference = (await (await fetch(BASE + 'reference.json')).json()) as Reference;
  engine = createWorkerEngine();
});

afterAll(() => engine?.terminate());

async function greedy(prompt: string | number[], max_tokens: number): Promise<Completion> {
  return engine.completions.create({ prompt, temperature: 0, max_tokens, return_token_ids: true, ignore_eos: true });
}

/** Length of the common prefix of two id lists. */
function agreeing(a: readonly number[], b: readonly number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

async function rejection(p: Promise<unknown>): Promise<MaceRemoteError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(MaceRemoteError);
  return e as MaceRemoteError;
}

describe('engine worker on stories260K', () => {
  it('loads in the worker with progress and reports the model', async () => {
    const progress: LoadProgress[] = [];
    const info = await engine.load(stories(), (p) => progress.push(p));
    expect(info).toMatchObject({ modelName: 'stories260K', format: 'f32', architecture: 'LlamaForCausalLM', vocabSize: 512, hasChatTemplate: false });
    expect(info.source).toBe(new URL(BASE, location.href).href);
    expect(info.maxContext).toBeGreaterThan(100);
    expect(progress.map((p) => p.phase)).toContain('weights');
    expect(progress[progress.length - 1].phase).toBe('done');
    expect(await engine.stats()).toMatchObject({ running: 0, waiting: 0 });
  });

  it('golden: BOS alone, greedy, 200 tokens = reference.json ids and text, through the worker', async () => {
    const r = await engine.completions.create({ prompt: '', temperature: 0, max_tokens: 200, return_token_ids: true });
    expect(r.prompt_token_ids).toEqual([1]);
    expect(r.choices[0].token_ids).toEqual(reference.output_ids_after_bos);
    expect(r.choices[0].text).toBe(reference.text);
    expect(r.choices[0].finish_reason).toBe('length');
    expect(r.model).toBe('stories260K');
    expect(r.usage).toMatchObject({ prompt_tokens: 1, completion_tokens: 200 });
  });

  it('streams the golden completion: chunks concatenate to the same text and ids', async () => {
    const stream = await engine.completions.create({ prompt: '', temperature: 0, max_tokens: 200, return_token_ids: true, stream: true });
    const got: Completion[] = [];
    for await (const c of stream) got.push(c);
    expect(got.length).toBeGreaterThan(10);
    expect(got.map((c) => c.choices[0].text).join('')).toBe(reference.text);
    expect(got.flatMap((c) => c.choices[0].token_ids ?? [])).toEqual(reference.output_ids_after_bos);
    expect(got[got.length - 1].choices[0].finish_reason).toBe('length');
    expect(got[got.length - 1].usage?.completion_tokens).toBe(200);
    expect(got.slice(0, -1).every((c) => c.choices[0].finish_reason === null)).toBe(true);
  });

  it('batches two concurrent requests: both complete with their solo tokens in fewer iterations', async () => {
    const prompts = ['Once upon a time', 'The cat'];
    const s0 = (await engine.stats())!.iterations;
    const alone = [];
    for (const p of prompts) alone.push((await greedy(p, 24)).choices[0].token_ids);
    const s1 = (await engine.stats())!.iterations;
    const together = await Promise.all(prompts.map((p) => greedy(p, 24)));
    const s2 = (await engine.stats())!.iterations;
    expect(together.map((r) => r.choices[0].token_ids)).toEqual(alone);
    expect(together.every((r) => r.choices[0].finish_reason === 'length')).toBe(true);
    expect(s1 - s0).toBe(48); // alone: 1 prefill + 23 decodes each
    // Together: one shared step per token. Each request crosses as its own message (its own task),
    // so the second may miss the first's prefill step and join one step later.
    // (26 leaves room for a slow message under load; alone it would be 48.)
    expect(s2 - s1).toBeGreaterThanOrEqual(24);
    expect(s2 - s1).toBeLessThanOrEqual(26);
  });

  it('abort mid-stream finishes with "abort" and gives the KV blocks back', async () => {
    const free = (await engine.stats())!.freeBlocks;
    const ac = new AbortController();
    const stream = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'The cat' }], temperature: 0, max_tokens: 300, ignore_eos: true, stream: true, signal: ac.signal });
    const got: ChatCompletionChunk[] = [];
    for await (const c of stream) {
      got.push(c);
      if (got.length === 5) ac.abort();
    }
    const last = got[got.length - 1];
    expect(last.choices[0].finish_reason).toBe('abort');
    expect(last.usage!.completion_tokens).toBeLessThan(100);
    expect(await engine.stats()).toMatchObject({ freeBlocks: free, running: 0, waiting: 0 });

    // Breaking out of the for-await loop aborts too (the next request's step reaps it).
    const s2 = await engine.completions.create({ prompt: 'The sun', temperature: 0, max_tokens: 300, ignore_eos: true, stream: true });
    let n = 0;
    for await (const _ of s2) if (++n === 3) break;
    await greedy('x', 1);
    expect(await engine.stats()).toMatchObject({ freeBlocks: free, running: 0, waiting: 0 });

    // A non-streaming request with an already-aborted signal.
    const pre = await engine.completions.create({ prompt: 'The dog', max_tokens: 50, signal: AbortSignal.abort() });
    expect(pre.choices[0].finish_reason).toBe('abort');
    expect(pre.usage!.completion_tokens).toBe(0);
  });

  it('a prompt longer than the context is a typed error; the worker keeps serving', async () => {
    const max = (await engine.stats())!.maxContext;
    const long = Array.from({ length: max }, (_, i) => 3 + (i % 400));
    const e = await rejection(engine.completions.create({ prompt: long, max_tokens: 4 }));
    expect(e).toMatchObject({ name: 'PromptTooLongError', code: 'prompt-too-long', promptTokens: max, maxContext: max });
    const es = await rejection(engine.chat.completions.create({ messages: [{ role: 'user', content: 'x' }], temperature: 7, stream: true }));
    expect(es).toMatchObject({ code: 'invalid-request', param: 'temperature' });
    expect((await greedy('', 5)).choices[0].token_ids).toEqual(reference.output_ids_after_bos.slice(0, 5));
  });

  it('a load from a missing folder is a typed error naming the file; a good load then works', async () => {
    const e = await rejection(engine.load({ source: { kind: 'url', base: '/models/no-such-model/' }, format: 'f32', cache: false }));
    expect(e).toMatchObject({ name: 'ModelFileError', code: 'model-file', file: 'config.json' });
    expect(e.message).toContain('config.json');
    expect(await engine.stats()).toBeNull(); // the previous model was dropped before the load
    const noModel = await rejection(greedy('', 2));
    expect(noModel.code).toBe('no-model');
    const bad = await rejection(engine.load({ source: { kind: 'url', base: BASE }, format: 'f8' as WeightFormat }));
    expect(bad).toMatchObject({ code: 'invalid-request', param: 'format' });
    await engine.load(stories());
    expect((await greedy('', 8)).choices[0].token_ids).toEqual(reference.output_ids_after_bos.slice(0, 8));
  });

  it('reports a lost device to the page and re-acquires it on the next load', async () => {
    const lost = new Promise<MaceRemoteError>((resolve) => {
      const off = engine.onDeviceLost((err) => (off(), resolve(err)));
    });
    await engine.remote.loseDeviceForTesting();
    const err = await lost;
    expect(err).toMatchObject({ name: 'DeviceLostError', code: 'device-lost', reason: 'destroyed' });
    expect(await engine.stats()).toBeNull();
    expect((await rejection(greedy('', 2))).code).toBe('no-model');
    await engine.load(stories());
    expect((await greedy('', 8)).choices[0].token_ids).toEqual(reference.output_ids_after_bos.slice(0, 8));
  });

  it('unload frees the model: stats are null and requests fail with "no-model"', async () => {
    await engine.unload();
    expect(await engine.stats()).toBeNull();
    expect((await rejection(engine.chat.completions.create({ messages: [{ role: 'user', content: 'x' }] }))).code).toBe('no-model');
  });

  for (const format of ['f16', 'q4'] as const) {
    it(`${format} weights: 200 greedy tokens, agreement with the f32 reference recorded`, async () => {
      const info = await engine.load(stories(format));
      expect(info.format).toBe(format);
      const r = await engine.completions.create({ prompt: '', temperature: 0, max_tokens: 200, return_token_ids: true, ignore_eos: true });
      const ids = r.choices[0].token_ids!;
      expect(ids.length).toBe(200);
      const n = agreeing(ids, reference.output_ids_after_bos);
      console.log(`[worker ${format}] ${n} of 200 greedy tokens match reference.json before the first divergence`);
      expect(n).toBeGreaterThanOrEqual(1);
    });
  }

  it('a terminated worker rejects pending calls with "worker-gone" instead of hanging', async () => {
    const other = createWorkerEngine();
    expect((await rejection(other.completions.create({ prompt: 'x', max_tokens: 1 }))).code).toBe('no-model');
    const pending = other.load(stories());
    other.terminate();
    await expect(pending).rejects.toMatchObject({ name: 'WorkerGoneError', code: 'worker-gone' });
    await expect(other.stats()).rejects.toMatchObject({ code: 'worker-gone' });
  });

  it('a worker whose script cannot start rejects calls with "worker-gone"', async () => {
    // The dev server answers an unknown path with index.html: not a module script.
    const broken = createWorkerEngine({ worker: new Worker('/no-such-engine-worker.js', { type: 'module' }) });
    await expect(broken.load(stories())).rejects.toMatchObject({ name: 'WorkerGoneError', code: 'worker-gone' });
    const stream = broken.completions.create({ prompt: 'x', stream: true });
    await expect(stream).rejects.toMatchObject({ code: 'worker-gone' });
    broken.terminate();
  });
});

describe('the page’s frames set the engine’s budget', () => {
  it('a page client reports its real frames by default; frames: false turns it off', () => {
    expect(engine.frames?.started).toBe(true);
    const off = createWorkerEngine({ frames: false });
    expect(off.frames).toBeNull();
    off.terminate();
  });

  it('a simulated frame stream reaches the engine: half the frame, then the hidden budget; bad reports are typed errors', async () => {
    const clock = new FakeFrames();
    const e = createWorkerEngine({ frames: clock });
    try {
      // No budgetMs: the budget comes from the frames (staleness out of the way: no timing in tests).
      await e.load({ source: { kind: 'url', base: BASE }, format: 'f32', feedbackStore: false, learning: false, engine: { ...ENGINE, scheduler: { frames: { staleMs: 600_000 } } } });
      const its: IterationStats[] = [];
      e.onStats((b) => its.push(...b.records.filter((r): r is IterationStats => r.type === 'iteration')));
      const iterationsOf = async (prompt: string) => {
        const from = its.length;
        const r = await e.completions.create({ prompt, temperature: 0, max_tokens: 3, ignore_eos: true });
        await expect.poll(() => its.length - from, { timeout: 10_000 }).toBeGreaterThanOrEqual(r.usage!.completion_tokens);
        return its.slice(from);
      };

      clock.frames(0, 250, 10); // one window of a 100 Hz display, no drops
      const shown = await iterationsOf('Once');
      expect(new Set(shown.map((r) => JSON.stringify([r.budgetSource, r.budgetMs, r.frameIntervalMs, r.frameDrops])))).toEqual(new Set([JSON.stringify(['frames', 5, 10, 0])]));

      clock.setHidden(true);
      const hidden = await iterationsOf('The cat');
      expect(new Set(hidden.map((r) => JSON.stringify([r.budgetSource, r.budgetMs, r.frameIntervalMs])))).toEqual(new Set([JSON.stringify(['frames', 50, null])]));

      const bad = await rejection(e.remote.reportFrames({ intervalMs: 10, frames: 3, dropped: -1, longFrames: 0, hidden: false }));
      expect(bad.code).toBe('bad-frame-report');
      expect(bad.fields.field).toBe('dropped');
    } finally {
      e.terminate();
    }
    expect(clock.pending).toBe(0); // the monitor stopped with the worker
    expect(clock.listening).toBe(0);
  });
});

describe('feedback through the worker, kept in IndexedDB', () => {
  it('thumbs form a pair that survives a reload (a new worker on the same database)', async () => {
    const dbName = `mace-test-feedback-${Date.now().toString(36)}`;
    const first = createWorkerEngine();
    try {
      await first.load({ ...stories(), feedbackStore: dbName });
      const messages = [{ role: 'user' as const, content: 'The cat' }];
      const a = await first.chat.completions.create({ messages, temperature: 1, seed: 3, max_tokens: 6 });
      const b = await first.chat.completions.create({ messages, temperature: 1, seed: 4, max_tokens: 6 });
      expect(b.choices[0].message.content).not.toBe(a.choices[0].message.content);
      await first.feedback({ completionId: a.id, rating: 'down' });
      const rated = await first.feedback({ completionId: b.id, rating: 'up' });
      expect(rated.added).toHaveLength(1);
      const bad = await rejection(first.feedback({ completionId: 'nope', rating: 'up' }));
      expect(bad.code).toBe('unknown-completion');
      expect((await first.preferences.list())!.length).toBe(1);
    } finally {
      first.terminate();
    }
    const second = createWorkerEngine();
    try {
      expect(await second.preferences.list()).toBeNull(); // no model yet
      await second.load({ ...stories(), feedbackStore: dbName });
      const pairs = (await second.preferences.list())!;
      expect(pairs).toHaveLength(1);
      expect(pairs[0].source).toBe('feedback');
    } finally {
      second.terminate();
      indexedDB.deleteDatabase(dbName);
    }
  });
});
