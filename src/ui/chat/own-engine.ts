/**
 * The engine `<mace-chat>` makes for itself when the page gives none, by its `worker` attribute:
 *
 * - `shared` (default): one engine for all tabs of the origin (createSharedEngine), so several tabs
 *   with the widget hold one copy of the model on the GPU; where no shared worker with WebGPU can
 *   run (no SharedWorker, none with navigator.gpu, the one-file mace-chat.js build) it is a
 *   dedicated worker. If another tab's shared engine holds a different model (another `model` or
 *   `format`), the widget does not take it from that tab: it moves to its own dedicated worker for
 *   its model and says so in the console.
 * - `dedicated`: this element's own worker, as before.
 *
 * The shared engine is only known asynchronously, so OwnEngine is a ChatEngine whose calls wait
 * for it, and whose listeners move with it if it is replaced.
 */
import { createWorkerEngine, type WorkerEngine } from '../../engine/client.ts';
import { createSharedEngine } from '../../engine/shared-client.ts';
import type { MaceRemoteError } from '../../engine/errors-wire.ts';
import type { FeedbackInput } from '../../engine/feedback.ts';
import type { ChatCompletionChunk, ChatCompletionCreateParams } from '../../engine/types.ts';
import type { AdapterImported, AdapterVersions, LoadRequest, ModelInfo, ProgressSink } from '../../engine/worker-api.ts';
import type { RateResult } from '../../learn/feedback.ts';
import type { PeftFiles } from '../../learn/peft.ts';
import type { LearningStatus, StatsBatch } from '../../scheduler/stats.ts';
import type { ChatEngine } from './engine.ts';

export type WorkerMode = 'shared' | 'dedicated';

/** The `worker` attribute; anything but 'dedicated' or 'shared' warns and means the default. */
export function parseWorkerAttribute(value: string | null): WorkerMode {
  const v = value?.trim().toLowerCase() ?? '';
  if (v === 'dedicated' || v === 'shared') return v;
  if (v !== '') console.warn(`<mace-chat>: worker="${value}" is not 'shared' or 'dedicated'; using 'shared'`);
  return 'shared';
}

export interface EngineMakers {
  shared(): Promise<WorkerEngine>;
  dedicated(): WorkerEngine;
}

export class OwnEngine implements ChatEngine {
  private current: Promise<WorkerEngine>;
  private readonly statsListeners = new Set<(batch: StatsBatch) => void>();
  private readonly lostListeners = new Set<(error: MaceRemoteError) => void>();
  /** Unsubscribes of the forwarding listeners on the current engine. */
  private detach: (() => void)[] = [];
  private terminated = false;

  constructor(
    mode: WorkerMode,
    /** How to make each kind (tests give stand-ins). */
    private readonly make: EngineMakers = { shared: () => createSharedEngine(), dedicated: () => createWorkerEngine() },
  ) {
    this.current = this.adopt(mode === 'shared' ? make.shared() : Promise.resolve(make.dedicated()));
  }

  /** The engine in use (tests, the page). */
  engine(): Promise<WorkerEngine> {
    return this.current;
  }

  private adopt(next: Promise<WorkerEngine>): Promise<WorkerEngine> {
    return next.then((e) => {
      if (this.terminated) return e; // terminate() stops it once it is here
      for (const off of this.detach) off();
      this.detach = [e.onStats((b) => this.statsListeners.forEach((l) => l(b))), e.onDeviceLost((err) => this.lostListeners.forEach((l) => l(err)))];
      return e;
    });
  }

  async load(request: LoadRequest, onProgress?: ProgressSink): Promise<ModelInfo> {
    const engine = await this.current;
    try {
      return await engine.load(request, onProgress);
    } catch (e) {
      if (engine.kind !== 'shared' || (e as { code?: unknown })?.code !== 'model-in-use' || this.terminated) throw e;
      console.info(`<mace-chat>: ${(e as Error).message}; this element uses its own engine worker for its model`);
      engine.terminate();
      this.current = this.adopt(Promise.resolve(this.make.dedicated()));
      return (await this.current).load(request, onProgress);
    }
  }

  readonly chat = {
    completions: {
      create: async (params: ChatCompletionCreateParams & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>> => (await this.current).chat.completions.create(params),
    },
  };

  async feedback(f: FeedbackInput): Promise<RateResult> {
    return (await this.current).feedback(f);
  }

  onDeviceLost(listener: (error: MaceRemoteError) => void): () => void {
    this.lostListeners.add(listener);
    return () => this.lostListeners.delete(listener);
  }

  onStats(listener: (batch: StatsBatch) => void): () => void {
    this.statsListeners.add(listener);
    return () => this.statsListeners.delete(listener);
  }

  readonly learning = { status: async (): Promise<LearningStatus | null> => (await this.current).learning.status() };

  /** The learnt adapter's calls (the header's adapter menu), on whichever engine serves now. */
  readonly adapter = {
    export: async (version?: number): Promise<PeftFiles> => (await this.current).adapter.export(version),
    versions: async (): Promise<AdapterVersions> => (await this.current).adapter.versions(),
    serve: async (version: number): Promise<LearningStatus> => (await this.current).adapter.serve(version),
    reset: async (): Promise<LearningStatus> => (await this.current).adapter.reset(),
    import: async (files: PeftFiles, options?: { allowBaseMismatch?: boolean }): Promise<AdapterImported> => (await this.current).adapter.import(files, options),
  };

  terminate(): void {
    if (this.terminated) return;
    this.terminated = true;
    for (const off of this.detach) off();
    this.detach = [];
    void this.current.then((e) => e.terminate(), () => undefined);
  }
}
