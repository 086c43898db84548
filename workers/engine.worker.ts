/**
 * The serving engine in a dedicated Web Worker: the GPU device, the model weights, the KV cache and
 * the batching loop all live here, so the page's main thread never waits on GPU work or tokenizer
 * calls. The page talks to it through src/engine/client.ts; the contract is EngineWorkerApi
 * (src/engine/worker-api.ts), exposed with comlink.
 *
 * State is one EngineHost object: the GPU context (acquired on the first load and again after a
 * device loss), the loaded model and its engine, and the in-flight requests' AbortControllers by
 * page-chosen request id (AbortSignals cannot cross a postMessage).
 */
import type { TallySnapshot } from '../src/gpu/tally.ts';
import * as Comlink from 'comlink';
import { InvalidRequestError } from '../src/engine/errors.ts';
import { installErrorTransfer, serializeError } from '../src/engine/errors-wire.ts';
import { createEngine, type Engine, type SavedLearning } from '../src/engine/openai.ts';
import { memoryFeedback, type FeedbackInput, type FeedbackSink } from '../src/engine/feedback.ts';
import { LearnStore, PersistentFeedback } from '../src/learn/store.ts';
import { exportPeft, importPeft, type PeftFiles } from '../src/learn/peft.ts';
import type { AdapterVersionInfo } from '../src/learn/store.ts';
import type { ModelConfig } from '../src/model/config.ts';
import type { RateResult } from '../src/learn/feedback.ts';
import type { AddedPair, PairInput, PreferencePair } from '../src/learn/pairs.ts';
import type { LearningStatus, SessionStats, StatsRecord } from '../src/scheduler/stats.ts';
import { validateFrameReport, type FrameReport } from '../src/scheduler/frame-budget.ts';
import type { ChatCompletion, ChatCompletionChunk, Completion, EngineStats } from '../src/engine/types.ts';
import {
  NoAdapterStoreError,
  NoModelError,
  RequestIdError,
  type AdapterImported,
  type AdapterVersions,
  type DeviceLostSink,
  type EngineWorkerApi,
  type LoadRequest,
  type ModelInfo,
  type ModelSourceSpec,
  type ProgressSink,
  type StreamSink,
  type StatsSink,
  STATS_FLUSH_MS,
  type WireChatParams,
  type WireCompletionParams,
} from '../src/engine/worker-api.ts';
import { acquireGpu, describeGpu, type GpuContext } from '../src/gpu/device.ts';
import type { DeviceLostError } from '../src/gpu/errors.ts';
import { loadModel, type LoadedModel, type LoadProgress } from '../src/model/loader.ts';
import { sourceFromFiles, sourceFromHub, sourceFromUrl, type ModelSource } from '../src/model/source.ts';

installErrorTransfer();

const FORMATS = new Set(['f32', 'f16', 'q4']);
/** Progress messages at most this often (the loader reports every network chunk). */
const PROGRESS_INTERVAL_MS = 50;

/** Release a comlink proxy we were handed (closes its port); plain functions are left alone. */
function releaseRemote(fn: unknown): void {
  const release: unknown = fn ? Reflect.get(fn as object, Comlink.releaseProxy) : undefined;
  if (typeof release === 'function') {
    try {
      release.call(fn);
    } catch {
      // already released
    }
  }
}

/** Call a page callback without waiting; a page that went away must not fail the worker. */
function notify(result: void | Promise<void>): void {
  void Promise.resolve(result).catch(() => undefined);
}

