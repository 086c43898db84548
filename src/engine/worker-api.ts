/**
 * The contract between the page and the engine's Web Worker (workers/engine.worker.ts), shared by
 * both sides: the worker implements EngineWorkerApi and exposes it with comlink; the page holds a
 * `Comlink.Remote<EngineWorkerApi>`, so every call and its payload are typed end to end.
 *
 * What cannot cross the boundary is replaced by plain data:
 * - AbortSignal: each request carries a page-chosen `requestId`; the client turns its signal into
 *   `abort(requestId)`.
 * - Streams: the worker pushes StreamEvents (a tagged union: chunk / end / error) into a
 *   comlink-proxied sink, all on one port, so they arrive in order.
 * - Errors: thrown errors cross through errors-wire.ts (name, code and fields preserved);
 *   callbacks that report an error receive its WireError.
 */
import type { TallySnapshot } from '../gpu/tally.ts';
import type { WeightFormat } from '../kernels/weights.ts';
import type { LearningStatus, StatsBatch } from '../scheduler/stats.ts';
import type { FrameReport } from '../scheduler/frame-budget.ts';
import type { LearningOptions } from './learner.ts';
import type { LoadProgress } from '../model/loader.ts';
import type { WireError } from './errors-wire.ts';
import type { FeedbackInput } from './feedback.ts';
import type { RateResult } from '../learn/feedback.ts';
import type { AddedPair, PairInput, PreferencePair } from '../learn/pairs.ts';
import type { PeftFiles } from '../learn/peft.ts';
import type { AdapterVersionInfo } from '../learn/store.ts';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionCreateParams, Completion, CompletionCreateParams, EngineOptions, EngineStats } from './types.ts';

/** Where the worker loads a model from (a plain-data stand-in for a ModelSource). */
export type ModelSourceSpec =
  /** A folder of Hugging Face files under a URL (absolute; the client resolves relative ones). */
  | { kind: 'url'; base: string }
  /** A Hub repository (owner/name) at a revision (default 'main'). */
  | { kind: 'hub'; repo: string; revision?: string }
  /** Files the user picked; File objects are structured-cloneable. */
  | { kind: 'files'; files: File[] };

export interface LoadRequest {
  source: ModelSourceSpec;
  /** Storage format of the weights on the GPU. */
  format: WeightFormat;
  /** Engine sizes (KV budget, batch...). modelName defaults to the source's name. */
  engine?: EngineOptions;
  /** Keep URL/Hub downloads in the Cache API (default true). */
  cache?: boolean;
  /**
   * IndexedDB database of the feedback log and preference pairs (default 'mace-web'), so ratings
   * and pairs survive a reload; false keeps them in memory only.
   */
  feedbackStore?: string | false;
  /**
   * On-device learning: pairs from feedback train a LoRA adapter with DPO between chat iterations
   * (default on; the engine then gets 2 adapter slots unless engine.adapters says otherwise), with
   * the poisoning guard on (anchorEvery 4, setSize 8, threshold 0.1) unless `guard` says otherwise.
   * false: off.
   */
  learning?: LearningOptions | false;
}

/** What the page learns about a loaded model. */
export interface ModelInfo {
  modelName: string;
  /** The source as the loader describes it (URL prefix, picked files...). */
  source: string;
  format: WeightFormat;
  architecture: string;
  vocabSize: number;
  nLayers: number;
  hiddenSize: number;
  /** Longest sequence the engine serves (prompt + output). */
  maxContext: number;
  /** false: chat requests run in completion mode (contents joined, no template). */
  hasChatTemplate: boolean;
  /** The GPU in one line (describeGpu). */
  gpu: string;
  /** Wall-clock milliseconds of the load (files, headers, upload, engine). */
  loadMs: number;
  /**
   * Shared engine only: true when this load attached to the model another tab had already loaded
   * with the same request (nothing was loaded again; `loadMs` is that first load's).
   */
  reused?: boolean;
}

/** Request parameters as they cross: no AbortSignal, and `stream` is chosen by the method. */
export type WireChatParams = Omit<ChatCompletionCreateParams, 'signal' | 'stream'>;
export type WireCompletionParams = Omit<CompletionCreateParams, 'signal' | 'stream'>;

/** One message of a streamed response; each kind carries exactly its payload. */
export type StreamEvent<C> = { kind: 'chunk'; chunk: C } | { kind: 'end' } | { kind: 'error'; error: WireError };

