/**
 * The engine worker's helpers (moved out of workers/engine.worker.ts so the dedicated and the shared
 * worker run the same EngineHost): model sources, throttled load progress, the stats pump, the
 * learnt adapter's saver and the feedback store.
 */
import * as Comlink from 'comlink';
import { InvalidRequestError } from '../src/engine/errors.ts';
import type { Engine, SavedLearning } from '../src/engine/openai.ts';
import { memoryFeedback, type FeedbackSink } from '../src/engine/feedback.ts';
import { LearnStore, PersistentFeedback, type AdapterVersionInfo } from '../src/learn/store.ts';
import { importPeft } from '../src/learn/peft.ts';
import type { ModelConfig } from '../src/model/config.ts';
import type { SessionStats, StatsRecord } from '../src/scheduler/stats.ts';
import { STATS_FLUSH_MS, type ModelSourceSpec, type ProgressSink, type StatsSink } from '../src/engine/worker-api.ts';
import type { LoadProgress } from '../src/model/loader.ts';
import { sourceFromFiles, sourceFromHub, sourceFromUrl, type ModelSource } from '../src/model/source.ts';


export const FORMATS = new Set(['f32', 'f16', 'q4']);
/** Progress messages at most this often (the loader reports every network chunk). */
export const PROGRESS_INTERVAL_MS = 50;

/**
 * Release a comlink proxy we were handed (closes its port); plain functions are left alone, and so
 * is a proxy released before (comlink's proxy throws on any access then, even reading releaseProxy).
 */
export function releaseRemote(fn: unknown): void {
  try {
    const release: unknown = fn ? Reflect.get(fn as object, Comlink.releaseProxy) : undefined;
    if (typeof release === 'function') release.call(fn);
  } catch {
    // already released
  }
}

/** Call a page callback without waiting; a page that went away must not fail the worker. */
export function notify(result: void | Promise<void>): void {
  void Promise.resolve(result).catch(() => undefined);
}

export function sourceOf(spec: ModelSourceSpec, cache: boolean): ModelSource {
  switch (spec?.kind) {
    case 'url':
      if (typeof spec.base !== 'string' || spec.base === '') throw new InvalidRequestError('source.base', 'must be a non-empty URL');
      return sourceFromUrl(spec.base, { cache });
    case 'hub':
      if (typeof spec.repo !== 'string') throw new InvalidRequestError('source.repo', 'must be a repository id (owner/name)');
      return sourceFromHub(spec.repo, spec.revision ?? 'main', { cache });
    case 'files':
      if (!Array.isArray(spec.files) || spec.files.length === 0) throw new InvalidRequestError('source.files', 'must be a non-empty list of files');
      return sourceFromFiles(spec.files);
    default:
      throw new InvalidRequestError('source.kind', `must be 'url', 'hub' or 'files'`);
  }
}

