/**
 * `<mace-chat>`'s own engine (src/ui/chat/own-engine.ts) without a browser: the `worker` attribute,
 * calls waiting for the shared engine, listeners moving with the engine, and the rule that a
 * shared engine holding another tab's model is left alone (this element moves to a dedicated one).
 */
import { describe, expect, it, vi } from 'vitest';
import type { WorkerEngine } from '../../src/engine/client.ts';
import { ModelInUseError, type LoadRequest, type ModelInfo } from '../../src/engine/worker-api.ts';
import type { StatsBatch } from '../../src/scheduler/stats.ts';
import { OwnEngine, parseWorkerAttribute } from '../../src/ui/chat/own-engine.ts';

const INFO: ModelInfo = { modelName: 'm', source: 's', format: 'f32', architecture: 'llama', vocabSize: 1, nLayers: 1, hiddenSize: 1, maxContext: 8, hasChatTemplate: false, gpu: 'g', loadMs: 1 };
const REQUEST: LoadRequest = { source: { kind: 'url', base: 'http://x/m/' }, format: 'f32' };

/** The part of a WorkerEngine OwnEngine uses, recording what happens to it. */
function standIn(kind: WorkerEngine['kind'], load: (r: LoadRequest) => Promise<ModelInfo>) {
  const stats = new Set<(b: StatsBatch) => void>();
  const engine = {
    kind,
    load: vi.fn(load),
    terminate: vi.fn(),
    feedback: vi.fn(async () => ({ pairFormed: false })),
    onStats: (l: (b: StatsBatch) => void) => (stats.add(l), () => stats.delete(l)),
    onDeviceLost: () => () => undefined,
    learning: { status: async () => null },
    adapter: { export: async () => ({ weights: new Uint8Array(), config: '{}' }), versions: vi.fn(async () => ({ versions: [], serving: null, learning: null })) },
    chat: { completions: { create: vi.fn(async () => [] as unknown as AsyncIterable<never>) } },
    emit: (b: StatsBatch) => stats.forEach((l) => l(b)),
    listeners: () => stats.size,
  };
  return engine;
}
const asEngine = (e: ReturnType<typeof standIn>) => e as unknown as WorkerEngine;

describe('<mace-chat> worker attribute', () => {
  it("is 'shared' unless it says 'dedicated'; other values warn", () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    expect(parseWorkerAttribute(null)).toBe('shared');
    expect(parseWorkerAttribute(' Dedicated ')).toBe('dedicated');
    expect(parseWorkerAttribute('shared')).toBe('shared');
    expect(warn).not.toHaveBeenCalled();
    expect(parseWorkerAttribute('both')).toBe('shared');
    expect(warn).toHaveBeenCalledOnce();
    warn.mockRestore();
  });
});

describe('OwnEngine', () => {
  it('waits for the shared engine, and forwards stats from it', async () => {
    const shared = standIn('shared', async () => INFO);
    let resolve: (e: WorkerEngine) => void = () => {};
    const own = new OwnEngine('shared', { shared: () => new Promise((r) => (resolve = r)), dedicated: () => asEngine(standIn('dedicated', async () => INFO)) });
    const seen: StatsBatch[] = [];
    own.onStats((b) => seen.push(b));
    const loading = own.load(REQUEST);
    resolve(asEngine(shared));
    await expect(loading).resolves.toEqual(INFO);
    shared.emit({ timeOrigin: 0, records: [] });
    expect(seen).toHaveLength(1);
  });

  it("a shared engine holding another tab's model is not replaced: the element moves to a dedicated engine", async () => {
    const info = vi.spyOn(console, 'info').mockImplementation(() => undefined);
    const shared = standIn('shared', async () => {
      throw Object.assign(new Error('in use'), { code: new ModelInUseError('other', 1).code });
    });
    const dedicated = standIn('dedicated', async () => INFO);
    const own = new OwnEngine('shared', { shared: async () => asEngine(shared), dedicated: () => asEngine(dedicated) });
    const seen: StatsBatch[] = [];
    own.onStats((b) => seen.push(b));
    await expect(own.load(REQUEST)).resolves.toEqual(INFO);
    expect(shared.terminate).toHaveBeenCalledOnce();
    expect(shared.listeners()).toBe(0); // the listeners moved
    expect(dedicated.load).toHaveBeenCalledWith(REQUEST, undefined);
    dedicated.emit({ timeOrigin: 0, records: [] });
    expect(seen).toHaveLength(1);
    await own.feedback({ completionId: 'c', rating: 'up' });
    expect(dedicated.feedback).toHaveBeenCalledOnce();
    await own.adapter.versions(); // the adapter menu's calls go to the engine serving now
    expect(dedicated.adapter.versions).toHaveBeenCalledOnce();
    expect(shared.adapter.versions).not.toHaveBeenCalled();
    info.mockRestore();
  });

  it('other load errors are the caller’s, and a dedicated engine never switches', async () => {
    const failing = standIn('shared', async () => {
      throw Object.assign(new Error('bad file'), { code: 'model-file' });
    });
    const own = new OwnEngine('shared', { shared: async () => asEngine(failing), dedicated: () => asEngine(standIn('dedicated', async () => INFO)) });
    await expect(own.load(REQUEST)).rejects.toThrow('bad file');
    expect(failing.terminate).not.toHaveBeenCalled();

    const inUse = standIn('dedicated', async () => {
      throw Object.assign(new Error('in use'), { code: 'model-in-use' });
    });
    const make = { shared: vi.fn(async () => asEngine(inUse)), dedicated: () => asEngine(inUse) };
    await expect(new OwnEngine('dedicated', make).load(REQUEST)).rejects.toThrow('in use');
    expect(make.shared).not.toHaveBeenCalled();
  });

  it('terminate stops the engine, also one still starting', async () => {
    const late = standIn('shared', async () => INFO);
    let resolve: (e: WorkerEngine) => void = () => {};
    const own = new OwnEngine('shared', { shared: () => new Promise((r) => (resolve = r)), dedicated: () => asEngine(late) });
    own.terminate();
    resolve(asEngine(late));
    await new Promise((r) => setTimeout(r, 0));
    expect(late.terminate).toHaveBeenCalledOnce();
  });
});
