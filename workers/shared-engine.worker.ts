/**
 * One engine for many tabs: a SharedWorker running one EngineHost (workers/engine-host.ts: one GPU
 * device, one model, one batching loop) for every tab of the origin that connects. Each connection
 * (port) gets its own ConnectionApi, which implements SharedEngineWorkerApi over that port:
 *
 * - Isolation: a tab's request ids are namespaced under its connection (`tab-3/req-1`), so two tabs
 *   may both use `req-1`, and a tab can abort only its own requests; stream events go back through
 *   the sink the tab passed (its own port), so a tab sees only its own streams and results.
 * - Closing: when a tab goes (goodbye, its lifetime lock released, or a missed heartbeat; the rule
 *   is in src/engine/connections.ts) its in-flight requests are aborted in the engine; the other
 *   tabs' requests go on.
 * - The model: the rule in SharedModel (connections.ts): the same load request reuses the loaded
 *   model, a different one while another tab holds it is a ModelInUseError; the model is freed when
 *   its last holder unloads or closes.
 * - Stats and device loss go to every tab that subscribed; frames: a visible tab's reports win.
 *
 * The client is createSharedEngine() in src/engine/shared-client.ts; it falls back to the dedicated worker
 * when SharedWorker is missing or has no navigator.gpu (hello() reports it).
 */
import * as Comlink from 'comlink';
import type { TallySnapshot } from '../src/gpu/tally.ts';
import { InvalidRequestError } from '../src/engine/errors.ts';
import { installErrorTransfer } from '../src/engine/errors-wire.ts';
import { ConnectionRegistry, framesApply, HEARTBEAT_INTERVAL_MS, loadKey, SharedModel, type Connection } from '../src/engine/connections.ts';
import type { FeedbackInput } from '../src/engine/feedback.ts';
import type { ChatCompletion, ChatCompletionChunk, Completion, EngineStats } from '../src/engine/types.ts';
import { ConnectionClosedError, type AdapterImported, type AdapterVersions, type DeviceLostSink, type LoadRequest, type ModelInfo, type ProgressSink, type SharedEngineStatus, type SharedEngineWorkerApi, type SharedHello, type StatsSink, type StreamSink, type WireChatParams, type WireCompletionParams } from '../src/engine/worker-api.ts';
import type { RateResult } from '../src/learn/feedback.ts';
import type { AddedPair, PairInput, PreferencePair } from '../src/learn/pairs.ts';
import type { PeftFiles } from '../src/learn/peft.ts';
import { validateFrameReport, type FrameReport } from '../src/scheduler/frame-budget.ts';
import type { LearningStatus } from '../src/scheduler/stats.ts';
import { EngineHost } from './engine-host.ts';
import { FORMATS, notify, releaseRemote, sourceOf } from './host-support.ts';

installErrorTransfer();

/** The engine and what all connections share: the model's holders, the stats and device-loss listeners. */
class SharedEngine {
  readonly host = new EngineHost();
  readonly model = new SharedModel();
  readonly registry = new ConnectionRegistry({ now: () => performance.now(), abortInEngine: (id) => this.host.abort(id), onClosed: (c) => this.onClosed(c) });
  /** Loads and unloads run one at a time, so each decision sees the previous one's outcome. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly statsSinks = new Map<Connection, StatsSink>();
  private readonly lostSinks = new Map<Connection, DeviceLostSink>();
  private readonly fanOutStats: StatsSink = (batch) => {
    for (const sink of this.statsSinks.values()) notify(sink(batch));
  };

  constructor() {
    this.host.setDeviceLostListener((error) => {
      this.model.dropped(); // the host dropped it; the next load loads again
      for (const sink of this.lostSinks.values()) notify(sink(error));
    });
    setInterval(() => this.registry.sweep(), HEARTBEAT_INTERVAL_MS);
  }

  private serially<T>(run: () => Promise<T>): Promise<T> {
    const p = this.queue.then(run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  load(c: Connection, request: LoadRequest, onProgress?: ProgressSink): Promise<ModelInfo> {
    const run = this.serially(async (): Promise<ModelInfo> => {
      if (c.closedBy) throw new ConnectionClosedError(c.id, c.closedBy);
      // Bad requests get the host's own typed errors, before the sharing rule can answer for them.
      if (!request || typeof request !== 'object') throw new InvalidRequestError('load', 'needs a request object');
      if (!FORMATS.has(request.format)) throw new InvalidRequestError('format', `must be 'f32', 'f16' or 'q4', got ${JSON.stringify(request.format)}`);
      sourceOf(request.source, true);
      const key = loadKey(request);
      const decision = this.model.decide(c.id, key, this.host.stats() !== null); // ModelInUseError
      if (decision.kind === 'reuse') return decision.info;
      try {
        const info = await this.host.load(request, onProgress);
        this.model.loadedBy(c.closed ? null : c.id, key, info);
        if (c.closed) await this.freeIfUnheld(c); // the tab went while its model loaded
        return info;
      } catch (e) {
        if (this.host.stats() === null) this.model.dropped(); // the host dropped the old model before failing
        throw e;
      }
    });
    return run.finally(() => releaseRemote(onProgress));
  }

  unload(c: Connection): Promise<void> {
    return this.serially(() => this.freeIfUnheld(c));
  }

  /** `c` lets go of the model; free it when nobody holds it any more. */
  private async freeIfUnheld(c: Connection): Promise<void> {
    if (!this.model.release(c.id)) return;
    await this.host.unload();
    this.model.dropped();
  }