function sourceOf(spec: ModelSourceSpec, cache: boolean): ModelSource {
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
function defaultModelName(spec: ModelSourceSpec): string {
  if (spec.kind === 'hub') return spec.repo;
  if (spec.kind === 'files') return 'local files';
  const parts = spec.base.split(/[?#]/)[0].split('/').filter(Boolean);
  return parts.length ? decodeURIComponent(parts[parts.length - 1]) : spec.base;
}

/** Forward load progress, throttled, always passing phase changes and the final report. */
function throttledProgress(sink: ProgressSink | undefined): ((p: LoadProgress) => void) | undefined {
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
class StatsPump {
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
class AdapterSaver {
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
async function loadSavedLearning(store: LearnStore, config: ModelConfig): Promise<(SavedLearning & { stored: number }) | null> {
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
const DEFAULT_GUARD = { anchorEvery: 4, setSize: 8, threshold: 0.1 };

/** Save the learnt adapter at most this often. */
const SAVE_INTERVAL_MS = 2000;

/** The trained-pair keys kept in a saved version's note (anything else reads as none). */
function parseNote(note: string | undefined): { trainedPairs: string[] } {
  try {
    const v = JSON.parse(note ?? '{}') as { trainedPairs?: unknown };
    return { trainedPairs: Array.isArray(v.trainedPairs) ? v.trainedPairs.filter((k): k is string => typeof k === 'string') : [] };
  } catch {
    return { trainedPairs: [] };
  }
}

/** SLOs the panel draws until a benchmark measures the unloaded latency (ms). */
const DEFAULT_SLO = { ttftMs: 1000, tbtMs: 100 };

class EngineHost implements EngineWorkerApi {
  private ctx: GpuContext | null = null;
  private model: LoadedModel | null = null;
  private engine: Engine | null = null;
  private readonly inflight = new Map<string, AbortController>();
  /** Tail of the load queue: loads (and unloads) run one at a time. */
  private queue: Promise<unknown> = Promise.resolve();
  private lostSink: DeviceLostSink | null = null;
  private readonly statsPump = new StatsPump();
  private readonly saver = new AdapterSaver();
  /** The loaded model's feedback store (null: feedbackStore false) and the saved adapter version serving. */
  private store: LearnStore | null = null;
  private serving: number | null = null;
  /** The page's latest frame report: a model loaded later starts from it (a page hidden during the load). */
  private frames: FrameReport | null = null;

  load(request: LoadRequest, onProgress?: ProgressSink): Promise<ModelInfo> {
    const run = this.queue.then(() => this.doLoad(request, onProgress)).finally(() => releaseRemote(onProgress));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async doLoad(request: LoadRequest, onProgress?: ProgressSink): Promise<ModelInfo> {
    const t0 = performance.now();
    if (!request || typeof request !== 'object') throw new InvalidRequestError('load', 'needs a request object');
    if (!FORMATS.has(request.format)) throw new InvalidRequestError('format', `must be 'f32', 'f16' or 'q4', got ${JSON.stringify(request.format)}`);
    const source = sourceOf(request.source, request.cache ?? true);
    this.dropModel(); // the previous model's memory goes back before the new one is allocated
    const ctx = await this.gpu();
    const model = await loadModel(ctx, source, { format: request.format, onProgress: throttledProgress(onProgress) });
    let engine: Engine;
    // In the product the poisoning guard is on unless the page says otherwise (src/engine/promotion.ts).
    const learning = request.learning === false ? false : { guard: DEFAULT_GUARD, ...request.learning };
    const options = { ...request.engine, modelName: request.engine?.modelName ?? defaultModelName(request.source) };
    if (learning !== false) options.adapters ??= { slots: 2 };
    const store = learnStore(request.feedbackStore);
    try {
      engine = createEngine(ctx, model, options, { feedback: await feedbackSink(store) });
    } catch (e) {
      model.weights.destroy();
      throw e;
    }
    try {
      if (learning !== false) {
        const saved = store ? await loadSavedLearning(store, model.config) : null;
        const status = await engine.learning.enable(learning, saved ?? undefined);
        if (status.restoreError) console.warn(`mace: the saved adapter was not restored (${status.restoreError}); learning starts fresh`);
        this.serving = saved && !status.restoreError ? saved.stored : null;
        if (store) {
          this.saver.onSaved = (info) => (this.serving = info.version);
          this.saver.attach(engine, store, model.config);
        }
      }
    } catch (e) {
      engine.destroy();
      model.weights.destroy();
      throw e;
    }
    this.statsPump.attach(engine);
    if (this.frames) engine.core.reportFrames(this.frames);
    this.store = learning !== false ? store : null;
    this.model = model;
    this.engine = engine;
    const c = model.config;
    return {
      modelName: engine.modelName,
      source: source.description,
      format: request.format,
      architecture: c.architecture,
      vocabSize: c.vocabSize,
      nLayers: c.nLayers,
      hiddenSize: c.hiddenSize,
      maxContext: engine.stats().maxContext,
      hasChatTemplate: model.tokenizer.hasChatTemplate,
      gpu: describeGpu(ctx),
      loadMs: performance.now() - t0,
    };
  }

  /** The device, acquired now if there is none (first load, or after a loss). */
  private async gpu(): Promise<GpuContext> {
    if (this.ctx) return this.ctx;
    const ctx = await acquireGpu({ label: 'mace engine worker' });
    this.ctx = ctx;
    void ctx.lost.then((err) => this.onDeviceLost(ctx, err));
    return ctx;
  }

  private onDeviceLost(ctx: GpuContext, err: DeviceLostError): void {
    if (this.ctx !== ctx) return;
    this.ctx = null; // the next load acquires a new device
    this.dropModel();
    if (this.lostSink) notify(this.lostSink(serializeError(err)));
  }

  /** Destroy the engine (its requests fail with 'engine-closed') and the weights. */
  private dropModel(): void {
    this.saver.stop();
    this.store = null;
    this.serving = null;
    this.engine?.destroy();
    this.model?.weights.destroy();
    this.engine = null;
    this.model = null;
  }

  /** The engine, or a typed 'no-model' error. */
  private loaded(): Engine {
    if (!this.engine) throw new NoModelError();
    return this.engine;
  }

  /** Validate the id, register its AbortController, and return the engine to run on. */
  private begin(requestId: string): { engine: Engine; signal: AbortSignal } {
    if (typeof requestId !== 'string' || requestId === '') throw new RequestIdError(String(requestId), 'must be a non-empty string');
    if (this.inflight.has(requestId)) throw new RequestIdError(requestId, 'is still in use by another request');
    if (!this.engine) throw new NoModelError();
    const ac = new AbortController();
    this.inflight.set(requestId, ac);
    return { engine: this.engine, signal: ac.signal };
  }

  async chat(requestId: string, params: WireChatParams): Promise<ChatCompletion> {
    const { engine, signal } = this.begin(requestId);
    try {
      return await engine.chat.completions.create({ ...params, stream: false, signal });
    } finally {
      this.inflight.delete(requestId);
    }
  }

  async complete(requestId: string, params: WireCompletionParams): Promise<Completion> {
    const { engine, signal } = this.begin(requestId);
    try {
      return await engine.completions.create({ ...params, stream: false, signal });
    } finally {
      this.inflight.delete(requestId);
    }
  }

  async chatStream(requestId: string, params: WireChatParams, sink: StreamSink<ChatCompletionChunk>): Promise<void> {
    const { engine, signal } = this.begin(requestId);
    const started = engine.chat.completions.create({ ...params, stream: true, signal });
    await this.startPump(requestId, started, sink);
  }

  async completeStream(requestId: string, params: WireCompletionParams, sink: StreamSink<Completion>): Promise<void> {
    const { engine, signal } = this.begin(requestId);
    const started = engine.completions.create({ ...params, stream: true, signal });
    await this.startPump(requestId, started, sink);
  }

  /** Wait for the request to be queued (errors reject the call), then pump its chunks in the background. */
  private async startPump<C>(requestId: string, started: Promise<AsyncIterable<C>>, sink: StreamSink<C>): Promise<void> {
    let stream: AsyncIterable<C>;
    try {
      stream = await started;
    } catch (e) {
      this.inflight.delete(requestId);
      releaseRemote(sink);
      throw e;
    }
    void this.pump(requestId, stream, sink);
  }

  /**
   * Every event goes through the same proxied sink, hence the same port, so the page sees them in
   * order without a round trip per chunk; only the last event is awaited before the port closes.
   */
  private async pump<C>(requestId: string, stream: AsyncIterable<C>, sink: StreamSink<C>): Promise<void> {
    let last: void | Promise<void>;
    try {
      for await (const chunk of stream) notify(sink({ kind: 'chunk', chunk }));
      last = sink({ kind: 'end' });
    } catch (e) {
      last = sink({ kind: 'error', error: serializeError(e) });
    }
    try {
      await last;
    } catch {
      // the page went away; nothing to tell it
    } finally {
      this.inflight.delete(requestId);
      releaseRemote(sink);
    }
  }

  abort(requestId: string): void {
    this.inflight.get(requestId)?.abort();
  }

  stats(): EngineStats | null {
    return this.engine?.stats() ?? null;
  }

  gpuMemory(): TallySnapshot | null {
    return this.ctx?.tally.snapshot() ?? null;
  }

  learningStatus(): LearningStatus | null {
    return this.engine?.learning.status() ?? null;
  }

  // ---- the learnt adapter's versions (src/learn/store.ts keeps the newest few)

  async adapterVersions(): Promise<AdapterVersions> {
    const engine = this.loaded();
    return { versions: this.store ? await this.store.listAdapterVersions() : [], serving: this.serving, learning: engine.learning.status() };
  }

  async serveAdapterVersion(version: number): Promise<LearningStatus> {
    const engine = this.loaded();
    const store = this.requireStore('serveAdapterVersion');
    if (!Number.isInteger(version) || version < 1) throw new InvalidRequestError('version', `= ${JSON.stringify(version)} must be a saved version number (adapterVersions())`);
    const rec = await store.loadAdapterVersion(version); // StoredRecordError when missing or corrupt
    const host = await importPeft(this.model!.config, { weights: rec.weights, config: rec.config, weightsFile: `adapter version ${version} (adapter_model.safetensors)`, configFile: `adapter version ${version} (adapter_config.json)` });
    const status = await engine.learning.restore({ host, version: rec.meta.metrics?.version ?? version, trainedKeys: parseNote(rec.meta.note).trainedPairs });
    this.serving = version;
    return status;
  }

  async resetAdapter(): Promise<LearningStatus> {
    const status = await this.loaded().learning.reset();
    this.serving = null;
    return status;
  }

  async exportAdapter(version?: number): Promise<PeftFiles> {
    const engine = this.loaded();
    if (version === undefined) return exportPeft(this.model!.config, (await engine.learning.snapshot()).host);
    const rec = await this.requireStore('exportAdapter(version)').loadAdapterVersion(version);
    return { weights: rec.weights, config: rec.config };
  }

  async importAdapter(files: PeftFiles, options: { allowBaseMismatch?: boolean } = {}): Promise<AdapterImported> {
    const engine = this.loaded();
    const config = this.model!.config;
    if (!files || typeof files !== 'object') throw new InvalidRequestError('files', 'must be PEFT files {weights: adapter_model.safetensors bytes, config: adapter_config.json text}');
    const host = await importPeft(config, { weights: files.weights, config: files.config, allowBaseMismatch: options.allowBaseMismatch === true });
    const before = engine.learning.status();
    const learning = await engine.learning.restore({ host, version: (before?.version ?? 0) + 1, trainedKeys: [] });
    let saved: AdapterVersionInfo | null = null;
    if (this.store) {
      const snap = await engine.learning.snapshot();
      saved = await this.store.saveAdapterVersion({ model: config, host }, { label: 'imported', metrics: { version: learning.version, steps: learning.steps }, note: JSON.stringify({ trainedPairs: snap.trainedKeys }) });
      this.serving = saved.version;
    }
    return { learning, saved };
  }

  private requireStore(what: string): LearnStore {
    if (!this.store) throw new NoAdapterStoreError(what);
    return this.store;
  }

  subscribeStats(sink: StatsSink | null): void {
    this.statsPump.setSink(sink);
  }

  reportFrames(report: FrameReport): void {
    const r = validateFrameReport(report); // FrameReportError for the page, before anything changes
    this.frames = r;
    this.engine?.core.reportFrames(r);
  }

  async feedback(f: FeedbackInput): Promise<RateResult> {
    return await this.loaded().feedback(f);
  }

  async addPreference(p: PairInput): Promise<AddedPair> {
    return await this.loaded().preferences.add(p);
  }

  preferences(): PreferencePair[] | null {
    return this.engine?.preferences.list() ?? null;
  }

  unload(): Promise<void> {
    const run = this.queue.then(() => this.dropModel());
    this.queue = run.catch(() => undefined);
    return run;
  }

  setDeviceLostListener(sink: DeviceLostSink): void {
    if (this.lostSink !== sink) releaseRemote(this.lostSink);
    this.lostSink = sink;
  }

  async loseDeviceForTesting(): Promise<void> {
    const ctx = this.ctx;
    if (!ctx) return;
    ctx.device.destroy(); // not ctx.destroy(): that marks the loss as ours
    await ctx.lost;
  }
}

Comlink.expose(new EngineHost());

/**
 * The feedback log of a load: persisted in IndexedDB (what was rated before a reload is still
 * there) unless the page asked for memory only. A store that cannot be opened falls back to memory
 * rather than failing the load: serving does not depend on it.
 */
/** The IndexedDB store of feedback, pairs and adapter versions, or null (memory only). */
function learnStore(dbName: string | false | undefined): LearnStore | null {
  if (dbName === false || typeof indexedDB === 'undefined') return null;
  return new LearnStore({ dbName: dbName ?? 'mace-web' });
}

async function feedbackSink(store: LearnStore | null): Promise<FeedbackSink> {
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
