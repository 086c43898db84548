/**
 * The serving engine in a dedicated Web Worker: the GPU device, the model weights, the KV cache and
 * the batching loop all live here, so the page's main thread never waits on GPU work or tokenizer
 * calls. The page talks to it through src/engine/client.ts; the contract is EngineWorkerApi
 * (src/engine/worker-api.ts), exposed with comlink.
 *
 * State is one EngineHost (workers/engine-host.ts): the GPU context, the loaded model and its
 * engine, and the in-flight requests. One engine for many tabs is workers/shared-engine.worker.ts,
 * which runs the same EngineHost behind a wrapper per tab.
 */
import * as Comlink from 'comlink';
import { installErrorTransfer } from '../src/engine/errors-wire.ts';
import { EngineHost } from './engine-host.ts';

installErrorTransfer();

Comlink.expose(new EngineHost());