/** The name responses report when the caller gives none: the folder or repository name. */
export function defaultModelName(spec: ModelSourceSpec): string {
  if (spec.kind === 'hub') return spec.repo;
  if (spec.kind === 'files') return 'local files';
  const parts = spec.base.split(/[?#]/)[0].split('/').filter(Boolean);
  return parts.length ? decodeURIComponent(parts[parts.length - 1]) : spec.base;
}

/** Forward load progress, throttled, always passing phase changes and the final report. */
export function throttledProgress(sink: ProgressSink | undefined): ((p: LoadProgress) => void) | undefined {
  if (!sink) return undefined;
  let last = 0;
  let lastPhase = '';
  return (p) => {
    const now = performance.now();
    if (p.phase === lastPhase && p.loaded < p.total && now - last < PROGRESS_INTERVAL_MS) return;
    last = now;
    lastPhase = p.phase;
    notify(sink({ ...p }));
  };
}

/**
 * Collects the engine's stats records and sends them to the page in batches (one postMessage per
 * STATS_FLUSH_MS at most), so a fast decode loop does not flood the page.
 */
export class StatsPump {
  private sink: StatsSink | null = null;
  private records: StatsRecord[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;
  private session: SessionStats | null = null;

  attach(engine: Engine): void {
    const s = engine.stats();
    this.session = { type: 'session', t: performance.now(), policy: s.policy, budgetMs: s.budgetMs, slo: DEFAULT_SLO, kvBlocksTotal: s.totalBlocks, modelName: engine.modelName };
    this.records = [];
    this.push(this.session);
    engine.core.onStats((r) => this.push(r));
  }

  setSink(sink: StatsSink | null): void {
    if (this.sink !== sink) releaseRemote(this.sink);
    this.sink = sink;
    if (sink && this.session) this.push({ ...this.session, t: performance.now() }); // a late subscriber learns the settings
  }

  private push(r: StatsRecord): void {
    if (!this.sink) return;
    this.records.push(r);
    this.timer ??= setTimeout(() => this.flush(), STATS_FLUSH_MS);
  }

  private flush(): void {
    this.timer = null;
    const records = this.records;
    this.records = [];
    if (this.sink && records.length) notify(this.sink({ timeOrigin: performance.timeOrigin, records }));
  }
}

/**
 * Keeps the learnt adapter across reloads: at load the latest saved version (IndexedDB, written
 * whole before its pointer moves; the last few kept) is restored into the learner when it fits the
 * model and the learner's settings; after applied steps, a new version is saved (at most one save
 * in flight, at most every SAVE_INTERVAL_MS). A stored version that cannot be used is left as it
 * is (nothing stored is ever deleted by a failed load) and learning starts fresh.
 */
export class AdapterSaver {
  private detach: (() => void) | null = null;
  private saving = false;
  private dirty = false;
  private lastSave = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;

  /** Told of each version saved (the host tracks which version serves). */
  onSaved: (info: AdapterVersionInfo) => void = () => {};

  attach(engine: Engine, store: LearnStore, config: ModelConfig): void {
    this.detach?.();
    const off = engine.core.onStats((r) => {
      // With the guard, only a promoted version is saved (a rolled-back candidate never serves, now or after a reload).
      if (r.type === 'finetune' && !r.skipped && r.guard?.decision !== 'rollback') this.schedule(engine, store, config);
    });
    this.detach = () => {
      off();
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
    };
  }

  private schedule(engine: Engine, store: LearnStore, config: ModelConfig): void {
    this.dirty = true;
    if (this.timer || this.saving) return;
    this.timer = setTimeout(() => void this.save(engine, store, config), Math.max(0, this.lastSave + SAVE_INTERVAL_MS - performance.now()));
  }

  private async save(engine: Engine, store: LearnStore, config: ModelConfig): Promise<void> {
    this.timer = null;
    if (!this.dirty) return;
    this.dirty = false;
    this.saving = true;
    try {
      const snap = await engine.learning.snapshot();
      const status = engine.learning.status();
      this.onSaved(await store.saveAdapterVersion({ model: config, host: snap.host }, { label: status?.adapter ?? 'learnt', metrics: { version: snap.version, steps: status?.steps ?? 0 }, note: JSON.stringify({ trainedPairs: snap.trainedKeys }) }));
    } catch (e) {
      console.warn(`mace: saving the learnt adapter failed (${e instanceof Error ? e.message : String(e)}); will retry after the next step`);
    } finally {
      this.saving = false;
      this.lastSave = performance.now();
      if (this.dirty) this.schedule(engine, store, config);
    }
  }

  stop(): void {
    this.detach?.();
    this.detach = null;
  }
}

/** The latest saved adapter of this store, or null (none, or none readable: a warning says why). */
export async function loadSavedLearning(store: LearnStore, config: ModelConfig): Promise<(SavedLearning & { stored: number }) | null> {
  try {
    const saved = await store.loadLatestAdapter({ fallback: true });
    if (!saved) return null;
    const host = await importPeft(config, { weights: saved.weights, config: saved.config });
    return { host, version: saved.meta.metrics?.version ?? saved.version, trainedKeys: parseNote(saved.meta.note).trainedPairs, stored: saved.version };
  } catch (e) {
    console.warn(`mace: the saved adapter cannot be read (${e instanceof Error ? e.message : String(e)}); learning starts fresh`);
    return null;
  }
}

/** The worker's poisoning guard: one pair in four held out as an anchor, sets of 8. */
export const DEFAULT_GUARD = { anchorEvery: 4, setSize: 8, threshold: 0.1 };

/** Save the learnt adapter at most this often. */
export const SAVE_INTERVAL_MS = 2000;

/** The trained-pair keys kept in a saved version's note (anything else reads as none). */
export function parseNote(note: string | undefined): { trainedPairs: string[] } {
  try {
    const v = JSON.parse(note ?? '{}') as { trainedPairs?: unknown };
    return { trainedPairs: Array.isArray(v.trainedPairs) ? v.trainedPairs.filter((k): k is string => typeof k === 'string') : [] };
  } catch {
    return { trainedPairs: [] };
  }
}

/** SLOs the panel draws until a benchmark measures the unloaded latency (ms). */
export const DEFAULT_SLO = { ttftMs: 1000, tbtMs: 100 };

/**
 * The feedback log of a load: persisted in IndexedDB (what was rated before a reload is still
 * there) unless the page asked for memory only. A store that cannot be opened falls back to memory
 * rather than failing the load: serving does not depend on it.
 */
/** The IndexedDB store of feedback, pairs and adapter versions, or null (memory only). */
export function learnStore(dbName: string | false | undefined): LearnStore | null {
  if (dbName === false || typeof indexedDB === 'undefined') return null;
  return new LearnStore({ dbName: dbName ?? 'mace-web' });
}

export async function feedbackSink(store: LearnStore | null): Promise<FeedbackSink> {
  if (!store) return memoryFeedback();
  try {
    const pf = await PersistentFeedback.open(store);
    return {
      recordCompletion: (input) => pf.recordCompletion(input),
      rate: (id, rating) => pf.rate(id, rating),
      addPair: (input) => pf.addPair(input),
      pairs: () => pf.log.pairs(),
      thumbs: () => pf.log.thumbs(),
    };
  } catch {
    return memoryFeedback();
  }
}
