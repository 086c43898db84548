/**
 * Preference pairs: a context (chat messages or a plain completion prompt), a chosen and a rejected
 * answer. Pairs come from user feedback (FeedbackLog) or are added directly / imported from files
 * (formats.ts). A PreferenceSet holds them without duplicates: the id is a hash of (context,
 * chosen, rejected), so the same judgement recorded twice is one pair.
 *
 * Everything here is plain data and synchronous; persistence is store.ts. Input is validated in
 * full before anything changes, so bad input never drops or corrupts pairs already held.
 */
import type { ChatMessage } from '../model/tokenizer.ts';
import { LearnError } from './errors.ts';

export type PairSource = 'feedback' | 'import';

/** What produced an answer: chat messages (chat completions) or a prompt (legacy completions). */
export type PairContext = { messages: ChatMessage[]; prompt?: undefined } | { prompt: string; messages?: undefined };

export type PreferencePair = PairContext & {
  /** 'pp-' + 16 hex digits: FNV-1a 64 of (contextKey, chosen, rejected). */
  id: string;
  /** contextKeyOf(context): equal for equal contexts. */
  contextKey: string;
  chosen: string;
  rejected: string;
  /** Milliseconds since the epoch. */
  createdAt: number;
  source: PairSource;
};

/** What `PreferenceSet.add` accepts (validated: it may come straight from JSON). */
export interface PairInput {
  messages?: unknown;
  prompt?: unknown;
  chosen: unknown;
  rejected: unknown;
  createdAt?: unknown;
  source?: unknown;
}

/** A pair, message list, prompt or answer that is missing, empty or malformed: names the field. */
export class PreferenceInputError extends LearnError {
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super('bad-preference', `${field} ${detail}`);
  }
}

// ---------------------------------------------------------------- hashing

const encoder = new TextEncoder();

/**
 * FNV-1a 64-bit over the UTF-8 bytes of `text`, as 16 hex digits. Stable across sessions and
 * platforms (keys are persisted); the 64-bit product is done in two 32-bit halves:
 * h * (2^40 + 0x1b3) = h * 0x1b3 + (lo << 40).
 */
export function fnv1a64(text: string): string {
  let hi = 0xcbf29ce4;
  let lo = 0x84222325;
  for (const byte of encoder.encode(text)) {
    lo = (lo ^ byte) >>> 0;
    const loProd = lo * 0x1b3; // < 2^41: exact in a double
    const carry = Math.floor(loProd / 0x100000000);
    hi = (Math.imul(hi, 0x1b3) + carry + (lo << 8)) >>> 0;
    lo = loProd >>> 0;
  }
  return hi.toString(16).padStart(8, '0') + lo.toString(16).padStart(8, '0');
}

/** Canonical text of a context: role and content of each message, or the prompt (JSON, so unambiguous). */
function canonicalContext(c: PairContext): string {
  return c.messages !== undefined ? JSON.stringify(['messages', c.messages.map((m) => [m.role, m.content])]) : JSON.stringify(['prompt', c.prompt]);
}

/** Stable key of a context: 'ctx-' + FNV-1a 64 of its canonical form (roles and contents only). */
export function contextKeyOf(c: PairContext): string {
  return 'ctx-' + fnv1a64(canonicalContext(c));
}

/** Id of a pair: equal for the same (context, chosen, rejected). */
export function pairIdOf(contextKey: string, chosen: string, rejected: string): string {
  return 'pp-' + fnv1a64(JSON.stringify([contextKey, chosen, rejected]));
}

// ---------------------------------------------------------------- validation

/**
 * Longest text field accepted (a prompt, a message content, an answer): 1 MiB of characters, far
 * above any answer a local model gives or a preference dataset holds, and small enough that
 * hashing, storing and tokenizing one stays well under a second. Longer is a PreferenceInputError
 * naming the field, raised before anything is hashed or tokenized.
 */
export const MAX_TEXT_CHARS = 2 ** 20;

/** `v` itself, unless it is longer than MAX_TEXT_CHARS. */
export function boundedText(v: string, field: string): string {
  if (v.length > MAX_TEXT_CHARS) throw new PreferenceInputError(field, `has ${v.length} characters; at most ${MAX_TEXT_CHARS} (1 MiB) are accepted per text field`);
  return v;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Message content: a string, or OpenAI-style text parts ({type: 'text', text}) joined. */
function contentText(v: unknown, field: string): string {
  if (typeof v === 'string') return boundedText(v, field);
  if (!Array.isArray(v)) throw new PreferenceInputError(field, `must be a string or a list of text parts, got ${describe(v)}`);
  let chars = 0;
  const parts = v.map((p, i) => {
    if (!isRecord(p) || p.type !== 'text' || typeof p.text !== 'string') throw new PreferenceInputError(`${field}[${i}]`, "must be a text part {type: 'text', text: string}");
    chars += p.text.length;
    // Checked before the join: the parts of one content count as one text field.
    if (chars > MAX_TEXT_CHARS) throw new PreferenceInputError(field, `has more than ${MAX_TEXT_CHARS} characters (part ${i} brings it to ${chars}); at most ${MAX_TEXT_CHARS} (1 MiB) are accepted per text field`);
    return p.text;
  });
  return parts.join('');
}

/** A short description of a bad value for messages (type, not the whole value). */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `a list of ${v.length}`;
  if (typeof v === 'string') return v.length > 40 ? `a string of ${v.length} characters` : JSON.stringify(v);
  return typeof v === 'object' ? 'an object' : `${typeof v} ${String(v)}`;
}

