/**
 * User feedback on completions → preference pairs.
 *
 * The log records each completion the user saw (its id, the context that produced it, the answer)
 * and the user's rating of it ('up' or 'down'). A later rating of the same completion replaces the
 * earlier one (call order decides, not `at`). Pairs are a function of the current ratings: within
 * one context (same messages or prompt, see contextKeyOf), every liked answer paired with every
 * disliked one, e.g. thumbs-down on the first answer, regenerate, thumbs-up on the second gives
 * one pair. Re-rating recomputes that context's feedback pairs: new ones are added, ones whose
 * ratings no longer hold are withdrawn; pairs added directly (`preferences.add`) are never
 * withdrawn. Two answers with the same text never form a pair.
 *
 * Every method validates its whole input before changing anything.
 */
import { LearnError } from './errors.ts';
import { answerText, contextKeyOf, contextOf, describe, PreferenceInputError, PreferenceSet, timestamp, type PairContext, type PreferencePair } from './pairs.ts';

export type Rating = 'up' | 'down';

/**
 * The parts of an OpenAI-style completion the log reads (src/engine/types.ts ChatCompletion and
 * Completion have them): declared here so learning does not import from the engine above it.
 */
export interface ChatCompletionLike {
  id: string;
  /** Seconds since the epoch. */
  created: number;
  choices: readonly { message: { content: string | null } }[];
}
export interface TextCompletionLike {
  id: string;
  created: number;
  choices: readonly { text: string }[];
}

export type CompletionRecord = PairContext & {
  completionId: string;
  contextKey: string;
  /** The answer text the user saw. */
  answer: string;
  /** Milliseconds since the epoch. */
  createdAt: number;
};

export interface RatingRecord {
  completionId: string;
  rating: Rating;
  /** Milliseconds since the epoch. */
  at: number;
}

export interface CompletionInput {
  completionId: unknown;
  messages?: unknown;
  prompt?: unknown;
  answer: unknown;
  createdAt?: unknown;
}

/**
 * An unpaired rating (KTO's unit): a rated completion that no feedback pair of its context uses —
 * its context has no answer rated the other way (or only ones with the same text). Once the
 * context gets an opposite rating, the answer trains in DPO pairs instead and its thumb is withdrawn.
 */
export type Thumb = PairContext & {
  /** 'th-' + completionId + '-up' | '-down': a re-rating is a new thumb. */
  id: string;
  completionId: string;
  contextKey: string;
  completion: string;
  /** true: thumbs-up (desirable). */
  label: boolean;
  /** When it was rated (ms since the epoch). */
  at: number;
};

/** What one rate() call changed (what a persistent wrapper writes). */
export interface RateResult {
  rating: RatingRecord;
  previous: RatingRecord | undefined;
  added: PreferencePair[];
  removed: PreferencePair[];
  /** Unpaired thumbs of the rated context that appeared / went (paired now, or re-rated). */
  thumbsAdded: Thumb[];
  thumbsRemoved: Thumb[];
}

/** A rating (or lookup) of a completion id the log never recorded. */
export class UnknownCompletionError extends LearnError {
  readonly field = 'completionId';
  constructor(readonly completionId: string) {
    super('unknown-completion', `completionId '${completionId}' was never recorded; record the completion before rating it`);
  }
}

/** A completion id recorded again with a different context or answer. */
export class CompletionConflictError extends LearnError {
  readonly field = 'completionId';
  constructor(
    readonly completionId: string,
    what: string,
  ) {
    super('completion-conflict', `completionId '${completionId}' is already recorded with a different ${what}`);
  }
}

function completionId(v: unknown): string {
  if (typeof v !== 'string' || v === '') throw new PreferenceInputError('completionId', `must be a non-empty string, got ${describe(v)}`);
  return v;
}

function sameContext(a: PairContext, b: PairContext): boolean {
  return contextKeyOf(a) === contextKeyOf(b);
}

export class FeedbackLog {
  /** Every pair: feedback pairs (kept in step with the ratings) and pairs added directly. */
  readonly preferences: PreferenceSet;
  private readonly records = new Map<string, CompletionRecord>();
  private readonly ratingsById = new Map<string, RatingRecord>();

  constructor(private readonly now: () => number = Date.now) {
    this.preferences = new PreferenceSet(now);
  }

