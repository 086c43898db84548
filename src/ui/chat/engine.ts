/**
 * What `<mace-chat>` needs from an engine: the part of the page-side WorkerEngine
 * (src/engine/client.ts) it calls. A WorkerEngine is one; so is a test's stand-in.
 *
 * `onStats` and `learning` are optional: an engine without on-device learning still chats, the
 * widget just never shows "learnt".
 */
import { createWorkerEngine } from '../../engine/client.ts';
import type { MaceRemoteError } from '../../engine/errors-wire.ts';
import type { FeedbackInput } from '../../engine/feedback.ts';
import type { ChatCompletionChunk, ChatCompletionCreateParams } from '../../engine/types.ts';
import type { LoadRequest, ModelInfo, ProgressSink } from '../../engine/worker-api.ts';
import type { RateResult } from '../../learn/feedback.ts';
import type { PeftFiles } from '../../learn/peft.ts';
import type { LearningStatus, StatsBatch } from '../../scheduler/stats.ts';

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
  /** PEFT export of the serving adapter (the header's download button); absent: no button. */
  readonly adapter?: { export(): Promise<PeftFiles> };
  terminate?(): void;
}

/** The engine an element makes when the page gives it none: its own worker. */
export function createDefaultEngine(): ChatEngine {
  return createWorkerEngine();
}