/** Chat messages → ChatMessage[] with string contents; a non-empty list of {role, content}. */
export function normalizeMessages(v: unknown, field = 'messages'): ChatMessage[] {
  if (!Array.isArray(v)) throw new PreferenceInputError(field, `must be a list of messages, got ${describe(v)}`);
  if (v.length === 0) throw new PreferenceInputError(field, 'is empty');
  return v.map((m, i) => {
    if (!isRecord(m)) throw new PreferenceInputError(`${field}[${i}]`, `must be a message {role, content}, got ${describe(m)}`);
    if (typeof m.role !== 'string' || m.role === '') throw new PreferenceInputError(`${field}[${i}].role`, `must be a non-empty string, got ${describe(m.role)}`);
    return { role: m.role, content: contentText(m.content, `${field}[${i}].content`) };
  });
}

/** The context of an input: exactly one of `messages` and `prompt`. */
export function contextOf(input: { messages?: unknown; prompt?: unknown }): PairContext {
  const hasM = input.messages !== undefined;
  const hasP = input.prompt !== undefined;
  if (hasM && hasP) throw new PreferenceInputError('messages/prompt', 'both given; a pair has either chat messages or a prompt');
  if (!hasM && !hasP) throw new PreferenceInputError('messages/prompt', 'missing; a pair needs chat messages or a prompt');
  if (hasM) return { messages: normalizeMessages(input.messages) };
  if (typeof input.prompt !== 'string') throw new PreferenceInputError('prompt', `must be a string, got ${describe(input.prompt)}`);
  return { prompt: boundedText(input.prompt, 'prompt') };
}

/** An answer: a string with some non-whitespace text. */
export function answerText(v: unknown, field: string): string {
  if (typeof v !== 'string') throw new PreferenceInputError(field, `must be a string, got ${describe(v)}`);
  boundedText(v, field);
  if (v.trim() === '') throw new PreferenceInputError(field, 'is empty');
  return v;
}

/** A timestamp in ms: a finite number >= 0 (`fallback` when absent). */
export function timestamp(v: unknown, field: string, fallback: () => number): number {
  if (v === undefined) return fallback();
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new PreferenceInputError(field, `must be a finite number of milliseconds >= 0, got ${describe(v)}`);
  return v;
}

/** Validate a whole pair input into a PreferencePair (nothing is stored). */
export function makePair(input: PairInput, now: () => number = Date.now): PreferencePair {
  if (!isRecord(input)) throw new PreferenceInputError('pair', `must be an object {messages or prompt, chosen, rejected}, got ${describe(input)}`);
  const context = contextOf(input);
  const chosen = answerText(input.chosen, 'chosen');
  const rejected = answerText(input.rejected, 'rejected');
  // Answers that differ only in surrounding whitespace carry no preference either.
  if (chosen.trim() === rejected.trim()) throw new PreferenceInputError('chosen/rejected', 'are the same answer; a pair needs two different answers');
  const source = input.source ?? 'import';
  if (source !== 'feedback' && source !== 'import') throw new PreferenceInputError('source', `must be 'feedback' or 'import', got ${describe(source)}`);
  const createdAt = timestamp(input.createdAt, 'createdAt', now);
  const contextKey = contextKeyOf(context);
  return { ...context, id: pairIdOf(contextKey, chosen, rejected), contextKey, chosen, rejected, createdAt, source } as PreferencePair;
}

// ---------------------------------------------------------------- the set

export interface AddedPair {
  pair: PreferencePair;
  /** False when an equal pair (same context, chosen, rejected) was already held: `pair` is that one. */
  added: boolean;
  /** The held pair changed (added, or a feedback pair promoted to 'import'): persist it again. */
  changed: boolean;
}

/** Preference pairs without duplicates, in insertion order. */
export class PreferenceSet {
  private readonly byId = new Map<string, PreferencePair>();

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * Add a pair (source 'import' unless given). A duplicate returns the pair already held; if that one
   * came from feedback and this one does not, it becomes 'import' so a later change of the ratings
   * does not withdraw a pair that was also given directly.
   */
  add(input: PairInput): AddedPair {
    const pair = makePair(input, this.now);
    const held = this.byId.get(pair.id);
    if (held) {
      const promote = held.source === 'feedback' && pair.source === 'import';
      if (promote) held.source = 'import';
      return { pair: held, added: false, changed: promote };
    }
    this.byId.set(pair.id, pair);
    return { pair, added: true, changed: true };
  }

  /** Remove a pair by id; false if it was not held. */
  remove(id: string): boolean {
    return this.byId.delete(id);
  }

  get(id: string): PreferencePair | undefined {
    return this.byId.get(id);
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  get size(): number {
    return this.byId.size;
  }

  /** All pairs in insertion order (copies of the list, the pairs themselves are shared). */
  list(): PreferencePair[] {
    return [...this.byId.values()];
  }

  /** Pairs of one context. */
  forContext(contextKey: string): PreferencePair[] {
    return this.list().filter((p) => p.contextKey === contextKey);
  }
}