  /**
   * Record a completion the user saw. Recording the same id again with the same context and answer
   * is a no-op (returns the held record); with a different one it is a CompletionConflictError.
   */
  recordCompletion(input: CompletionInput): CompletionRecord {
    if (typeof input !== 'object' || input === null) throw new PreferenceInputError('completion', `must be an object, got ${describe(input)}`);
    const id = completionId(input.completionId);
    const context = contextOf(input);
    const answer = answerText(input.answer, 'answer');
    const createdAt = timestamp(input.createdAt, 'createdAt', this.now);
    const held = this.records.get(id);
    if (held) {
      if (!sameContext(held, context)) throw new CompletionConflictError(id, 'context');
      if (held.answer !== answer) throw new CompletionConflictError(id, 'answer');
      return held;
    }
    const record = { ...context, completionId: id, contextKey: contextKeyOf(context), answer, createdAt } as CompletionRecord;
    this.records.set(id, record);
    return record;
  }

  /** Record an engine chat completion (first choice) for `messages`. */
  recordChatCompletion(messages: unknown, c: ChatCompletionLike): CompletionRecord {
    return this.recordCompletion({ completionId: c.id, messages, answer: c.choices[0]?.message.content, createdAt: c.created * 1000 });
  }

  /** Record an engine text completion (first choice) for `prompt`. */
  recordTextCompletion(prompt: string, c: TextCompletionLike): CompletionRecord {
    return this.recordCompletion({ completionId: c.id, prompt, answer: c.choices[0]?.text, createdAt: c.created * 1000 });
  }

  /** Rate a recorded completion (replacing its earlier rating) and update its context's pairs. */
  rate(id: unknown, rating: unknown, at?: unknown): RateResult {
    const cid = completionId(id);
    if (rating !== 'up' && rating !== 'down') throw new PreferenceInputError('rating', `must be 'up' or 'down', got ${describe(rating)}`);
    const when = timestamp(at, 'at', this.now);
    const record = this.records.get(cid);
    if (!record) throw new UnknownCompletionError(cid);
    const previous = this.ratingsById.get(cid);
    const before = this.contextThumbs(record.contextKey);
    const r: RatingRecord = { completionId: cid, rating, at: when };
    this.ratingsById.set(cid, r);
    const pairs = this.syncContext(record.contextKey);
    const after = this.contextThumbs(record.contextKey);
    const ids = (list: Thumb[]) => new Set(list.map((t) => t.id));
    const had = ids(before), has = ids(after);
    return { rating: r, previous, ...pairs, thumbsAdded: after.filter((t) => !had.has(t.id)), thumbsRemoved: before.filter((t) => !has.has(t.id)) };
  }

  /** The unpaired thumbs of one context (see Thumb), in rating order. */
  private contextThumbs(contextKey: string): Thumb[] {
    const rated = [...this.records.values()].filter((c) => c.contextKey === contextKey && this.ratingsById.has(c.completionId));
    const ratingOf = (c: CompletionRecord) => this.ratingsById.get(c.completionId)!;
    const out: Thumb[] = [];
    for (const c of rated) {
      const mine = ratingOf(c);
      const text = c.answer.trim();
      // Paired: some answer of the context rated the other way with a different text.
      if (rated.some((o) => ratingOf(o).rating !== mine.rating && o.answer.trim() !== text)) continue;
      const context = c.messages !== undefined ? { messages: c.messages } : { prompt: c.prompt };
      out.push({ ...context, id: `th-${c.completionId}-${mine.rating}`, completionId: c.completionId, contextKey, completion: c.answer, label: mine.rating === 'up', at: mine.at } as Thumb);
    }
    return out.sort((a, b) => a.at - b.at);
  }

  /** Every unpaired thumb (what KTO trains on), in rating order. */
  thumbs(): Thumb[] {
    const keys = new Set([...this.ratingsById.keys()].map((id) => this.records.get(id)!.contextKey));
    return [...keys].flatMap((k) => this.contextThumbs(k)).sort((a, b) => a.at - b.at);
  }

