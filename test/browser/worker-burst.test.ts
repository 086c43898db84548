/**
 * A burst of 1,000 contradictory ratings through the page client (issue 14), stories260K on
 * SwiftShader, the worker's real IndexedDB store and the poisoning guard on:
 * - the user's early, consistent ratings form pairs; every 2nd is held out as an anchor;
 * - then 1,000 ratings flip every answer back and forth (each flip withdraws pairs and thumbs and
 *   forms the opposite ones), while chat requests go on;
 * - no version whose anchor accuracy fell more than the threshold below the reference is ever
 *   promoted (every finetune record's guard decision, and the version serving after it); the
 *   served adapter is always a promoted one; every chat request is answered during the burst;
 * - nothing stored is lost: every completion and the last rating of each are in IndexedDB, the
 *   saved adapter versions are whole, and a new worker on the same database serves the same version.
 */
import { describe, expect, it } from 'vitest';
import { createWorkerEngine, type WorkerEngine } from '../../src/engine/client.ts';
import type { LoadRequest } from '../../src/engine/worker-api.ts';
import { LearnStore } from '../../src/learn/store.ts';
import type { FinetuneStats, StatsBatch } from '../../src/scheduler/stats.ts';

const THRESHOLD = 0.1;
const stories = (dbName: string): LoadRequest => ({
  source: { kind: 'url', base: '/models/stories260K/' },
  format: 'f32',
  engine: { kvBudgetBytes: 2 * 2 ** 20, maxTokensPerIteration: 64, maxSeqs: 4, modelName: 'stories260K', adapters: { slots: 2, maxRank: 4 } },
  feedbackStore: dbName,
  learning: { rank: 4, lr: 3e-2, epochs: 1, maxTokens: 32, guard: { anchorEvery: 2, setSize: 4, threshold: THRESHOLD } },
});

const CONTEXTS = ['The cat', 'Lily and Ben', 'One day, a big dog', 'Tom had a red ball', 'She was sad', 'The sun', 'Mom said', 'A little bird'];