/** Receives a stream's events (a comlink-proxied function on the page). */
export type StreamSink<C> = (event: StreamEvent<C>) => void | Promise<void>;

export type ProgressSink = (p: LoadProgress) => void;
/** Receives the stats stream in batches (at most one per STATS_FLUSH_MS). */
export type StatsSink = (batch: StatsBatch) => void | Promise<void>;
/** How often the worker sends the stats records it collected. */
export const STATS_FLUSH_MS = 100;
export type DeviceLostSink = (error: WireError) => void;

export interface EngineWorkerApi {
  /**
   * Load a model, replacing the current one (which is destroyed first; its requests fail with
   * 'engine-closed'). Acquires the GPU on first use and again after a device loss. Loads are
   * serialised: a second load waits for the first.
   */
  load(request: LoadRequest, onProgress?: ProgressSink): Promise<ModelInfo>;
  /** Non-streaming chat completion. */
  chat(requestId: string, params: WireChatParams): Promise<ChatCompletion>;
  /** Non-streaming legacy completion. */
  complete(requestId: string, params: WireCompletionParams): Promise<Completion>;
  /**
   * Streaming chat completion: resolves once the request is queued (parameter and prompt errors
   * reject here, before any event); chunks then go to `sink`, followed by 'end' or 'error'.
   */
  chatStream(requestId: string, params: WireChatParams, sink: StreamSink<ChatCompletionChunk>): Promise<void>;
  /** Streaming legacy completion; same protocol as chatStream. */
  completeStream(requestId: string, params: WireCompletionParams, sink: StreamSink<Completion>): Promise<void>;
  /** Cancel a request: it finishes with finish_reason 'abort'. Unknown or finished ids are ignored. */
  abort(requestId: string): void;
  /** The engine's counters, or null when no model is loaded. */
  stats(): EngineStats | null;
  /** Live GPU buffers and bytes of the worker's device, by label prefix and owner (null before the device exists). */
  gpuMemory(): TallySnapshot | null;
  /** Rate a finished completion (thumbs); pairs form per context. Needs a loaded model. */
  feedback(f: FeedbackInput): Promise<RateResult>;
  /** Add a preference pair directly. */
  addPreference(p: PairInput): Promise<AddedPair>;
  /** All preference pairs (feedback-made and added), or null when no model is loaded. */
  preferences(): PreferencePair[] | null;
  /** Learning status, or null when no model is loaded or learning is off. */
  learningStatus(): LearningStatus | null;
  /** Saved versions of the learnt adapter (newest first), the one serving, and the learner's status. */
  adapterVersions(): Promise<AdapterVersions>;
  /** Serve (and train on from) a saved version: a switch or a rollback. */
  serveAdapterVersion(version: number): Promise<LearningStatus>;
  /** Back to the base model's behaviour (the adapter's delta zeroed); feedback trains it again. */
  resetAdapter(): Promise<LearningStatus>;
  /** PEFT files of the adapter serving now, or of a saved version. */
  exportAdapter(version?: number): Promise<PeftFiles>;
  /** PEFT files to serve and train on from now, saved as a new version (validated against the model first). */
  importAdapter(files: PeftFiles, options?: { allowBaseMismatch?: boolean }): Promise<AdapterImported>;
  /** Register the page's stats listener (one; a new one replaces it; null: stop). */
  subscribeStats(sink: StatsSink | null): void;
  /**
   * The page's frames over the last window (src/engine/frame-monitor.ts): the engine's budget per
   * submission follows them (src/scheduler/frame-budget.ts). Kept across loads; a bad report
   * rejects with FrameReportError naming the field.
   */
  reportFrames(report: FrameReport): void;
  /** Destroy the engine and the model's GPU memory (the device is kept for the next load). */
  unload(): Promise<void>;
  /** Register the page's device-loss listener (one; a new one replaces it). */
  setDeviceLostListener(sink: DeviceLostSink): void;
  /** Destroy the GPU device as a real loss would (tests of the recovery path). */
  loseDeviceForTesting(): Promise<void>;
}

/** The learnt adapter's saved versions and which one serves. */
export interface AdapterVersions {
  versions: AdapterVersionInfo[];
  /** The saved version serving now; null: none saved yet, reset to base, or no store. */
  serving: number | null;
  learning: LearningStatus | null;
}

/** An imported adapter: the learner's status, and its saved version (null without a store). */
export interface AdapterImported {
  learning: LearningStatus;
  saved: AdapterVersionInfo | null;
}

