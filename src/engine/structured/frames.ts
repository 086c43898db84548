/**
 * The automaton's data (automaton.ts steps it, close-cost.ts measures it): frames, the persistent
 * stacks of frames, and a state = the stacks still alive.
 */
import type { SchemaNode } from './schema.ts';

export const END = '\u0000';
export const WS_RUN_MAX = 4;
export const NUMBER_MAX_CHARS = 24;
/** Most stacks a state keeps (overlapping anyOf options); further ones are dropped, which only narrows the language. */
export const MAX_STACKS = 32;

export type ObjectNode = Extract<SchemaNode, { kind: 'object' }>;
export type ArrayNode = Extract<SchemaNode, { kind: 'array' }>;
export type StringNode = Extract<SchemaNode, { kind: 'string' }>;

/** Phases of the root, object, array and string frames. */
export const P = {
  Before: 0, // root: before its value (whitespace allowed)
  Start: 1, // before the opening character
  Open: 2, // after '{' / '['
  Key: 3, // inside a key string
  Colon: 4, // after a key, before ':'
  BeforeValue: 5, // after ':', before the value
  Value: 6, // a child value is running
  After: 7, // after a value, before ',' or the close
  Next: 8, // after ',', before the next key / item
  Done: 9, // root: the value is complete
} as const;
export type P = (typeof P)[keyof typeof P];

export type Frame =
  | { k: 'root'; node: SchemaNode; p: P; ws: number }
  | { k: 'obj'; node: ObjectNode; p: P; ws: number; seen: readonly number[]; extra: readonly string[]; key: string; cur: number }
  | { k: 'arr'; node: ArrayNode; p: P; ws: number; n: number }
  | { k: 'str'; node: StringNode; p: P; len: number; esc: number }
  | { k: 'num'; integer: boolean; p: N; chars: number }
  | { k: 'lit'; texts: readonly string[][]; pos: number };

/** Number phases; Zero, Int, Frac, ExpDigits are complete. */
export const N = {
  Start: 0, Minus: 1, Zero: 2, Int: 3, Dot: 4, Frac: 5, Exp: 6, ExpSign: 7, ExpDigits: 8,
} as const;
export type N = (typeof N)[keyof typeof N];

export interface Stack {
  readonly f: Frame;
  readonly up: Stack | null;
}

/** A state: its stacks (empty: dead). */
export type State = readonly Stack[];

/** Only END can follow: the output is complete. */
export function isTerminal(state: State): boolean {
  return state.length > 0 && state.every((s) => s.f.k === 'root' && s.f.p === P.Done);
}
