/**
 * EngineHost: the serving engine of a worker. The GPU context (acquired on the first load and again
 * after a device loss), the loaded model and its engine, and the in-flight requests' AbortControllers
 * by request id (AbortSignals cannot cross a postMessage). The dedicated worker
 * (workers/engine.worker.ts) exposes one to its page; the shared worker
 * (workers/shared-engine.worker.ts) runs one for every tab, behind a per-connection wrapper.
 */
import type { TallySnapshot } from '../src/gpu/tally.ts';
import { InvalidRequestError } from '../src/engine/errors.ts';
import { serializeError } from '../src/engine/errors-wire.ts';
import { createEngine, type Engine } from '../src/engine/openai.ts';
import type { FeedbackInput } from '../src/engine/feedback.ts';
import type { AdapterVersionInfo, LearnStore } from '../src/learn/store.ts';
import { exportPeft, importPeft, type PeftFiles } from '../src/learn/peft.ts';
import type { RateResult } from '../src/learn/feedback.ts';
import type { AddedPair, PairInput, PreferencePair } from '../src/learn/pairs.ts';
import type { LearningStatus } from '../src/scheduler/stats.ts';
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
  type ProgressSink,
  type StreamSink,
  type StatsSink,
  type WireChatParams,
  type WireCompletionParams,
} from '../src/engine/worker-api.ts';
import { acquireGpu, describeGpu, type GpuContext } from '../src/gpu/device.ts';
import type { DeviceLostError } from '../src/gpu/errors.ts';
import { loadModel, type LoadedModel } from '../src/model/loader.ts';
import {
  AdapterSaver,
  DEFAULT_GUARD,
  FORMATS,
  StatsPump,
  defaultModelName,
  feedbackSink,
  learnStore,
  loadSavedLearning,
  notify,
  parseNote,
  releaseRemote,
  sourceOf,
  throttledProgress,
} from './host-support.ts';


export class EngineHost implements EngineWorkerApi {
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
