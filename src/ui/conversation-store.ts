/**
 * Where `<mace-chat>` keeps its conversation between page loads: IndexedDB through idb-keyval, in
 * a database of its own ('mace-chat', store 'conversations'), one record per (model, element id).
 *
 * Records come back from storage written by another version of the page, or edited by hand, so
 * `parseConversation` checks every field and names the first bad one in a typed error; the widget
 * then starts a fresh conversation instead of rendering half a record.
 */
import { createStore, del, get, set, type UseStore } from 'idb-keyval';

export const CONVERSATION_DB = 'mace-chat';
export const CONVERSATION_STORE = 'conversations';
/** Bumped when the record layout changes; older records are refused with a typed error. */
export const CONVERSATION_VERSION = 1;

export type Rating = 'up' | 'down';
export type AnswerFinish = 'stop' | 'length' | 'abort' | 'error' | 'tool_calls';

/** One message as the engine received it (content as plain text). */
export interface StoredMessage {
  role: string;
  content: string;
}

/** One answer the model gave to a turn (a turn has several after Regenerate). */
export interface StoredAnswer {
  /** The engine's completion id (what feedback refers to); null if the stream never started. */
  completionId: string | null;
  content: string;
  rating: Rating | null;
  finishReason: AnswerFinish | null;
  /** The LoRA adapter that served it; null: the base model. */
  adapter: string | null;
}

/** A user message and the answers to it. */
export interface StoredTurn {
  /** The exact messages sent for this turn: regenerating sends them again, so answers share a context. */
  context: StoredMessage[];
  /** What the user typed. */
  user: string;
  /** 'completion': the model has no chat template and continues the user's text. */
  mode: 'chat' | 'completion';
  answers: StoredAnswer[];
  /** Index of the answer shown. */
  selected: number;
}

export interface StoredConversation {
  version: typeof CONVERSATION_VERSION;
  key: string;
  turns: StoredTurn[];
  /** Milliseconds since the epoch. */
  updatedAt: number;
}

/** A stored record (or a key's parts) that is not what this version writes; `field` is its path. */
export class ConversationFormatError extends Error {
  readonly code = 'bad-conversation';
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super(`conversation: ${field} ${detail}`);
    this.name = 'ConversationFormatError';
  }
}

/**
 * The record key of one element's conversation with one model. Both parts are required: a page
 * with two widgets gives them ids, and a model change starts (or restores) another conversation.
 */
export function conversationKey(model: string, elementId: string): string {
  if (typeof model !== 'string' || model.trim() === '') throw new ConversationFormatError('model', 'must be a non-empty string');
  if (typeof elementId !== 'string' || elementId.trim() === '') throw new ConversationFormatError('elementId', 'must be a non-empty string');
  // JSON keeps the two parts apart whatever characters they hold.
  return JSON.stringify([model.trim(), elementId.trim()]);
}

/** A fresh, empty conversation for a key. */
export function emptyConversation(key: string, now: number = Date.now()): StoredConversation {
  return { version: CONVERSATION_VERSION, key, turns: [], updatedAt: now };
}

function kind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v;
}

function record(v: unknown, field: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConversationFormatError(field, `must be an object, got ${kind(v)}`);
  return v as Record<string, unknown>;
}

function str(v: unknown, field: string): string {
  if (typeof v !== 'string') throw new ConversationFormatError(field, `must be a string, got ${kind(v)}`);
  return v;
}

function strOrNull(v: unknown, field: string): string | null {
  return v === null ? null : str(v, field);
}

function list(v: unknown, field: string): unknown[] {
  if (!Array.isArray(v)) throw new ConversationFormatError(field, `must be an array, got ${kind(v)}`);
  return v;
}