/** The worker was loaded without a feedback store (feedbackStore: false): no saved versions. */
export class NoAdapterStoreError extends Error {
  readonly code = 'no-adapter-store';
  constructor(detail: string) {
    super(`engine worker: ${detail}: this model was loaded without a feedback store (feedbackStore: false), so no adapter versions are saved`);
    this.name = 'NoAdapterStoreError';
  }
}

/** A request needs a model and none is loaded (or it was unloaded, or the device was lost). */
export class NoModelError extends Error {
  readonly code = 'no-model';
  constructor(detail = 'no model is loaded; call load() first') {
    super(`engine worker: ${detail}`);
    this.name = 'NoModelError';
  }
}

/** A request id is empty or still in use by another request. */
export class RequestIdError extends Error {
  readonly code = 'bad-request-id';
  constructor(
    readonly requestId: string,
    detail: string,
  ) {
    super(`engine worker: request id '${requestId}' ${detail}`);
    this.name = 'RequestIdError';
  }
}

/** The worker died (script error) or was terminated while calls were pending. */
export class WorkerGoneError extends Error {
  readonly code = 'worker-gone';
  constructor(detail: string) {
    super(`engine worker: ${detail}`);
    this.name = 'WorkerGoneError';
  }
}

// ---- one engine for many tabs (workers/shared-engine.worker.ts, src/engine/connections.ts)

/** The shared worker's answer to a tab's first call. */
export interface SharedHello {
  /** This tab's connection id (its request ids are namespaced under it in the engine). */
  connectionId: string;
  /** navigator.gpu exists in the shared worker; false: the tab falls back to a dedicated worker. */
  webgpu: boolean;
  /** How the worker will notice this tab closing besides a goodbye: its lifetime lock, or the heartbeat. */
  liveness: 'lock' | 'heartbeat';
}

/** Why the shared worker closed a connection (and aborted its requests). */
export type ConnectionCloseReason = 'goodbye' | 'lock-released' | 'heartbeat-timeout';

/** The shared engine's bookkeeping, as one tab sees it. */
export interface SharedEngineStatus {
  connectionId: string;
  /** Connections open now (tabs, or engines of one tab). */
  connections: number;
  /** Connections holding the loaded model (their load() returned it and they have not unloaded). */
  modelHolders: number;
  /** Models this worker has loaded since it started (a reused load does not count). */
  modelLoads: number;
  /** Connections closed so far, by reason. */
  closed: Record<ConnectionCloseReason, number>;
  /** Requests aborted in the engine because their tab's connection closed. */
  abortedOnClose: number;
}

/**
 * What one tab's connection to the shared worker offers: the dedicated worker's API (request ids
 * are the tab's own; the worker namespaces them per connection), plus the connection's life cycle.
 * Differences of meaning: `load` of the request already loaded reuses the model, of a different
 * one while another tab holds a model rejects with ModelInUseError; `unload` only lets go of this
 * tab's hold (the model is freed when no tab holds it); the stats stream and device-loss reports go
 * to every subscribed tab; `reportFrames` from a hidden tab is ignored while another tab is visible.
 */
export interface SharedEngineWorkerApi extends EngineWorkerApi {
  /** The first call: registers the tab's lifetime lock name (null: none, the heartbeat decides). */
  hello(lockName: string | null): SharedHello;
  /** The tab is alive (sent every HEARTBEAT_INTERVAL_MS). */
  heartbeat(): void;
  /** The tab is going away: its in-flight requests are aborted now. */
  goodbye(): void;
  sharedStatus(): SharedEngineStatus;
}

/** Another tab of the shared engine holds a different model: loading this one would pull it from under that tab. */
export class ModelInUseError extends Error {
  readonly code = 'model-in-use';
  constructor(
    /** The model loaded now. */
    readonly loadedModel: string,
    /** Other connections that hold it. */
    readonly holders: number,
  ) {
    super(`shared engine: ${holders} other tab(s) use model '${loadedModel}'; a different model (or the same with other options) cannot replace it while they hold it. Load the same request to share it, or use a dedicated engine (createWorkerEngine()) for another model`);
    this.name = 'ModelInUseError';
  }
}

/** A call arrived on a connection the shared worker already closed (after goodbye, or a missed heartbeat). */
export class ConnectionClosedError extends Error {
  readonly code = 'connection-closed';
  constructor(
    readonly connectionId: string,
    readonly reason: ConnectionCloseReason,
  ) {
    super(`shared engine: connection ${connectionId} was closed (${reason}); its requests were aborted`);
    this.name = 'ConnectionClosedError';
  }
}
