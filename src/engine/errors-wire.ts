/**
 * Typed errors across the Web Worker boundary.
 *
 * Comlink's default "throw" transfer handler keeps only message/name/stack, so a ModelFileError
 * thrown in the worker would reach the page as a bare Error without `code` or `file`. This module
 * replaces that handler (on both sides: the worker serialises, the page revives) with one that
 * carries `name`, `code`, `message`, `stack` and every own data field of the error (file, field,
 * tensor, param, status, promptTokens...). The page gets a `MaceRemoteError` with those fields, so
 * `e.code === 'model-file'` and `e.file` work as they would in-thread.
 *
 * Only plain data crosses: strings, finite-or-not numbers, booleans, null and arrays of those.
 * Anything else on the error (functions, GPU objects, nested errors) is left out on purpose.
 */
import { transferHandlers, type TransferHandler } from 'comlink';

/** A primitive or a (nested) array of primitives: what an error field may carry across. */
export type WireValue = string | number | boolean | null | WireValue[];

/** An error as plain, structured-clone-safe data. */
export interface WireError {
  name: string;
  /** Stable machine-readable code; 'internal' for errors that had none. */
  code: string;
  message: string;
  stack?: string;
  /** The error's own data fields other than name/code/message/stack. */
  fields: Record<string, WireValue>;
}

/** Fields that are part of the envelope, never copied into `fields`. */
const ENVELOPE = new Set(['name', 'code', 'message', 'stack']);
/** Longest array copied (a field holding a whole token list is not worth shipping). */
const MAX_ARRAY = 1024;

function toWireValue(v: unknown, depth = 0): WireValue | undefined {
  if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v;
  if (Array.isArray(v) && depth < 2 && v.length <= MAX_ARRAY) {
    const out: WireValue[] = [];
    for (const item of v) {
      const w = toWireValue(item, depth + 1);
      if (w === undefined) return undefined;
      out.push(w);
    }
    return out;
  }
  return undefined;
}

/** Any thrown value as a WireError. Non-Error values keep their text; `code` defaults to 'internal'. */
export function serializeError(e: unknown): WireError {
  if (!(e instanceof Error)) {
    return { name: 'Error', code: 'internal', message: typeof e === 'string' ? e : safeString(e), fields: {} };
  }
  const fields: Record<string, WireValue> = {};
  for (const key of Object.keys(e)) {
    if (ENVELOPE.has(key)) continue;
    const w = toWireValue((e as unknown as Record<string, unknown>)[key]);
    if (w !== undefined) fields[key] = w;
  }
  const code = (e as { code?: unknown }).code;
  return {
    name: e.name || 'Error',
    code: typeof code === 'string' && code !== '' ? code : 'internal',
    message: e.message,
    ...(typeof e.stack === 'string' ? { stack: e.stack } : {}),
    fields,
  };
}

function safeString(v: unknown): string {
  try {
    return String(v);
  } catch {
    return 'unprintable thrown value';
  }
}

/**
 * A typed error that happened in the worker, revived on the page. `name` and `code` are the
 * original's (e.g. 'ModelFileError' / 'model-file'); its data fields are own properties
 * (`e.file`, `e.status`...) and also listed in `fields`.
 */
export class MaceRemoteError extends Error {
  readonly code: string;
  readonly fields: Readonly<Record<string, WireValue>>;
  /** The worker-side stack (the page-side `stack` only shows where it was revived). */
  readonly remoteStack: string | undefined;
  [field: string]: unknown;

  constructor(wire: WireError) {
    super(wire.message);
    this.name = wire.name;
    this.code = wire.code;
    this.fields = { ...wire.fields };
    this.remoteStack = wire.stack;
    for (const [k, v] of Object.entries(wire.fields)) {
      // Never let a field shadow the envelope or the class's own members.
      if (!(k in this)) Object.defineProperty(this, k, { value: v, enumerable: true });
    }
  }
}

/** Check the shape of data that claims to be a WireError (it came from another realm). */
export function isWireError(v: unknown): v is WireError {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return typeof o.name === 'string' && typeof o.code === 'string' && typeof o.message === 'string' && typeof o.fields === 'object' && o.fields !== null;
}

/** A WireError back into an Error subclass; malformed data still gives a MaceRemoteError. */
export function reviveError(wire: unknown): MaceRemoteError {
  if (isWireError(wire)) return new MaceRemoteError(wire);
  return new MaceRemoteError({ name: 'Error', code: 'internal', message: `malformed error from the worker: ${safeString(JSON.stringify(wire))}`, fields: {} });
}

/** What comlink's "throw" handler sends: our WireError for errors, the raw value otherwise. */
type ThrownWire = { isError: true; value: WireError } | { isError: false; value: unknown };
/** What comlink hands the "throw" handler: its marker object around the thrown value. */
type Thrown = { value: unknown };

const THROWN_MARKER_PROBE = 'value';

export const errorTransferHandler: TransferHandler<Thrown, ThrownWire> = {
  // Comlink wraps thrown values in an object carrying a private symbol marker; we cannot name the
  // symbol, so recognise the wrapper the way comlink's own handler does: an object holding a
  // symbol-keyed own property, besides `value`.
  canHandle(v: unknown): v is Thrown {
    return typeof v === 'object' && v !== null && THROWN_MARKER_PROBE in v && Object.getOwnPropertySymbols(v).some((s) => s.description === 'Comlink.thrown');
  },
  serialize({ value }) {
    if (value instanceof Error) return [{ isError: true, value: serializeError(value) }, []];
    // Non-Error throws: clone when possible (strings, plain data), else their text.
    return [{ isError: false, value: cloneable(value) ? value : safeString(value) }, []];
  },
  deserialize(w) {
    if (w.isError) throw reviveError(w.value);
    throw w.value;
  },
};

function cloneable(v: unknown): boolean {
  try {
    structuredClone(v);
    return true;
  } catch {
    return false;
  }
}

/**
 * Replace comlink's "throw" handler with errorTransferHandler. Call it in the worker and on the
 * page (both must agree on the wire format); calling it again is harmless.
 */
export function installErrorTransfer(): void {
  transferHandlers.set('throw', errorTransferHandler as TransferHandler<unknown, unknown>);
}
