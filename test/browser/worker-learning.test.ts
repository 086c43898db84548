/**
 * Learning in the engine worker: thumbs form a pair, the worker trains on it between chat
 * iterations, the stats stream reports the step, the learnt adapter is served by name, and its
 * saved version (IndexedDB) is restored by a new worker on the same database.
 */
import { describe, expect, it } from 'vitest';
import { createWorkerEngine, type WorkerEngine } from '../../src/engine/client.ts';
import type { LoadRequest } from '../../src/engine/worker-api.ts';
import type { StatsBatch } from '../../src/scheduler/stats.ts';
import { LearnStore } from '../../src/learn/store.ts';

const stories = (dbName: string): LoadRequest => ({
  source: { kind: 'url', base: '/models/stories260K/' },
  format: 'f32',
  engine: { kvBudgetBytes: 2 * 2 ** 20, maxTokensPerIteration: 64, maxSeqs: 4, modelName: 'stories260K', adapters: { slots: 2, maxRank: 4 } },
  feedbackStore: dbName,
  learning: { rank: 4, lr: 5e-3, epochs: 2, maxTokens: 32 },
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

async function ids(engine: WorkerEngine, prompt: string, adapter?: string): Promise<number[]> {
  const r = await engine.completions.create({ prompt, max_tokens: 12, temperature: 0, ignore_eos: true, return_token_ids: true, adapter });
  return r.choices[0].token_ids!;
}

describe('worker learning', () => {
  it('trains on a thumbs pair, streams the step, serves and saves the adapter, and restores it after a reload', async () => {
    const dbName = `mace-test-learning-${Date.now().toString(36)}`;
    const first = createWorkerEngine();
    const batches: StatsBatch[] = [];
    let learnt: number[];
    let version = 0;
    try {
      first.onStats((b) => batches.push(b));
      await first.load(stories(dbName));
      expect(await first.learning.status()).toMatchObject({ enabled: true, adapter: 'learnt', version: 0 });
      const messages = [{ role: 'user' as const, content: 'The cat' }];
      const a = await first.chat.completions.create({ messages, temperature: 1, seed: 3, max_tokens: 8 });
      const b = await first.chat.completions.create({ messages, temperature: 1, seed: 4, max_tokens: 8 });
      await first.feedback({ completionId: a.id, rating: 'down' });
      expect((await first.feedback({ completionId: b.id, rating: 'up' })).added).toHaveLength(1);
      // a's thumbs-down alone was a KTO example until b's thumbs-up paired it: its step may have
      // started in between (then it is its last); the pair trains its 2 epochs with DPO.
      const dpoSteps = () => batches.flatMap((x) => x.records).filter((r) => r.type === 'finetune' && r.method === 'dpo').length;
      await until(async () => dpoSteps(), (n) => n >= 2);
      const st = await until(() => first.learning.status(), (s) => s?.pendingPairs === 0);
      expect(st).toMatchObject({ pendingPairs: 0, failedSteps: 0 });
      expect(st!.steps - 2).toBeLessThanOrEqual(1);
      version = st!.version;
      expect(version).toBe(st!.steps);
      learnt = await ids(first, 'Once upon a time', 'learnt');
      // The stream carried the session, iterations, both requests and the steps.
      await until(async () => batches.flatMap((x) => x.records).filter((r) => r.type === 'finetune').length, (n) => n >= version, 5_000);
      const records = batches.flatMap((x) => x.records);
      expect(records.some((r) => r.type === 'session')).toBe(true);
      expect(records.filter((r) => r.type === 'request').length).toBeGreaterThanOrEqual(2);
      expect(records.filter((r) => r.type === 'iteration').length).toBeGreaterThan(0);
      expect(batches.every((x) => typeof x.timeOrigin === 'number')).toBe(true);
      // Saved (debounced): wait for the version to be written before the worker goes.
      const store = new LearnStore({ dbName });
      const saved = await until(() => store.listAdapterVersions(), (v) => v.some((x) => x.meta.metrics?.version === version), 10_000);
      expect(saved.find((x) => x.latest)?.meta.label).toBe('learnt');
    } finally {
      first.terminate();
    }
    const second = createWorkerEngine();
    try {
      await second.load(stories(dbName));
      const st = await second.learning.status();
      expect(st).toMatchObject({ version, pendingPairs: 0 }); // restored; its pair is not trained again
      expect(await ids(second, 'Once upon a time', 'learnt')).toEqual(learnt);
    } finally {
      second.terminate();
      indexedDB.deleteDatabase(dbName);
    }
  });
});
