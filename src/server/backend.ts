/**
 * What `mace serve`'s HTTP layer (src/server/http.ts) needs from an engine, as plain data so the
 * same interface works in-process (Node + Dawn: `engineBackend` over createEngine) and across the
 * Chromium page boundary (bin/serve.mjs proxies it into src/server/engine-page.ts, which runs
 * `engineBackend` in the page). No node: imports: this file also runs in the page.
 */
import type { Engine } from '../engine/openai.ts';
import type { AdapterInfo } from '../engine/types.ts';

export type Endpoint = 'chat' | 'completions';

/** PEFT files of one adapter: adapter_model.safetensors bytes and adapter_config.json text. */
export interface AdapterFiles {
  weights: Uint8Array;
  config: string;
}

export interface ServeBackend {
  /** The base model's name (the `model` of responses and /v1/models' first entry). */
  readonly modelName: string;
  /** Longest sequence the engine holds (prompt + output): /v1/models' max_model_len. */
  readonly maxContext: number;
  /**
   * Run one request. With `onChunk`, the request streams: every chunk goes to it (awaited, so a
   * slow client slows the stream instead of buffering it) and the promise resolves with null once
   * the last chunk went; without it, resolves with the whole response. `signal` cancels it in the
   * engine. Rejects with the engine's typed errors.
   */
  run(endpoint: Endpoint, params: Record<string, unknown>, onChunk: ((chunk: unknown) => Promise<void>) | null, signal: AbortSignal): Promise<unknown>;
  loadAdapter(name: string, files: AdapterFiles): Promise<AdapterInfo>;
  unloadAdapter(name: string): Promise<AdapterInfo>;
  listAdapters(): Promise<AdapterInfo[]>;
}

/** An in-thread Engine as a ServeBackend. */
export function engineBackend(engine: Engine, maxContext: number): ServeBackend {
  return {
    modelName: engine.modelName,
    maxContext,
    async run(endpoint, params, onChunk, signal) {
      // The params are the client's JSON: the engine checks every field itself (typed errors).
      const create = (endpoint === 'chat' ? engine.chat.completions.create : engine.completions.create) as (p: unknown) => Promise<unknown>;
      const p = { ...params, signal, stream: onChunk !== null };
      if (onChunk === null) return create(p);
      const chunks = (await create(p)) as AsyncIterable<unknown>;
      for await (const c of chunks) await onChunk(c);
      return null;
    },
    loadAdapter: (name, files) => engine.adapters.load(name, { weights: files.weights, config: files.config }),
    unloadAdapter: async (name) => engine.adapters.unload(name),
    listAdapters: async () => engine.adapters.list(),
  };
}