async function until<T>(get: () => Promise<T>, ok: (v: T) => boolean, ms = 180_000): Promise<T> {
  const t0 = performance.now();
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (performance.now() - t0 > ms) throw new Error(`timed out; last value ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function answers(engine: WorkerEngine): Promise<{ id: string; context: number }[]> {
  const out = [];
  for (let c = 0; c < CONTEXTS.length; c++) {
    for (const seed of [4 * c + 1, 4 * c + 2, 4 * c + 3, 4 * c + 4]) {
      const r = await engine.chat.completions.create({ messages: [{ role: 'user', content: CONTEXTS[c] }], temperature: 1, seed, max_tokens: 6 });
      out.push({ id: r.id, context: c });
    }
  }
  return out;
}

async function tokens(engine: WorkerEngine): Promise<number[]> {
  const r = await engine.completions.create({ prompt: 'Once upon a time', max_tokens: 12, temperature: 0, ignore_eos: true, return_token_ids: true, adapter: 'learnt' });
  return r.choices[0].token_ids!;
}

describe('a burst of contradictory ratings through the page client', () => {
  it('never promotes a version below the anchors, keeps serving, and loses nothing stored', async () => {
    const dbName = `mace-test-burst-${Date.now().toString(36)}`;
    const engine = createWorkerEngine();
    const batches: StatsBatch[] = [];
    const lastRating = new Map<string, 'up' | 'down'>();
    let serving: number | null = null;
    let learnt: number[] = [];
    const chatIds: string[] = [];
    try {
      engine.onStats((b) => batches.push(b));
      await engine.load(stories(dbName));
      const all = await answers(engine);
      // Early and consistent: two answers of each context up, two down → 32 pairs, every 2nd an anchor (4 in the set).
      const earlyRating = (i: number) => (i % 4 < 2 ? 'up' : 'down');
      for (const [i, a] of all.entries()) {
        const rating = earlyRating(i);
        await engine.feedback({ completionId: a.id, rating });
        lastRating.set(a.id, rating);
      }
      const early = await until(() => engine.learning.status(), (s) => s !== null && s.pendingPairs === 0);
      expect(early!.guard!.anchors).toBe(4);
      expect(early!.guard!.serving).not.toBeNull();

      // The burst: 1,000 ratings as fast as the page client takes them, each of a random answer;
      // three in four contradict the early rating of that answer (seeded, so the run repeats).
      const chats: Promise<string | null>[] = [];
      let seed = 12345;
      const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
      for (let k = 0; k < 1000; k++) {
        const i = Math.floor(rand() * all.length);
        const contradict = rand() < 0.75;
        const rating = (earlyRating(i) === 'up') === contradict ? 'down' : 'up';
        await engine.feedback({ completionId: all[i].id, rating });
        lastRating.set(all[i].id, rating);
        if (k % 100 === 0) chats.push(engine.completions.create({ prompt: 'Once upon a time', max_tokens: 6, temperature: 0, adapter: 'learnt' }).then((r) => (chatIds.push(r.id), r.choices[0].finish_reason)));
      }
      const finished = await Promise.all(chats); // the engine served throughout
      expect(finished).toHaveLength(10);
      expect(finished.every((f) => f === 'length' || f === 'stop')).toBe(true);
      const st = await until(() => engine.learning.status(), (s) => s !== null && s.pendingPairs === 0);

      const applied = () => batches.flatMap((b) => b.records).filter((r): r is FinetuneStats => r.type === 'finetune' && !r.skipped);
      await until(async () => applied().length, (n) => n >= st!.version, 10_000); // the stream is batched: its last records may lag
      const steps = applied();
      console.log(`[burst] ${steps.length} applied steps (${steps.filter((s) => s.method === 'kto').length} KTO), guard ${JSON.stringify(st!.guard)}`);
      expect(steps.length).toBeGreaterThan(16);
      let promoted: number | null = null;
      let rolledBack = 0;
      for (const s of steps) {
        const g = s.guard!;
        expect(g.version).toBe(s.adapterVersion);
        if (g.decision === 'promote') {
          // Promoted: judged on too few anchors / without a reference, or within the threshold.
          if (g.reason === 'within-threshold') expect(g.accuracy!).toBeGreaterThanOrEqual(g.reference! - THRESHOLD - 1e-9);
          else expect(['too-few-anchors', 'no-reference']).toContain(g.reason);
          promoted = s.adapterVersion;
        } else {
          expect(g.accuracy!).toBeLessThan(g.reference! - THRESHOLD);
          rolledBack++;
        }
        expect(s.servingVersion).toBe(promoted); // a rolled-back candidate never serves
      }
      expect(rolledBack).toBeGreaterThan(0); // the burst did make candidates worse on the anchors
      expect(st!.guard!.rolledBack).toBe(rolledBack);
      serving = st!.guard!.serving;
      expect(serving).toBe(promoted);
      // Only promoted versions are saved (debounced: wait for the serving one; the store numbers its own versions).
      const saved = await until(() => engine.adapter.versions(), (v) => v.versions[0]?.meta.metrics?.version === serving);
      expect(saved.serving).toBe(saved.versions[0].version);
      learnt = await tokens(engine);
    } finally {
      engine.terminate();
    }

    // Nothing stored is lost: the completions, the last rating of each, whole adapter versions.
    const store = new LearnStore({ dbName });
    const { log, skipped } = await store.loadFeedback();
    expect(skipped).toEqual([]);
    // Every answer rated is there with its last rating, and every chat answered during the burst is recorded.
    // (The record of a completion is written after its answer is sent: the last probe's may still be in
    // flight when the worker is terminated right after it.)
    const stored = new Set(log.completions().map((c) => c.completionId));
    for (const [id, rating] of lastRating) expect(log.rating(id)?.rating).toBe(rating);
    for (const id of chatIds) expect(stored.has(id)).toBe(true);
    const versions = await store.listAdapterVersions();
    expect(versions.length).toBeGreaterThan(0);
    expect(versions.every((v) => v.bytes > 0)).toBe(true);
    const again = createWorkerEngine();
    try {
      await again.load(stories(dbName));
      expect((await again.learning.status())!.version).toBe(serving); // the promoted version, restored
      expect(await tokens(again)).toEqual(learnt);
    } finally {
      again.terminate();
      indexedDB.deleteDatabase(dbName);
    }
  }, 400_000);
});
