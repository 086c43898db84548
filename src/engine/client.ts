/**
 * The page side of the engine worker: the same OpenAI-style surface as the in-thread engine
 * (`chat.completions.create`, `completions.create`, with stream: true giving an AsyncIterable of
 * chunks, and `signal`), backed by workers/engine.worker.ts through comlink.
 *
 * - Cancellation: each request gets an id; its AbortSignal, or leaving a `for await` early, sends
 *   `abort(id)` and the request finishes with finish_reason 'abort' (as in-thread).
 * - Streams: the worker pushes events into a proxied sink; a Channel (the engine's own
 *   single-consumer queue) buffers them for the iterator.
 * - Errors: the worker's typed errors arrive as MaceRemoteError with name, code and fields.
 * - A dead or terminated worker rejects every pending call and open stream with WorkerGoneError,
 *   so nothing on the page waits forever.
 * - Frames: on a page (requestAnimationFrame and a document exist), a FrameMonitor sends the
 *   page's frame interval, drops and visibility to the worker about every 250 ms, so the engine's
 *   per-submission budget follows the page (src/scheduler/frame-budget.ts); it stops with the worker.
 * - One engine for many tabs: createSharedEngine() (shared-client.ts) connects to
 *   workers/shared-engine.worker.ts (one model on the GPU for every tab of the origin) and gives the
 *   same WorkerEngine surface; where no SharedWorker with WebGPU can run it resolves to a dedicated
 *   engine (`kind` says which).
 */
import type { TallySnapshot } from '../gpu/tally.ts';
import * as Comlink from 'comlink';
import { Channel } from './channel.ts';
import { browserFrameClock, FrameMonitor, type FrameClock } from './frame-monitor.ts';
import type { FeedbackInput } from './feedback.ts';
import type { RateResult } from '../learn/feedback.ts';
import type { AddedPair, PairInput, PreferencePair } from '../learn/pairs.ts';
import { installErrorTransfer, reviveError, type MaceRemoteError } from './errors-wire.ts';
import type { ChatCompletions, Completions } from './openai.ts';
import type { LearningStatus, StatsBatch } from '../scheduler/stats.ts';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionCreateParams, Completion, CompletionCreateParams, EngineStats } from './types.ts';
import { WorkerGoneError, type AdapterImported, type AdapterVersions, type EngineWorkerApi, type LoadRequest, type ModelInfo, type ProgressSink, type SharedEngineStatus, type StreamEvent, type StreamSink } from './worker-api.ts';
import type { PeftFiles } from '../learn/peft.ts';

export interface WorkerEngineOptions {
  /** A worker running workers/engine.worker.ts; default: a new module worker. */
  worker?: Worker;
  /**
   * Report this page's frames to the engine (its budget per submission follows them): default
   * true where the page has requestAnimationFrame; false: never (the engine's constant budget);
   * a FrameClock: measure through it (tests).
   */
  frames?: boolean | FrameClock;
}

export interface WorkerEngine {
  /** 'dedicated': this page's own worker; 'shared': one engine for every tab of the origin (createSharedEngine, shared-client.ts). */
  readonly kind: 'dedicated' | 'shared';
  /**
   * Load a model in the worker (replacing the current one). URL bases may be relative to the page.
   * Shared: the request another tab already loaded is reused (`reused: true`); a different one
   * while another tab holds a model rejects with ModelInUseError ('model-in-use').
   */
  load(request: LoadRequest, onProgress?: ProgressSink): Promise<ModelInfo>;
  readonly chat: { readonly completions: ChatCompletions };
  readonly completions: Completions;
  /** The worker engine's counters, or null when no model is loaded. */
  stats(): Promise<EngineStats | null>;
  /** GPU memory alive on the worker's device, by owner (null before its first load). */
  gpuMemory(): Promise<TallySnapshot | null>;
  /** Thumbs on a finished completion; liked and disliked answers to one context become a pair. */
  feedback(f: FeedbackInput): Promise<RateResult>;
  readonly preferences: {
    add(p: PairInput): Promise<AddedPair>;
    /** All pairs, or null when no model is loaded. */
    list(): Promise<PreferencePair[] | null>;
  };
  readonly learning: {
    /** Adapter name, version, steps, pending pairs; null when no model is loaded or learning is off. */
    status(): Promise<LearningStatus | null>;
  };
  /** The learnt adapter's saved versions (IndexedDB, newest few): list, switch or roll back, reset, export, import. */
  readonly adapter: {
    versions(): Promise<AdapterVersions>;
    /** Serve (and train on from) saved version `version`. */
    serve(version: number): Promise<LearningStatus>;
    /** Back to the base model's behaviour; feedback trains the adapter again. */
    reset(): Promise<LearningStatus>;
    /** PEFT files (adapter_model.safetensors bytes, adapter_config.json text) of the serving adapter or a saved version. */
    export(version?: number): Promise<PeftFiles>;
    /** Serve PEFT files from now on (checked against the model), saved as a new version. */
    import(files: PeftFiles, options?: { allowBaseMismatch?: boolean }): Promise<AdapterImported>;
  };
  /**
   * Receive the engine's stats stream (iterations, finished requests, fine-tune steps) in batches.
   * Several listeners share one subscription to the worker. Returns an unsubscribe.
   */
  onStats(listener: (batch: StatsBatch) => void): () => void;
  /** Free the model's GPU memory (the worker and its device stay). Shared: only once no other tab holds it. */
  unload(): Promise<void>;
  /** The shared engine's connections, model loads and closes as this tab sees them; null for a dedicated engine. */
  sharedStatus(): Promise<SharedEngineStatus | null>;
  /** Called with the typed error ('device-lost') when the worker's GPU device is lost. Returns an unsubscribe. */
  onDeviceLost(listener: (error: MaceRemoteError) => void): () => void;
  /**
   * Stop the worker; pending calls and streams reject with WorkerGoneError. Shared: this tab's
   * connection closes (its in-flight requests are aborted in the engine); the other tabs go on.
   */
  terminate(): void;
  /** The page's frame monitor (null: frames are not reported: option off, or no rAF here). */
  readonly frames: FrameMonitor | null;
  /** The raw comlink proxy (tests, advanced use). */
  readonly remote: Comlink.Remote<EngineWorkerApi>;
}

