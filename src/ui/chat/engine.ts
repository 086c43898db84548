/**
 * What `<mace-chat>` needs from an engine: the part of the page-side WorkerEngine
 * (src/engine/client.ts) it calls. A WorkerEngine is one; so is a test's stand-in.
 *
 * `onStats` and `learning` are optional: an engine without on-device learning still chats, the
 * widget just never shows "learnt".
 */
import type { MaceRemoteError } from '../../engine/errors-wire.ts';
import type { FeedbackInput } from '../../engine/feedback.ts';
import type { ChatCompletionChunk, ChatCompletionCreateParams } from '../../engine/types.ts';
import type { LoadRequest, ModelInfo, ProgressSink } from '../../engine/worker-api.ts';
import type { RateResult } from '../../learn/feedback.ts';
import type { AdapterControls } from './adapter-menu.ts';
import type { LearningStatus, StatsBatch } from '../../scheduler/stats.ts';
import { OwnEngine, type WorkerMode } from './own-engine.ts';

export interface ChatEngine {
  load(request: LoadRequest, onProgress?: ProgressSink): Promise<ModelInfo>;
  readonly chat: {
    readonly completions: {
      create(params: ChatCompletionCreateParams & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
    };
  };
  feedback(f: FeedbackInput): Promise<RateResult>;
  onDeviceLost(listener: (error: MaceRemoteError) => void): () => void;
  onStats?(listener: (batch: StatsBatch) => void): () => void;
  readonly learning?: { status(): Promise<LearningStatus | null> };
  /** The learnt adapter's calls (the header's adapter menu: versions, serve, reset, download, import); absent: no menu. */
  readonly adapter?: AdapterControls;
  terminate?(): void;
}

/** The engine an element makes when the page gives it none (own-engine.ts: shared where it can run, or its own worker). */
export function createDefaultEngine(mode: WorkerMode = 'shared'): ChatEngine {
  return new OwnEngine(mode);
}
