/**
 * IndexedDB persistence (idb-keyval) in a real Chromium: feedback, pairs and adapter versions
 * survive a simulated reload (a fresh LearnStore handle on the same database name), old adapter
 * versions are pruned to keepVersions, a half-written version never becomes the latest, corrupt
 * records are reported and left in place, and bad input leaves stored data untouched.
 */
import { createStore, get, set } from 'idb-keyval';
import { describe, expect, it } from 'vitest';
import type { AdapterConfig, HostAdapter } from '../../src/learn/adapter.ts';
import { UnknownCompletionError } from '../../src/learn/feedback.ts';
import { PreferenceInputError } from '../../src/learn/pairs.ts';
import { importPeft } from '../../src/learn/peft.ts';
import { LearnStore, PersistentFeedback, StoredRecordError, StoreInputError } from '../../src/learn/store.ts';
import { parseModelConfig } from '../../src/model/config.ts';
import { linearShape } from '../../src/model/tensors.ts';
import { mulberry32 } from '../util/random.ts';

/** A database name no other test (or earlier run) uses. */
const freshDb = () => `mace-web-test-${Date.now()}-${Math.random().toString(36).slice(2)}`;
/** The raw idb-keyval store under a LearnStore (to plant corrupt records as a crash or a bug would). */
const raw = (db: string) => createStore(db, 'learn');

const ask = [{ role: 'user', content: 'Tell me a story.' }];

/** Snapshot of what a log holds, for before/after comparisons. */
const contents = (f: PersistentFeedback) => JSON.parse(JSON.stringify({ c: f.log.completions(), r: f.log.ratings(), p: f.log.pairs() }));

const files = (fill: number, n = 64) => ({ weights: new Uint8Array(n).fill(fill), config: `{"r": ${fill}}` });

describe('feedback and pairs in IndexedDB', () => {
  it('survive a reload: completions, latest ratings, feedback pairs and direct pairs', async () => {
    const db = freshDb();
    const f = await PersistentFeedback.open(new LearnStore({ dbName: db }));
    await f.recordCompletion({ completionId: 'a', messages: ask, answer: 'The dog ran away.', createdAt: 1 });
    await f.rate('a', 'down', 2);
    await f.recordCompletion({ completionId: 'b', messages: ask, answer: 'The cat came home.', createdAt: 3 });
    await f.rate('b', 'up', 4);
    await f.recordCompletion({ completionId: 'c', prompt: 'Once upon a time', answer: ' a cat.', createdAt: 5 });
    await f.rate('c', 'up', 6);
    await f.rate('c', 'down', 7); // replaces the 'up'
    expect((await f.addPair({ prompt: 'The sun', chosen: ' was warm.', rejected: ' was cold.', createdAt: 8 })).added).toBe(true);
    await f.addPair({ prompt: 'Gone soon', chosen: 'x', rejected: 'y', createdAt: 9 });
    expect(await f.removePair(f.log.pairs().at(-1)!.id)).toBe(true);
    expect(f.log.pairs().map((p) => [p.chosen, p.source])).toEqual([
      ['The cat came home.', 'feedback'],
      [' was warm.', 'import'],
    ]);

    const reloaded = await PersistentFeedback.open(new LearnStore({ dbName: db }));
    expect(reloaded.skipped).toEqual([]);
    expect(contents(reloaded)).toEqual(contents(f));
    expect(reloaded.log.rating('c')).toEqual({ completionId: 'c', rating: 'down', at: 7 });
  });

  it('bad input throws a typed error and leaves the stored data as it was', async () => {
    const db = freshDb();
    const f = await PersistentFeedback.open(new LearnStore({ dbName: db }));
    await f.recordCompletion({ completionId: 'a', messages: ask, answer: 'A', createdAt: 1 });
    await f.rate('a', 'up', 2);
    await f.addPair({ messages: ask, chosen: 'good', rejected: 'bad', createdAt: 3 });
    const before = contents(f);
    await expect(f.rate('missing', 'up')).rejects.toBeInstanceOf(UnknownCompletionError);
    await expect(f.rate('a', 'sideways')).rejects.toBeInstanceOf(PreferenceInputError);
    await expect(f.addPair({ messages: ask, chosen: 'same', rejected: 'same' })).rejects.toMatchObject({ field: 'chosen/rejected' });
    await expect(f.recordCompletion({ completionId: 'a', messages: ask, answer: 'changed' })).rejects.toMatchObject({ code: 'completion-conflict' });
    expect(contents(f)).toEqual(before);
    expect(contents(await PersistentFeedback.open(new LearnStore({ dbName: db })))).toEqual(before);
  });

  it('corrupt records are skipped with their key on load, and stay stored', async () => {
    const db = freshDb();
    const f = await PersistentFeedback.open(new LearnStore({ dbName: db }));
    await f.recordCompletion({ completionId: 'a', messages: ask, answer: 'A', createdAt: 1 });
    await f.recordCompletion({ completionId: 'b', messages: ask, answer: 'B', createdAt: 2 });
    await f.rate('a', 'up', 3);
    await f.rate('b', 'down', 4);
    await set(['completion', 'junk'], 42, raw(db));
    await set(['rating', 'ghost'], { completionId: 'ghost', rating: 'up', at: 5 }, raw(db));
    await set(['pair', 'pp-bad'], { prompt: 'p', chosen: '', rejected: 'r', source: 'import' }, raw(db));

    const reloaded = await PersistentFeedback.open(new LearnStore({ dbName: db }));
    expect(reloaded.skipped.map((s) => [s.key, s.error.code]).sort()).toEqual([
      ['["completion","junk"]', 'bad-preference'],
      ['["pair","pp-bad"]', 'bad-preference'],
      ['["rating","ghost"]', 'unknown-completion'],
    ]);
    expect(reloaded.log.pairs().map((p) => [p.chosen, p.rejected])).toEqual([['A', 'B']]);
    expect(await get(['completion', 'junk'], raw(db))).toBe(42);
    expect(await get(['rating', 'ghost'], raw(db))).toMatchObject({ completionId: 'ghost' });
  });
});