function defaultWorker(): Worker {
  return new Worker(new URL('../../workers/engine.worker.ts', import.meta.url), { type: 'module', name: 'mace-engine' });
}

/** Relative URL bases are relative to the page, not to the worker script. */
function resolveRequest(request: LoadRequest): LoadRequest {
  if (request.source.kind !== 'url' || typeof location === 'undefined') return request;
  return { ...request, source: { kind: 'url', base: new URL(request.source.base, location.href).href } };
}

/** How the client is joined to its engine: a dedicated worker, or one connection to the shared worker (shared-client.ts). */
export interface EngineLink {
  kind: WorkerEngine['kind'];
  /** Watch for the engine going away; `ready()`: whether the start-up handshake has completed. */
  watch(die: (e: WorkerGoneError) => void, ready: () => boolean): void;
  /** Let go of the engine (terminate the worker / close the connection). */
  close(): void;
  sharedStatus(): Promise<SharedEngineStatus | null>;
}

export function createWorkerEngine(options: WorkerEngineOptions = {}): WorkerEngine {
  installErrorTransfer();
  const worker = options.worker ?? defaultWorker();
  const link: EngineLink = {
    kind: 'dedicated',
    watch(die, ready) {
      worker.addEventListener('error', (ev) => {
        // After start-up, uncaught errors are bugs inside a live worker; before, the script failed to load.
        if (!ready()) die(new WorkerGoneError(`the worker script failed to start${ev.message ? `: ${ev.message}` : ''}`));
      });
    },
    close: () => worker.terminate(),
    sharedStatus: () => Promise.resolve(null),
  };
  return engineOver(Comlink.wrap<EngineWorkerApi>(worker), link, options);
}

