/**
 * One engine for many tabs, page side: createSharedEngine() connects this tab to the shared worker
 * (workers/shared-engine.worker.ts) and gives the WorkerEngine client of client.ts over that
 * connection, or a dedicated engine where no shared one can run. How the worker learns that the
 * tab is gone: its goodbye (terminate(), 'pagehide'), its lifetime Web Lock, or else the heartbeat
 * (the rule is in connections.ts).
 */
import * as Comlink from 'comlink';
import { createWorkerEngine, engineOver, type EngineLink, type WorkerEngine, type WorkerEngineOptions } from './client.ts';
import { HEARTBEAT_INTERVAL_MS } from './connections.ts';
import { installErrorTransfer } from './errors-wire.ts';
import { WorkerGoneError, type SharedEngineWorkerApi, type SharedHello } from './worker-api.ts';

/** `worker`: the dedicated worker to fall back to (default: a new one, as createWorkerEngine). */
export interface SharedEngineOptions extends WorkerEngineOptions {
  /** A SharedWorker running workers/shared-engine.worker.ts; default: the module shared worker 'mace-engine'. */
  sharedWorker?: SharedWorker;
}

/** How long a shared worker may take to answer its first call before this tab falls back to a dedicated one. */
export const SHARED_START_TIMEOUT_MS = 30_000;

function defaultSharedWorker(): SharedWorker {
  return new SharedWorker(new URL('../../workers/shared-engine.worker.ts', import.meta.url), { type: 'module', name: 'mace-engine' });
}

/**
 * This tab's lifetime lock (navigator.locks), held until `release()` or until the tab closes: the
 * shared worker queues a request for it and so learns at once when the tab is gone. null: no Web
 * Locks here (the heartbeat tells instead).
 */
async function holdLifetimeLock(): Promise<{ name: string; release(): void } | null> {
  if (typeof navigator === 'undefined' || typeof navigator.locks?.request !== 'function' || typeof crypto?.randomUUID !== 'function') return null;
  const name = `mace-engine-tab:${crypto.randomUUID()}`;
  let release = () => {};
  const held = new Promise<void>((granted, refused) => {
    navigator.locks
      .request(name, () => {
        granted();
        return new Promise<void>((done) => (release = done));
      })
      .catch(refused);
  });
  try {
    await held; // the worker must not queue its request before ours holds the lock
  } catch {
    return null;
  }
  return { name, release: () => release() };
}

/**
 * One engine for all tabs of this origin: this tab's connection to the shared worker
 * (workers/shared-engine.worker.ts), with the WorkerEngine surface (`kind: 'shared'`). Each tab's
 * requests are its own (ids namespaced per connection); closing the tab, `terminate()`, or the page's
 * 'pagehide' (unless kept in the back/forward cache) aborts its in-flight requests in the engine,
 * and the other tabs' go on. The first tab's load loads the model, the next tabs' same load reuses it.
 *
 * Resolves to a dedicated engine (createWorkerEngine, `kind: 'dedicated'`) where SharedWorker is
 * missing or cannot be started (e.g. an opaque origin), where it has no WebGPU (navigator.gpu inside
 * SharedWorkers is newer than in dedicated ones), or when it does not answer within
 * SHARED_START_TIMEOUT_MS.
 */
export async function createSharedEngine(options: SharedEngineOptions = {}): Promise<WorkerEngine> {
  installErrorTransfer();
  const { sharedWorker, ...dedicatedOptions } = options;
  const dedicated = (why: string) => {
    console.info(`mace: no shared engine (${why}); this tab uses its own engine worker`);
    return createWorkerEngine(dedicatedOptions);
  };
  let shared: SharedWorker;
  try {
    if (!sharedWorker && typeof SharedWorker === 'undefined') return dedicated('SharedWorker is not available');
    shared = sharedWorker ?? defaultSharedWorker();
  } catch (e) {
    return dedicated(`SharedWorker refused: ${e instanceof Error ? e.message : String(e)}`);
  }
  const port = shared.port;
  const remote = Comlink.wrap<SharedEngineWorkerApi>(port);
  port.start();
  const lock = await holdLifetimeLock();
  let hello: SharedHello;
  let failedToStart: (why: string) => void = () => {};
  const startError = (ev: Event) => failedToStart(`the shared worker failed to start${ev instanceof ErrorEvent && ev.message ? `: ${ev.message}` : ''}`);
  shared.addEventListener('error', startError);
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    hello = await Promise.race([
      remote.hello(lock?.name ?? null),
      new Promise<never>((_, reject) => {
        failedToStart = (why) => reject(new Error(why));
        timer = setTimeout(() => reject(new Error(`the shared worker did not answer in ${SHARED_START_TIMEOUT_MS} ms`)), SHARED_START_TIMEOUT_MS);
      }),
    ]);
  } catch (e) {
    lock?.release();
    port.close();
    return dedicated(e instanceof Error ? e.message : String(e));
  } finally {
    clearTimeout(timer);
    shared.removeEventListener('error', startError);
  }
  if (!hello.webgpu) {
    remote.goodbye().catch(() => undefined);
    lock?.release();
    port.close();
    return dedicated('WebGPU is not available in SharedWorkers in this browser');
  }

  let closed = false;
  let heartbeat: ReturnType<typeof setInterval> | undefined;
  const onPageHide = (ev: PageTransitionEvent) => {
    if (!ev.persisted) engine.terminate(); // kept in the back/forward cache: the tab may come back
  };
  const link: EngineLink = {
    kind: 'shared',
    watch(die) {
      // Only where the worker cannot see this tab's lock: the pings keep the connection open, and
      // an answer 'connection-closed' means it closed it (a missed ping): fail what is pending.
      if (hello.liveness !== 'heartbeat') return;
      heartbeat = setInterval(() => {
        remote.heartbeat().catch((e: unknown) => {
          if ((e as { code?: unknown })?.code === 'connection-closed') die(new WorkerGoneError(`the shared engine closed this tab's connection: ${(e as Error).message}`));
        });
      }, HEARTBEAT_INTERVAL_MS);
    },
    close() {
      if (closed) return;
      closed = true;
      clearInterval(heartbeat);
      if (typeof removeEventListener === 'function') removeEventListener('pagehide', onPageHide);
      // The goodbye is posted before the port closes, so the worker aborts this tab's requests now.
      remote.goodbye().catch(() => undefined);
      lock?.release();
      setTimeout(() => port.close(), 0);
    },
    sharedStatus: () => remote.sharedStatus(),
  };
  const engine = engineOver(remote, link, dedicatedOptions);
  if (typeof addEventListener === 'function' && typeof document !== 'undefined') addEventListener('pagehide', onPageHide);
  return engine;
}
