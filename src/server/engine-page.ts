/**
 * The page `mace serve` runs its engine in (headless Chromium, WebGPU as a page sees it). The CLI
 * (bin/serve.mjs) calls these functions with page.evaluate and proxies them as a ServeBackend:
 * - maceServeStart(model, options): load the model and create the engine (once).
 * - maceServeRun(id, endpoint, params, stream): one request; stream chunks go to the CLI's exposed
 *   `maceServeChunk(id, chunk)` (awaited: the HTTP response's backpressure reaches the engine).
 * - maceServeAbort(id): cancel request `id` (its HTTP client went away).
 * - maceServeAdapters(op, ...): load (PEFT files, weights in base64), unload, list.
 * Every call resolves with { ok: true, result } or { ok: false, error: WireError }: typed errors
 * keep their name, code and fields (param...) across page.evaluate, which would drop them.
 */
import { acquireGpu, describeGpu } from '../gpu/device.ts';
import { serializeError, type WireError } from '../engine/errors-wire.ts';
import { sourceFromHub, sourceFromUrl, type ModelSource } from '../model/source.ts';
import type { Endpoint } from './backend.ts';
import { createServeEngine, type ServeEngine, type ServeEngineOptions } from './engine-setup.ts';

/** Where the model is: a URL prefix (the CLI serves a local directory under one, keeping its name) or a Hub repository. */
type PageModel = { kind: 'url'; url: string; name?: string } | { kind: 'hub'; repo: string };

type Outcome<T> = { ok: true; result: T } | { ok: false; error: WireError };

declare global {
  interface Window {
    maceServeStart: (model: PageModel, options: ServeEngineOptions) => Promise<Outcome<{ modelName: string; maxContext: number }>>;
    maceServeRun: (id: number, endpoint: Endpoint, params: Record<string, unknown>, stream: boolean) => Promise<Outcome<unknown>>;
    maceServeAbort: (id: number) => void;
    maceServeAdapters: (op: 'load' | 'unload' | 'list', name?: string, config?: string, weightsBase64?: string) => Promise<Outcome<unknown>>;
    maceServeChunk?: (id: number, chunk: unknown) => Promise<void>;
    maceLog?: (message: string) => Promise<void>;
  }
}

async function outcome<T>(work: () => Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, result: await work() };
  } catch (e) {
    return { ok: false, error: serializeError(e) };
  }
}

function log(message: string): void {
  document.getElementById('status')!.textContent = message;
  void window.maceLog?.(message);
}

/** A fresh profile per run: no Cache API copy. A served directory keeps its own name (PEFT's base_model_name_or_path is checked against it), not the dev server's URL. */
function pageSource(m: PageModel): ModelSource {
  if (m.kind === 'hub') return sourceFromHub(m.repo, 'main', { cache: false });
  const url = sourceFromUrl(m.url, { cache: false });
  return m.name === undefined ? url : { description: m.name, open: (f, o) => url.open(f, o), has: (f, o) => url.has(f, o) };
}

let served: ServeEngine | null = null;
const controllers = new Map<number, AbortController>();

function backend() {
  if (!served) throw new Error('engine page: maceServeStart has not run');
  return served.backend;
}

function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

window.maceServeStart = (model, options) =>
  outcome(async () => {
    if (served) throw new Error('engine page: the engine is already started');
    const ctx = await acquireGpu({ label: 'mace serve' });
    log(`GPU: ${describeGpu(ctx)}`);
    served = await createServeEngine(ctx, pageSource(model), options, log);
    return { modelName: served.backend.modelName, maxContext: served.backend.maxContext };
  });

window.maceServeRun = (id, endpoint, params, stream) =>
  outcome(async () => {
    const controller = new AbortController();
    controllers.set(id, controller);
    try {
      const onChunk = stream ? (c: unknown) => window.maceServeChunk!(id, c) : null;
      return await backend().run(endpoint, params, onChunk, controller.signal);
    } finally {
      controllers.delete(id);
    }
  });

window.maceServeAbort = (id) => controllers.get(id)?.abort();

window.maceServeAdapters = (op, name, config, weightsBase64) =>
  outcome(async () => {
    if (op === 'list') return backend().listAdapters();
    if (op === 'unload') return backend().unloadAdapter(name!);
    return backend().loadAdapter(name!, { config: config!, weights: fromBase64(weightsBase64!) });
  });

log('Ready: mace serve drives this page.');