  setStatsSink(c: Connection, sink: StatsSink | null): void {
    const old = this.statsSinks.get(c);
    if (old && old !== sink) releaseRemote(old);
    if (sink) {
      this.statsSinks.set(c, sink);
      // Setting the same fan-out again makes the host resend its session record, for the newcomer.
      this.host.subscribeStats(this.fanOutStats);
    } else if (this.statsSinks.delete(c) && this.statsSinks.size === 0) this.host.subscribeStats(null);
  }

  setLostSink(c: Connection, sink: DeviceLostSink): void {
    const old = this.lostSinks.get(c);
    if (old && old !== sink) releaseRemote(old);
    this.lostSinks.set(c, sink);
  }

  private onClosed(c: Connection): void {
    if (this.statsSinks.has(c)) this.setStatsSink(c, null);
    releaseRemote(this.lostSinks.get(c));
    this.lostSinks.delete(c);
    void this.serially(() => this.freeIfUnheld(c)).catch(() => undefined);
  }
}

/** One tab's view of the shared engine, exposed on that tab's port. */
class ConnectionApi implements SharedEngineWorkerApi {
  constructor(
    private readonly c: Connection,
    private readonly shared: SharedEngine,
  ) {}

  private get host(): EngineHost {
    return this.shared.host;
  }

  /** Every call: refused once the connection is closed, and proof that the tab is alive. */
  private alive(): void {
    if (this.c.closedBy) throw new ConnectionClosedError(this.c.id, this.c.closedBy);
    this.shared.registry.heard(this.c);
  }

  hello(lockName: string | null): SharedHello {
    this.alive();
    if (lockName !== null && (typeof lockName !== 'string' || lockName === '')) throw new InvalidRequestError('lockName', 'must be a non-empty string or null');
    if (lockName !== null && this.c.liveness === 'heartbeat' && typeof navigator.locks?.request === 'function') {
      this.c.liveness = 'lock';
      const stop = new AbortController();
      void this.c.whenClosed.then(() => stop.abort());
      // Granted only once the tab's own hold on the lock ends: the tab closed (or crashed).
      navigator.locks.request(lockName, { signal: stop.signal }, () => void this.shared.registry.close(this.c, 'lock-released')).catch(() => undefined);
    }
    return { connectionId: this.c.id, webgpu: typeof navigator.gpu?.requestAdapter === 'function', liveness: this.c.liveness };
  }

  heartbeat(): void {
    this.alive();
  }

  goodbye(): void {
    this.shared.registry.close(this.c, 'goodbye');
  }

  sharedStatus(): SharedEngineStatus {
    this.alive();
    return this.shared.registry.status(this.c, this.shared.model);
  }

  load(request: LoadRequest, onProgress?: ProgressSink): Promise<ModelInfo> {
    this.alive();
    return this.shared.load(this.c, request, onProgress);
  }

  unload(): Promise<void> {
    this.alive();
    return this.shared.unload(this.c);
  }

  async chat(requestId: string, params: WireChatParams): Promise<ChatCompletion> {
    this.alive();
    const id = this.c.begin(requestId);
    try {
      return await this.host.chat(id, params);
    } finally {
      this.c.end(requestId);
    }
  }

  async complete(requestId: string, params: WireCompletionParams): Promise<Completion> {
    this.alive();
    const id = this.c.begin(requestId);
    try {
      return await this.host.complete(id, params);
    } finally {
      this.c.end(requestId);
    }
  }

