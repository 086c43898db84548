/**
 * The engine's feedback surface: every finished completion is recorded with its context, so a
 * later thumbs-up/down (`engine.feedback`) can turn answers to one context into DPO pairs, and
 * pairs can be added directly (`engine.preferences.add`). The sink is injectable: an in-memory
 * FeedbackLog by default, or a PersistentFeedback (IndexedDB, src/learn/store.ts) in the worker.
 */
import { FeedbackLog, type CompletionInput, type RateResult, type Thumb } from '../learn/feedback.ts';
import type { AddedPair, PairInput, PreferencePair } from '../learn/pairs.ts';

/** What the engine needs of a feedback store; FeedbackLog and PersistentFeedback both fit. */
export interface FeedbackSink {
  recordCompletion(input: CompletionInput): unknown;
  rate(completionId: unknown, rating: unknown): RateResult | Promise<RateResult>;
  addPair(input: PairInput): AddedPair | Promise<AddedPair>;
  pairs(): PreferencePair[];
  /** Unpaired thumbs (rated answers no pair uses: KTO's examples). */
  thumbs(): Thumb[];
}

/** An in-memory FeedbackLog as a sink. */
export function memoryFeedback(log = new FeedbackLog()): FeedbackSink & { log: FeedbackLog } {
  return {
    log,
    recordCompletion: (input) => log.recordCompletion(input),
    rate: (id, rating) => log.rate(id, rating),
    addPair: (input) => log.preferences.add(input),
    pairs: () => log.pairs(),
    thumbs: () => log.thumbs(),
  };
}

export interface FeedbackInput {
  completionId: string;
  rating: 'up' | 'down';
}

/** The public part: `engine.feedback(...)` and `engine.preferences`. */
export interface EngineFeedback {
  feedback(f: FeedbackInput): Promise<RateResult>;
  readonly preferences: {
    add(p: PairInput): Promise<AddedPair>;
    list(): PreferencePair[];
  };
}

export function engineFeedback(sink: FeedbackSink): EngineFeedback {
  return {
    feedback: async (f) => await sink.rate(f?.completionId, f?.rating),
    preferences: {
      add: async (p) => await sink.addPair(p),
      list: () => sink.pairs(),
    },
  };
}