  /** The pairs one context's ratings imply: each liked answer against each disliked one. */
  private impliedPairs(contextKey: string): PreferencePair[] {
    const rated = [...this.records.values()].filter((c) => c.contextKey === contextKey && this.ratingsById.has(c.completionId));
    const liked = rated.filter((c) => this.ratingsById.get(c.completionId)!.rating === 'up');
    const disliked = rated.filter((c) => this.ratingsById.get(c.completionId)!.rating === 'down');
    const out: PreferencePair[] = [];
    const scratch = new PreferenceSet(this.now);
    for (const l of liked) {
      for (const d of disliked) {
        if (l.answer.trim() === d.answer.trim()) continue;
        const createdAt = Math.max(this.ratingsById.get(l.completionId)!.at, this.ratingsById.get(d.completionId)!.at);
        const context = l.messages !== undefined ? { messages: l.messages } : { prompt: l.prompt };
        const r = scratch.add({ ...context, chosen: l.answer, rejected: d.answer, createdAt, source: 'feedback' });
        if (r.added) out.push(r.pair);
      }
    }
    return out;
  }

  /** Make the held feedback pairs of one context equal to the implied ones. */
  private syncContext(contextKey: string): { added: PreferencePair[]; removed: PreferencePair[] } {
    const implied = this.impliedPairs(contextKey);
    const want = new Set(implied.map((p) => p.id));
    const removed = this.preferences.forContext(contextKey).filter((p) => p.source === 'feedback' && !want.has(p.id));
    for (const p of removed) this.preferences.remove(p.id);
    const added: PreferencePair[] = [];
    for (const p of implied) if (this.preferences.add(p).added) added.push(this.preferences.get(p.id)!);
    return { added, removed };
  }

  completion(id: string): CompletionRecord | undefined {
    return this.records.get(id);
  }

  rating(id: string): RatingRecord | undefined {
    return this.ratingsById.get(id);
  }

  completions(): CompletionRecord[] {
    return [...this.records.values()];
  }

  ratings(): RatingRecord[] {
    return [...this.ratingsById.values()];
  }

  /** All pairs (feedback and direct), in the order they formed. */
  pairs(): PreferencePair[] {
    return this.preferences.list();
  }

  /** Plain data to persist: feedback pairs are left out (restore recomputes them from the ratings). */
  snapshot(): FeedbackSnapshot {
    return { completions: this.completions(), ratings: this.ratings(), pairs: this.pairs().filter((p) => p.source !== 'feedback') };
  }

  /**
   * Rebuild a log from stored records. A record that does not validate (or a rating of a completion
   * that is not there) is skipped with its error, never fatal: one bad record must not hide the rest.
   * Ratings and direct pairs are replayed in time order, so pairs list in the order they formed.
   */
  static restore(s: FeedbackSnapshot, now: () => number = Date.now): { log: FeedbackLog; skipped: RestoreSkip[] } {
    const log = new FeedbackLog(now);
    const skipped: RestoreSkip[] = [];
    const attempt = (kind: RestoreSkip['kind'], index: number, fn: () => void) => {
      try {
        fn();
      } catch (e) {
        if (!(e instanceof LearnError)) throw e;
        skipped.push({ kind, index, error: e });
      }
    };
    s.completions.forEach((c, i) => attempt('completion', i, () => log.recordCompletion(c as CompletionInput)));
    type Event = { t: number; kind: 'rating' | 'pair'; index: number; value: unknown };
    const events: Event[] = [];
    const timeOf = (v: unknown, field: string) => (typeof v === 'object' && v !== null && typeof (v as Record<string, unknown>)[field] === 'number' ? ((v as Record<string, unknown>)[field] as number) : 0);
    s.ratings.forEach((r, index) => events.push({ t: timeOf(r, 'at'), kind: 'rating', index, value: r }));
    s.pairs.forEach((p, index) => events.push({ t: timeOf(p, 'createdAt'), kind: 'pair', index, value: p }));
    events.sort((a, b) => a.t - b.t || (a.kind === b.kind ? a.index - b.index : a.kind === 'rating' ? -1 : 1));
    for (const e of events) {
      attempt(e.kind, e.index, () => {
        if (typeof e.value !== 'object' || e.value === null) throw new PreferenceInputError(e.kind, `must be an object, got ${describe(e.value)}`);
        const v = e.value as Record<string, unknown>;
        if (e.kind === 'rating') log.rate(v.completionId, v.rating, v.at);
        else if (v.source !== 'feedback') log.preferences.add(v as unknown as PreferencePair);
      });
    }
    return { log, skipped };
  }
}

export interface FeedbackSnapshot {
  completions: unknown[];
  ratings: unknown[];
  /** Direct (non-feedback) pairs. */
  pairs: unknown[];
}

export interface RestoreSkip {
  kind: 'completion' | 'rating' | 'pair';
  /** Index in the snapshot's list of that kind. */
  index: number;
  error: LearnError;
}