  chatStream(requestId: string, params: WireChatParams, sink: StreamSink<ChatCompletionChunk>): Promise<void> {
    return this.startStream(requestId, sink, (id, relay) => this.host.chatStream(id, params, relay));
  }

  completeStream(requestId: string, params: WireCompletionParams, sink: StreamSink<Completion>): Promise<void> {
    return this.startStream(requestId, sink, (id, relay) => this.host.completeStream(id, params, relay));
  }

  /** Start a stream under the tab's request id; a refused start ends the id and lets go of the sink. */
  private async startStream<C>(requestId: string, sink: StreamSink<C>, start: (id: string, relay: StreamSink<C>) => Promise<void>): Promise<void> {
    this.alive();
    const id = this.c.begin(requestId);
    try {
      await start(id, this.relay(requestId, sink));
    } catch (e) {
      this.c.end(requestId);
      releaseRemote(sink);
      throw e;
    }
  }

  /**
   * The tab's sink as the host's: the last event ends the request here, and once the tab is gone
   * nothing is sent to it (and nothing waits on it), so the host's pump always finishes.
   */
  private relay<C>(requestId: string, sink: StreamSink<C>): StreamSink<C> {
    return (event) => {
      const last = event.kind !== 'chunk';
      if (last) this.c.end(requestId);
      if (this.c.closed) {
        if (last) releaseRemote(sink);
        return;
      }
      if (!last) return sink(event);
      return Promise.race([Promise.resolve(sink(event)), this.c.whenClosed]).finally(() => releaseRemote(sink));
    };
  }

  abort(requestId: string): void {
    this.alive();
    if (this.c.owns(requestId)) this.host.abort(this.c.engineId(requestId)); // another tab's ids are not reachable
  }

  stats(): EngineStats | null {
    this.alive();
    return this.host.stats();
  }

  gpuMemory(): TallySnapshot | null {
    this.alive();
    return this.host.gpuMemory();
  }

  learningStatus(): LearningStatus | null {
    this.alive();
    return this.host.learningStatus();
  }

  adapterVersions(): Promise<AdapterVersions> {
    this.alive();
    return this.host.adapterVersions();
  }

  serveAdapterVersion(version: number): Promise<LearningStatus> {
    this.alive();
    return this.host.serveAdapterVersion(version);
  }

  resetAdapter(): Promise<LearningStatus> {
    this.alive();
    return this.host.resetAdapter();
  }

  exportAdapter(version?: number): Promise<PeftFiles> {
    this.alive();
    return this.host.exportAdapter(version);
  }

  importAdapter(files: PeftFiles, options?: { allowBaseMismatch?: boolean }): Promise<AdapterImported> {
    this.alive();
    return this.host.importAdapter(files, options);
  }

  feedback(f: FeedbackInput): Promise<RateResult> {
    this.alive();
    return this.host.feedback(f);
  }

  addPreference(p: PairInput): Promise<AddedPair> {
    this.alive();
    return this.host.addPreference(p);
  }

  preferences(): PreferencePair[] | null {
    this.alive();
    return this.host.preferences();
  }

  subscribeStats(sink: StatsSink | null): void {
    this.alive();
    this.shared.setStatsSink(this.c, sink);
  }

  reportFrames(report: FrameReport): void {
    this.alive();
    const r = validateFrameReport(report); // FrameReportError for the tab, before anything changes
    if (framesApply(this.c, r, this.shared.registry.connections())) this.host.reportFrames(r);
  }

  setDeviceLostListener(sink: DeviceLostSink): void {
    this.alive();
    this.shared.setLostSink(this.c, sink);
  }

  loseDeviceForTesting(): Promise<void> {
    this.alive();
    return this.host.loseDeviceForTesting();
  }
}

const shared = new SharedEngine();

/** The worker's global scope: lib.webworker types `self` as the dedicated one. */
const scope = globalThis as unknown as SharedWorkerGlobalScope;
scope.addEventListener('connect', (event: MessageEvent) => {
  const port = event.ports[0];
  if (!port) return;
  const c = shared.registry.connect();
  Comlink.expose(new ConnectionApi(c, shared), port);
  port.start();
  // A tab whose lock was released is gone for sure: let its port go (after a goodbye or a missed
  // heartbeat the tab may still be there, and its calls get ConnectionClosedError instead of silence).
  void c.whenClosed.then(() => {
    if (c.closedBy === 'lock-released') port.close();
  });
});