function oneOf<T extends string>(v: unknown, field: string, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) throw new ConversationFormatError(field, `must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
  return v as T;
}

function parseMessage(v: unknown, field: string): StoredMessage {
  const o = record(v, field);
  return { role: str(o.role, `${field}.role`), content: str(o.content, `${field}.content`) };
}

function parseAnswer(v: unknown, field: string): StoredAnswer {
  const o = record(v, field);
  return {
    completionId: strOrNull(o.completionId, `${field}.completionId`),
    content: str(o.content, `${field}.content`),
    rating: o.rating === null ? null : oneOf(o.rating, `${field}.rating`, ['up', 'down'] as const),
    finishReason: o.finishReason === null ? null : oneOf(o.finishReason, `${field}.finishReason`, ['stop', 'length', 'abort', 'error', 'tool_calls'] as const),
    adapter: strOrNull(o.adapter, `${field}.adapter`),
  };
}

function parseTurn(v: unknown, field: string): StoredTurn {
  const o = record(v, field);
  const context = list(o.context, `${field}.context`).map((m, i) => parseMessage(m, `${field}.context[${i}]`));
  const answers = list(o.answers, `${field}.answers`).map((a, i) => parseAnswer(a, `${field}.answers[${i}]`));
  const selected = o.selected;
  const inRange = answers.length === 0 ? selected === 0 : Number.isInteger(selected) && (selected as number) >= 0 && (selected as number) < answers.length;
  if (!inRange) throw new ConversationFormatError(`${field}.selected`, `must index one of the ${answers.length} answers, got ${JSON.stringify(selected)}`);
  return { context, user: str(o.user, `${field}.user`), mode: oneOf(o.mode, `${field}.mode`, ['chat', 'completion'] as const), answers, selected: selected as number };
}

/** A stored record → a conversation, every field checked (plain data only comes out). */
export function parseConversation(v: unknown): StoredConversation {
  const o = record(v, 'conversation');
  if (o.version !== CONVERSATION_VERSION) throw new ConversationFormatError('version', `must be ${CONVERSATION_VERSION}, got ${JSON.stringify(o.version)}`);
  const updatedAt = o.updatedAt;
  if (typeof updatedAt !== 'number' || !Number.isFinite(updatedAt)) throw new ConversationFormatError('updatedAt', `must be a finite number, got ${kind(updatedAt)}`);
  const turns = list(o.turns, 'turns').map((t, i) => parseTurn(t, `turns[${i}]`));
  return { version: CONVERSATION_VERSION, key: str(o.key, 'key'), turns, updatedAt };
}

/** The record to write: a deep plain copy (validated, so a bad in-memory state is never persisted). */
export function toRecord(c: StoredConversation): StoredConversation {
  return parseConversation(JSON.parse(JSON.stringify(c)));
}

/** The three calls the store makes (idb-keyval's signature, minus the store argument). */
export interface KeyValueBackend {
  get(key: string): Promise<unknown>;
  set(key: string, value: unknown): Promise<void>;
  del(key: string): Promise<void>;
}

/** idb-keyval on the widget's own database; opened on first use (not at import). */
export function indexedDbBackend(dbName = CONVERSATION_DB, storeName = CONVERSATION_STORE): KeyValueBackend {
  let store: UseStore | null = null;
  const s = () => (store ??= createStore(dbName, storeName));
  return {
    get: (key) => get(key, s()),
    set: (key, value) => set(key, value, s()),
    del: (key) => del(key, s()),
  };
}

/**
 * What `load` found: a conversation, nothing, or a record it could not read (left as it is; the
 * next save of that key replaces it with the fresh conversation).
 */
export type LoadedConversation =
  | { kind: 'found'; conversation: StoredConversation }
  | { kind: 'none'; conversation: StoredConversation }
  | { kind: 'unreadable'; conversation: StoredConversation; error: ConversationFormatError };

export class ConversationStore {
  constructor(private readonly backend: KeyValueBackend = indexedDbBackend()) {}

  async load(key: string): Promise<LoadedConversation> {
    const raw = await this.backend.get(key);
    if (raw === undefined) return { kind: 'none', conversation: emptyConversation(key) };
    try {
      const conversation = parseConversation(raw);
      if (conversation.key !== key) throw new ConversationFormatError('key', `is ${JSON.stringify(conversation.key)}, stored under ${JSON.stringify(key)}`);
      return { kind: 'found', conversation };
    } catch (e) {
      if (!(e instanceof ConversationFormatError)) throw e;
      return { kind: 'unreadable', conversation: emptyConversation(key), error: e };
    }
  }

  async save(c: StoredConversation): Promise<void> {
    await this.backend.set(c.key, toRecord(c));
  }

  async clear(key: string): Promise<void> {
    await this.backend.del(key);
  }
}