/** The client over a connected engine (either kind). */
export function engineOver(remote: Comlink.Remote<EngineWorkerApi>, link: EngineLink, options: WorkerEngineOptions): WorkerEngine {
  let serial = 0;
  const nextId = () => `req-${++serial}`;

  // ---- worker death: every pending call races `gone`, every open stream is failed.
  let goneError: WorkerGoneError | null = null;
  let markGone: (e: WorkerGoneError) => void = () => {};
  const gone = new Promise<never>((_, reject) => (markGone = reject));
  gone.catch(() => undefined); // observed through race() only
  /** How to fail each open stream (its channel's fail). */
  const openStreams = new Set<(e: WorkerGoneError) => void>();
  const die = (e: WorkerGoneError) => {
    if (goneError) return;
    goneError = e;
    markGone(e);
    frames?.stop();
    for (const fail of openStreams) fail(e);
    openStreams.clear();
  };
  const call = <T>(p: Promise<T>): Promise<T> => (goneError ? Promise.reject(goneError) : Promise.race([p, gone]));

  // ---- frames: the page's frame reports set the engine's budget (fire and forget; the monitor only sends valid ones).
  const clock = options.frames === false ? null : options.frames === true || options.frames === undefined ? browserFrameClock() : options.frames;
  const frames = clock
    ? new FrameMonitor(clock, (report) => {
        if (!goneError) remote.reportFrames(report).catch(() => undefined);
      })
    : null;
  frames?.start();

  // ---- device loss and start-up: the listener call doubles as the "worker is up" handshake.
  const lostListeners = new Set<(e: MaceRemoteError) => void>();
  let ready = false;
  link.watch(die, () => ready);
  call(remote.setDeviceLostListener(Comlink.proxy((wire) => lostListeners.forEach((l) => l(reviveError(wire))))))
    .then(() => (ready = true))
    .catch(() => undefined);

  /** Send `abort(id)` when the signal fires (now, if it already has); returns the unsubscribe. */
  const watch = (signal: AbortSignal | undefined, id: string): (() => void) => {
    if (!signal) return () => {};
    const onAbort = () => {
      if (!goneError) remote.abort(id).catch(() => undefined);
    };
    if (signal.aborted) {
      onAbort();
      return () => {};
    }
    signal.addEventListener('abort', onAbort, { once: true });
    return () => signal.removeEventListener('abort', onAbort);
  };

  /** A non-streaming request: the call, its abort wiring, and the race against worker death. */
  async function oneShot<T>(signal: AbortSignal | undefined, run: (id: string) => Promise<T>): Promise<T> {
    const id = nextId();
    const pending = call(run(id)); // posted first, so an already-aborted signal's abort follows it
    const unwatch = watch(signal, id);
    try {
      return await pending;
    } finally {
      unwatch();
    }
  }

  /** A streaming request: resolves with the chunk iterable once the worker has queued it. */
  async function streamed<C>(signal: AbortSignal | undefined, start: (id: string, sink: StreamSink<C>) => Promise<void>): Promise<AsyncIterable<C>> {
    const id = nextId();
    // Leaving the for-await early (return()) aborts the request in the worker.
    const channel = new Channel<C>(() => {
      if (!goneError) remote.abort(id).catch(() => undefined);
    });
    const failOnDeath = (e: WorkerGoneError) => channel.fail(e);
    let unwatch = () => {};
    const settle = () => {
      openStreams.delete(failOnDeath);
      unwatch();
    };
    const sink = Comlink.proxy((ev: StreamEvent<C>) => {
      if (ev.kind === 'chunk') channel.push(ev.chunk);
      else if (ev.kind === 'end') (channel.close(), settle());
      else (channel.fail(reviveError(ev.error)), settle());
    });
    openStreams.add(failOnDeath);
    try {
      const started = call(start(id, sink)); // posted first, so an already-aborted signal's abort follows it
      unwatch = watch(signal, id);
      await started;
    } catch (e) {
      settle();
      throw e;
    }
    return channel;
  }

  // Overloads as the in-thread engine's, so `await create({stream: true})` is typed as an iterable.
  function chatCreate(p: ChatCompletionCreateParams & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
  function chatCreate(p: ChatCompletionCreateParams & { stream?: false | null }): Promise<ChatCompletion>;
  function chatCreate(p: ChatCompletionCreateParams): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>>;
  function chatCreate(p: ChatCompletionCreateParams): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>> {
    const { signal, stream, ...wire } = p;
    if (stream) return streamed<ChatCompletionChunk>(signal, (id, sink) => remote.chatStream(id, wire, sink));
    return oneShot(signal, (id) => remote.chat(id, wire));
  }

  function completionCreate(p: CompletionCreateParams & { stream: true }): Promise<AsyncIterable<Completion>>;
  function completionCreate(p: CompletionCreateParams & { stream?: false | null }): Promise<Completion>;
  function completionCreate(p: CompletionCreateParams): Promise<Completion | AsyncIterable<Completion>>;
  function completionCreate(p: CompletionCreateParams): Promise<Completion | AsyncIterable<Completion>> {
    const { signal, stream, ...wire } = p;
    if (stream) return streamed<Completion>(signal, (id, sink) => remote.completeStream(id, wire, sink));
    return oneShot(signal, (id) => remote.complete(id, wire));
  }

  // ---- stats: one proxied sink in the worker, fanned out to the page's listeners.
  const statsListeners = new Set<(batch: StatsBatch) => void>();
  const statsSink = Comlink.proxy((batch: StatsBatch) => {
    for (const l of statsListeners) {
      try {
        l(batch);
      } catch (e) {
        queueMicrotask(() => {
          throw e; // reported like any listener error, without stopping the others
        });
      }
    }
  });

  return {
    kind: link.kind,
    load: (request, onProgress) => call(remote.load(resolveRequest(request), onProgress ? Comlink.proxy(onProgress) : undefined)),
    chat: { completions: { create: chatCreate } },
    completions: { create: completionCreate },
    stats: () => call(remote.stats()),
    gpuMemory: () => call(remote.gpuMemory()),
    feedback: (f) => call(remote.feedback(f)),
    preferences: {
      add: (p) => call(remote.addPreference(p)),
      list: () => call(remote.preferences()),
    },
    learning: { status: () => call(remote.learningStatus()) },
    adapter: {
      versions: () => call(remote.adapterVersions()),
      serve: (version) => call(remote.serveAdapterVersion(version)),
      reset: () => call(remote.resetAdapter()),
      export: (version) => call(remote.exportAdapter(version)),
      import: (files, options) => call(remote.importAdapter(files, options)),
    },
    onStats(listener) {
      statsListeners.add(listener);
      if (statsListeners.size === 1 && !goneError) remote.subscribeStats(statsSink).catch(() => undefined);
      return () => {
        if (!statsListeners.delete(listener) || statsListeners.size > 0 || goneError) return;
        remote.subscribeStats(null).catch(() => undefined);
      };
    },
    unload: () => call(remote.unload()),
    sharedStatus: () => call(link.sharedStatus()),
    onDeviceLost(listener) {
      lostListeners.add(listener);
      return () => lostListeners.delete(listener);
    },
    terminate() {
      die(new WorkerGoneError('terminated'));
      link.close();
    },
    frames,
    remote,
  };
}
