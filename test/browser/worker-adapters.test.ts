/**
 * The learnt adapter in the product (issue 14): through the worker and the page client, its saved
 * versions are listed with the one serving, a rollback serves an earlier version (its tokens come
 * back exactly), reset serves the base model's tokens, export gives PEFT files that import back
 * bit-exact (as a new saved version), and bad input is refused by name with nothing stored lost.
 */
import { describe, expect, it } from 'vitest';
import { createWorkerEngine, type WorkerEngine } from '../../src/engine/client.ts';
import type { LoadRequest } from '../../src/engine/worker-api.ts';

const stories = (dbName: string): LoadRequest => ({
  source: { kind: 'url', base: '/models/stories260K/' },
  format: 'f32',
  engine: { kvBudgetBytes: 2 * 2 ** 20, maxTokensPerIteration: 64, maxSeqs: 4, modelName: 'stories260K', adapters: { slots: 2, maxRank: 4 } },
  feedbackStore: dbName,
  learning: { rank: 4, lr: 2e-2, epochs: 1, maxTokens: 32 },
});

async function until<T>(get: () => Promise<T>, ok: (v: T) => boolean, ms = 90_000): Promise<T> {
  const t0 = performance.now();
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (performance.now() - t0 > ms) throw new Error(`timed out; last value ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function ids(engine: WorkerEngine, adapter?: string): Promise<number[]> {
  const r = await engine.completions.create({ prompt: 'Once upon a time', max_tokens: 16, temperature: 0, ignore_eos: true, return_token_ids: true, adapter });
  return r.choices[0].token_ids!;
}

/**
 * One preference pair on `content` (two samples, added as a pair: a thumbs-down alone would first
 * train a KTO step of its own, engine-thumbs.test.ts); resolves once its step was saved and serves.
 */
async function teach(engine: WorkerEngine, content: string, seeds: [number, number], savedBefore: number): Promise<number> {
  const messages = [{ role: 'user' as const, content }];
  const a = await engine.chat.completions.create({ messages, temperature: 1, seed: seeds[0], max_tokens: 8 });
  const b = await engine.chat.completions.create({ messages, temperature: 1, seed: seeds[1], max_tokens: 8 });
  await engine.preferences.add({ messages, chosen: b.choices[0].message.content!, rejected: a.choices[0].message.content! });
  const v = await until(() => engine.adapter.versions(), (x) => x.versions.length > savedBefore && x.serving === x.versions[0].version && x.learning?.pendingPairs === 0 && x.versions[0].meta.metrics?.version === x.learning.version);
  return v.serving!;
}

describe('adapter versions through the worker', () => {
  it('lists, rolls back, resets, exports and imports', async () => {
    const engine = createWorkerEngine();
    try {
      await engine.load(stories(`mace-test-adapters-${Date.now().toString(36)}`));
      const base = await ids(engine, 'learnt'); // version 0: B = 0, the base model's tokens
      expect(await engine.adapter.versions()).toMatchObject({ versions: [], serving: null });
      const v1 = await teach(engine, 'The cat', [3, 4], 0);
      const after1 = await ids(engine, 'learnt');
      const v2 = await teach(engine, 'The dog', [5, 6], 1);
      const after2 = await ids(engine, 'learnt');
      expect(v2).toBeGreaterThan(v1);
      // Training moved the adapter (else a rollback proves nothing): the saved versions differ.
      const w1 = (await engine.adapter.export(v1)).weights;
      const w2 = (await engine.adapter.export(v2)).weights;
      expect(w2).not.toEqual(w1);
      expect((await engine.adapter.export()).weights).toEqual(w2); // the latest serves
      void after2;

      // Roll back: the first version serves again, exactly.
      const rolled = await engine.adapter.serve(v1);
      expect(rolled.enabled).toBe(true);
      expect(await ids(engine, 'learnt')).toEqual(after1);
      expect((await engine.adapter.export()).weights).toEqual(w1);
      expect((await engine.adapter.versions()).serving).toBe(v1);

      // Export the serving adapter, reset to base, import the export back: bit-exact round trip.
      const files = await engine.adapter.export();
      expect(files.weights.length).toBeGreaterThan(0);
      expect(JSON.parse(files.config)).toMatchObject({ peft_type: 'LORA', r: 4 });
      await engine.adapter.reset();
      expect(await ids(engine, 'learnt')).toEqual(base);
      expect((await engine.adapter.export()).weights).not.toEqual(w1);
      expect((await engine.adapter.versions()).serving).toBeNull();
      const imported = await engine.adapter.import(files);
      expect(imported.saved).not.toBeNull();
      expect(await ids(engine, 'learnt')).toEqual(after1);
      const again = await engine.adapter.export();
      expect(again.weights).toEqual(files.weights);
      expect(await engine.adapter.export(imported.saved!.version)).toEqual({ weights: files.weights, config: files.config });

      // Bad input: typed errors by name; what is stored is still there and the adapter keeps serving.
      const listed = (await engine.adapter.versions()).versions.map((v) => v.version);
      await expect(engine.adapter.serve(9999)).rejects.toMatchObject({ name: 'StoredRecordError' });
      await expect(engine.adapter.serve(-1)).rejects.toMatchObject({ code: 'invalid-request', param: 'version' });
      await expect(engine.adapter.import({ weights: new Uint8Array([1, 2, 3]), config: files.config })).rejects.toMatchObject({ name: expect.stringMatching(/Error$/) });
      const wrongBase = JSON.stringify({ ...JSON.parse(files.config), base_model_name_or_path: 'someone/other-model' });
      await expect(engine.adapter.import({ weights: files.weights, config: wrongBase })).rejects.toMatchObject({ message: expect.stringContaining('base_model_name_or_path') });
      expect((await engine.adapter.versions()).versions.map((v) => v.version)).toEqual(listed);
      expect(await ids(engine, 'learnt')).toEqual(after1);
    } finally {
      engine.terminate();
    }
  }, 240_000);
});
