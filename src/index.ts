/**
 * mace-web as an ES module package (`npm run build` → dist/lib/index.js + dist/types/index.d.ts).
 *
 * - `createWorkerEngine()`: the engine in its own Web Worker, with an OpenAI-style client
 *   (chat.completions.create, streaming, abort, feedback) — what a page normally wants.
 * - `createEngine(ctx, model)`: the same engine in the calling thread (workers, Node with Dawn),
 *   with `acquireGpu` and `loadModel` to get its arguments.
 * - `<mace-chat>`: `defineMaceChat()` registers the element (importing this module registers nothing).
 */
export { createWorkerEngine, type WorkerEngine, type WorkerEngineOptions } from './engine/client.ts';
export { createSharedEngine, type SharedEngineOptions } from './engine/shared-client.ts';
export * from './engine/index.ts';
export { MaceRemoteError, type WireError } from './engine/errors-wire.ts';
export { createRemoteEngine, type RemoteEngine, type RemoteEngineOptions, type RemoteModel } from './engine/remote-client.ts';
export { ConnectionClosedError, ModelInUseError, NoModelError, WorkerGoneError, type LoadRequest, type ModelInfo, type ModelSourceSpec, type SharedEngineStatus } from './engine/worker-api.ts';

export { acquireGpu, describeGpu, type AcquireOptions, type GpuContext } from './gpu/device.ts';
export { DeviceLostError, LimitsTooSmallError, NoAdapterError, WebGpuUnavailableError } from './gpu/errors.ts';
export { loadModel, type LoadedModel, type LoadOptions, type LoadProgress } from './model/loader.ts';
export { ModelFileError, sourceFromFiles, sourceFromHub, sourceFromUrl, type ModelSource } from './model/source.ts';
export type { WeightFormat } from './kernels/weights.ts';

export type { RateResult, Rating } from './learn/feedback.ts';
export type { PreferencePair, PairInput, AddedPair } from './learn/pairs.ts';
export type { FinetuneStats, IterationStats, LearningStatus, RequestStats, SessionStats, StatsBatch, StatsRecord, TaskKind } from './scheduler/stats.ts';

export * from './ui/chat/index.ts';
export { markdownToHtml, renderMarkdown } from './ui/markdown.ts';
export { ConversationStore, conversationKey, type StoredConversation } from './ui/conversation-store.ts';