describe('adapter versions', () => {
  it('keeps the last 3 versions, moves latest, and survives a reload', async () => {
    const db = freshDb();
    const store = new LearnStore({ dbName: db });
    expect(await store.loadLatestAdapter()).toBeNull();
    for (let v = 1; v <= 4; v++) {
      const info = await store.saveAdapterVersion(files(v), { label: `v${v}`, metrics: { step: v * 10 } });
      expect(info).toMatchObject({ version: v, bytes: 64, latest: true, meta: { label: `v${v}` } });
    }
    const again = new LearnStore({ dbName: db });
    expect((await again.listAdapterVersions()).map((i) => [i.version, i.latest, i.meta.label, i.bytes])).toEqual([
      [4, true, 'v4', 64],
      [3, false, 'v3', 64],
      [2, false, 'v2', 64],
    ]);
    const latest = (await again.loadLatestAdapter())!;
    expect(latest.version).toBe(4);
    expect([...latest.weights]).toEqual(new Array(64).fill(4));
    expect(latest.config).toBe('{"r": 4}');
    expect(latest.meta).toEqual({ label: 'v4', metrics: { step: 40 } });
    await expect(again.loadAdapterVersion(1)).rejects.toBeInstanceOf(StoredRecordError);
  });

  it('stores exactly the given bytes of a view into a larger buffer', async () => {
    const store = new LearnStore({ dbName: freshDb() });
    const big = new Uint8Array(1000).map((_, i) => i & 0xff);
    await store.saveAdapterVersion({ weights: big.subarray(100, 110), config: '{}' });
    expect([...(await store.loadLatestAdapter())!.weights]).toEqual([...big.subarray(100, 110)]);
  });

  it('a crash after writing a version but before moving the pointer leaves the previous version latest', async () => {
    const db = freshDb();
    const store = new LearnStore({ dbName: db });
    await store.saveAdapterVersion(files(1));
    await store.saveAdapterVersion(files(2));
    // The state a crash between step 1 (write) and step 2 (pointer) leaves: version 3 stored, pointer on 2.
    await set(['adapter', 3], { version: 3, savedAt: 0, meta: {}, config: '{}', weights: new Uint8Array(8), checksum: '00000000' }, raw(db));
    const reloaded = new LearnStore({ dbName: db });
    const latest = (await reloaded.loadLatestAdapter())!;
    expect(latest.version).toBe(2);
    expect([...latest.weights]).toEqual(new Array(64).fill(2));
    // The next save takes a fresh number past the orphan.
    expect((await reloaded.saveAdapterVersion(files(5))).version).toBe(4);
    expect((await reloaded.loadLatestAdapter())!.version).toBe(4);
  });

  it('a corrupt or dangling latest is a StoredRecordError; with fallback the newest whole older version loads; nothing is deleted', async () => {
    const db = freshDb();
    const store = new LearnStore({ dbName: db });
    await store.saveAdapterVersion(files(1));
    await store.saveAdapterVersion(files(2));
    const rec = await get(['adapter', 2], raw(db));
    rec.weights[5] ^= 1; // one flipped bit
    await set(['adapter', 2], rec, raw(db));
    const err = await store.loadLatestAdapter().catch((e) => e);
    expect(err).toBeInstanceOf(StoredRecordError);
    expect(err.key).toBe('["adapter",2]');
    const fb = (await store.loadLatestAdapter({ fallback: true }))!;
    expect(fb.version).toBe(1);
    expect(fb.skipped.map((s) => s.key)).toEqual(['["adapter",2]']);
    expect(await get(['adapter', 2], raw(db))).toBeDefined();

    await set(['adapter-latest'], 9, raw(db));
    await expect(store.loadLatestAdapter()).rejects.toMatchObject({ code: 'corrupt-record', key: '["adapter",9]' });
    await set(['adapter-latest'], 'two', raw(db));
    await expect(store.loadLatestAdapter()).rejects.toMatchObject({ key: '["adapter-latest"]' });
    expect((await store.loadLatestAdapter({ fallback: true }))!.version).toBe(1);
  });

  it('saves a host adapter as PEFT files that import back bit-exactly', async () => {
    const model = parseModelConfig(await (await fetch('/models/stories260K/config.json')).text());
    const config: AdapterConfig = { r: 2, loraAlpha: 4, useRslora: false, targetModules: ['q_proj', 'v_proj'], baseModelNameOrPath: 'stories260K' };
    const rand = mulberry32(7);
    const host: HostAdapter = { config, tensors: [] };
    for (let layer = 0; layer < model.nLayers; layer++) {
      for (const module of ['q_proj', 'v_proj'] as const) {
        const [out, inp] = linearShape(model, module);
        host.tensors.push({ layer, module, A: Float32Array.from({ length: 2 * inp }, () => rand() - 0.5), B: Float32Array.from({ length: out * 2 }, () => rand() - 0.5) });
      }
    }
    const db = freshDb();
    await new LearnStore({ dbName: db, keepVersions: 1 }).saveAdapterVersion({ model, host }, { label: 'dpo' });
    const back = (await new LearnStore({ dbName: db }).loadLatestAdapter())!;
    const imported = await importPeft(model, { weights: back.weights, config: back.config });
    expect(imported.config).toEqual(config);
    expect(imported.tensors.map((t) => [t.layer, t.module, [...t.A], [...t.B]])).toEqual(host.tensors.map((t) => [t.layer, t.module, [...t.A], [...t.B]]));
  });

  it('bad arguments are typed errors', async () => {
    expect(() => new LearnStore({ dbName: freshDb(), keepVersions: 0 })).toThrow(StoreInputError);
    const store = new LearnStore({ dbName: freshDb() });
    await expect(store.saveAdapterVersion({ weights: new Uint8Array(0), config: '{}' })).rejects.toMatchObject({ field: 'weights' });
    await expect(store.saveAdapterVersion({ weights: new Uint8Array(4), config: '' })).rejects.toMatchObject({ field: 'config' });
    expect(await store.listAdapterVersions()).toEqual([]);
  });
});
