/**
 * The character-level pushdown automaton of a compiled schema (schema.ts). A state is a small set
 * of stacks (anyOf and enum prefixes make it nondeterministic); each stack is a persistent linked
 * list of frames, so stepping one character copies only the top frame and branching over a
 * vocabulary trie (vocab.ts) costs O(1) per character. Stacks that cannot reach an accepting state
 * are dropped at once, so "alive" means "some completion exists".
 *
 * `END` is the end of the output (the EOS token, or the request finishing): the root accepts it
 * after its value. `closeCost(state)` is the exact fewest characters (END counted as one) that
 * reach the end, 0 when the state is terminal (only END can follow: the request stops at once);
 * the matcher (matcher.ts) keeps it within the remaining token budget, so output always closes.
 *
 * Whitespace: JSON's four characters, in runs of at most WS_RUN_MAX, between tokens of the
 * structure and before the root value (not after it). Numbers: JSON's grammar (integer: no
 * fraction or exponent), at most NUMBER_MAX_CHARS characters. Additional-property keys: any
 * characters but quote, backslash and controls (no escapes), distinct from the other keys.
 */
import { ANY, JSON_OBJECT, type SchemaNode } from './schema.ts';
import { freeKeyExtension, memberNode, requiredMissing, rest } from './close-cost.ts';
import { END, MAX_STACKS, N, NUMBER_MAX_CHARS, P, WS_RUN_MAX, type ArrayNode, type Frame, type Stack, type State, type StringNode } from './frames.ts';

export { END, MAX_STACKS, NUMBER_MAX_CHARS, WS_RUN_MAX, isTerminal, type State, type Stack } from './frames.ts';
export { closeCost } from './close-cost.ts';
export { signature, resetNodeIds } from './signature.ts';

const WS = new Set([' ', '\n', '\t', '\r']);
const DIGIT = /[0-9]/;
const ANY_ARRAY: ArrayNode = { kind: 'array', items: ANY, minItems: 0, maxItems: Infinity, minChars: 2 };
const ANY_STRING: StringNode = { kind: 'string', minLength: 0, maxLength: Infinity, minChars: 2 };
const LITERAL_CHARS = new WeakMap<readonly string[], string[][]>();
const ANY_LITERALS = ['true', 'false', 'null'];

function literalChars(texts: readonly string[]): string[][] {
  let c = LITERAL_CHARS.get(texts);
  if (!c) LITERAL_CHARS.set(texts, (c = texts.map((t) => [...t])));
  return c;
}

function startFrames(node: SchemaNode): Frame[] {
  switch (node.kind) {
    case 'object':
      return [{ k: 'obj', node, p: P.Start, ws: 0, seen: [], extra: [], key: '', cur: -1 }];
    case 'array':
      return [{ k: 'arr', node, p: P.Start, ws: 0, n: 0 }];
    case 'string':
      return [{ k: 'str', node, p: P.Start, len: 0, esc: 0 }];
    case 'number':
      return [{ k: 'num', integer: node.integer, p: N.Start, chars: 0 }];
    case 'literal':
      return [{ k: 'lit', texts: literalChars(node.texts), pos: 0 }];
    case 'anyOf':
      return node.options.flatMap(startFrames);
    case 'any':
      return [...startFrames(JSON_OBJECT), ...startFrames(ANY_ARRAY), ...startFrames(ANY_STRING), ...startFrames({ kind: 'number', integer: false, minChars: 1 }), ...startFrames({ kind: 'literal', texts: ANY_LITERALS, minChars: 4 })];
  }
}

/** The state before any output, for a root value of `node`. */
export function initialState(node: SchemaNode): State {
  return [{ f: { k: 'root', node, p: P.Before, ws: 0 } as Frame, up: null }];
}

/** The state after `c` (one code point, or END). */
export function step(state: State, c: string): State {
  const out: Stack[] = [];
  for (const s of state) {
    stepStack(s.f, s.up, c, out);
    if (out.length >= MAX_STACKS) break;
  }
  return out.length > MAX_STACKS ? out.slice(0, MAX_STACKS) : out;
}

/** The state after each code point of `text`; stops early when it dies. */
export function run(state: State, text: string): State {
  let s = state;
  for (const c of text) {
    s = step(s, c);
    if (s.length === 0) break;
  }
  return s;
}

/** END can follow now (EOS is allowed). */
export function acceptsEnd(state: State): boolean {
  return step(state, END).length > 0;
}

const push = (out: Stack[], f: Frame, up: Stack | null) => out.push({ f, up });

function stepStack(f: Frame, up: Stack | null, c: string, out: Stack[]): void {
  switch (f.k) {
    case 'root':
      return stepRoot(f, up, c, out);
    case 'obj':
      return stepObject(f, up, c, out);
    case 'arr':
      return stepArray(f, up, c, out);
    case 'str':
      return stepString(f, up, c, out);
    case 'num':
      return stepNumber(f, up, c, out);
    case 'lit':
      return stepLiteral(f, up, c, out);
  }
}

/** A child finished; its parent (the top of `up`) moves past it, then reads `c` when given. */
function childDone(up: Stack | null, c: string | null, out: Stack[]): void {
  if (!up) return;
  const f = up.f;
  let next: Frame;
  if (f.k === 'root') next = { ...f, p: P.Done, ws: 0 };
  else if (f.k === 'obj') next = { ...f, p: P.After, ws: 0 };
  else if (f.k === 'arr') next = { ...f, p: P.After, ws: 0, n: f.n + 1 };
  else return;
  if (c === null) push(out, next, up.up);
  else stepStack(next, up.up, c, out);
}

/** Start a value of `node` under `parent` (in its Value phase) with character c. */
function startValue(node: SchemaNode, parent: Stack, c: string, out: Stack[]): void {
  for (const f of startFrames(node)) stepStack(f, parent, c, out);
}

function stepRoot(f: Extract<Frame, { k: 'root' }>, up: Stack | null, c: string, out: Stack[]): void {
  if (f.p === P.Done) {
    if (c === END) push(out, { ...f, p: P.Done, ws: -1 }, up); // final; never stepped again (isTerminal holds)
    return;
  }
  if (f.ws < 0) return;
  if (WS.has(c)) {
    if (f.ws < WS_RUN_MAX) push(out, { ...f, ws: f.ws + 1 }, up);
    return;
  }
  if (c === END) return;
  startValue(f.node, { f: { ...f, p: P.Value, ws: 0 }, up }, c, out);
}

function stepObject(f: Extract<Frame, { k: 'obj' }>, up: Stack | null, c: string, out: Stack[]): void {
  const n = f.node;
  const ws = () => {
    if (WS.has(c)) {
      if (f.ws < WS_RUN_MAX) push(out, { ...f, ws: f.ws + 1 }, up);
      return true;
    }
    return false;
  };
  switch (f.p) {
    case P.Start:
      if (c === '{') push(out, { ...f, p: P.Open, ws: 0 }, up);
      return;
    case P.Open:
    case P.After:
    case P.Next:
      if (ws()) return;
      if (c === '"' && f.p !== P.After) {
        const g = { ...f, p: P.Key, key: '', ws: 0 };
        if (rest(g) < Infinity) push(out, g, up);
      } else if (c === '}' && f.p !== P.Next && requiredMissing(n, f.seen) < 0) childDone(up, null, out);
      else if (c === ',' && f.p === P.After) {
        const g = { ...f, p: P.Next, ws: 0 };
        if (rest(g) < Infinity) push(out, g, up);
      }
      return;
    case P.Key: {
      if (c === '"') {
        const text = `"${f.key}"`;
        const i = n.props.findIndex((p, j) => p.keyText === text && !f.seen.includes(j));
        if (i >= 0) push(out, { ...f, p: P.Colon, ws: 0, cur: i, seen: [...f.seen, i] }, up);
        else if (freeKeyExtension(n, f.extra, f.key) === '') push(out, { ...f, p: P.Colon, ws: 0, cur: -1, extra: [...f.extra, f.key] }, up);
        return;
      }
      if (c === '\\' || c < ' ') return;
      const key = f.key + c;
      // Alive while a declared key still fits, or always with additional properties (some longer key is free).
      if (n.additional || n.props.some((p, i) => !f.seen.includes(i) && p.keyText.startsWith(`"${key}`))) push(out, { ...f, key }, up);
      return;
    }
    case P.Colon:
      if (ws()) return;
      if (c === ':') push(out, { ...f, p: P.BeforeValue, ws: 0 }, up);
      return;
    case P.BeforeValue:
      if (ws()) return;
      if (c !== END) startValue(memberNode(n, f.cur), { f: { ...f, p: P.Value, ws: 0 }, up }, c, out);
      return;
  }
}

function stepArray(f: Extract<Frame, { k: 'arr' }>, up: Stack | null, c: string, out: Stack[]): void {
  const n = f.node;
  if (f.p === P.Start) {
    if (c === '[') push(out, { ...f, p: P.Open, ws: 0 }, up);
    return;
  }
  if (WS.has(c)) {
    if (f.ws < WS_RUN_MAX) push(out, { ...f, ws: f.ws + 1 }, up);
    return;
  }
  if (c === ']' && f.p !== P.Next && f.n >= n.minItems) return childDone(up, null, out);
  if (c === ',' && f.p === P.After) {
    if (f.n < n.maxItems) push(out, { ...f, p: P.Next, ws: 0 }, up);
    return;
  }
  if ((f.p === P.Open || f.p === P.Next) && c !== END && f.n < n.maxItems && c !== ']') startValue(n.items, { f: { ...f, p: P.Value, ws: 0 }, up }, c, out);
}

const ESCAPES = new Set(['"', '\\', '/', 'b', 'f', 'n', 'r', 't']);

function stepString(f: Extract<Frame, { k: 'str' }>, up: Stack | null, c: string, out: Stack[]): void {
  const n = f.node;
  if (f.p === P.Start) {
    if (c === '"') push(out, { ...f, p: P.Value }, up);
    return;
  }
  if (f.esc === 1) {
    if (c === 'u') push(out, { ...f, esc: 2 }, up);
    else if (ESCAPES.has(c)) push(out, { ...f, esc: 0, len: f.len + 1 }, up);
    return;
  }
  if (f.esc >= 2) {
    if (!/[0-9a-fA-F]/.test(c)) return;
    push(out, f.esc === 5 ? { ...f, esc: 0, len: f.len + 1 } : { ...f, esc: f.esc + 1 }, up);
    return;
  }
  if (c === '"') {
    if (f.len >= n.minLength) childDone(up, null, out);
    return;
  }
  if (c < ' ' || f.len >= n.maxLength) return; // controls (and END) are not string characters
  if (c === '\\') push(out, { ...f, esc: 1 }, up);
  else push(out, { ...f, len: f.len + 1 }, up);
}

function stepNumber(f: Extract<Frame, { k: 'num' }>, up: Stack | null, c: string, out: Stack[]): void {
  const complete = f.p === N.Zero || f.p === N.Int || f.p === N.Frac || f.p === N.ExpDigits;
  const to = (p: N) => {
    if (f.chars < NUMBER_MAX_CHARS) push(out, { ...f, p, chars: f.chars + 1 }, up);
  };
  const digit = DIGIT.test(c);
  switch (f.p) {
    case N.Start:
      if (c === '-') to(N.Minus);
      else if (digit) to(c === '0' ? N.Zero : N.Int);
      return;
    case N.Minus:
      if (digit) to(c === '0' ? N.Zero : N.Int);
      return;
    case N.Zero:
    case N.Int:
      if (digit && f.p === N.Int) return to(N.Int);
      if (!f.integer && c === '.') return to(N.Dot);
      if (!f.integer && (c === 'e' || c === 'E')) return to(N.Exp);
      break;
    case N.Dot:
    case N.Frac:
      if (digit) return to(N.Frac);
      if (f.p === N.Frac && (c === 'e' || c === 'E')) return to(N.Exp);
      break;
    case N.Exp:
      if (c === '+' || c === '-') return to(N.ExpSign);
      if (digit) return to(N.ExpDigits);
      return;
    case N.ExpSign:
    case N.ExpDigits:
      if (digit) return to(N.ExpDigits);
      break;
  }
  if (complete && !digit) childDone(up, c, out); // the number ended before c: its parent reads c
}

function stepLiteral(f: Extract<Frame, { k: 'lit' }>, up: Stack | null, c: string, out: Stack[]): void {
  const longer = f.texts.filter((t) => t.length > f.pos && t[f.pos] === c);
  if (longer.length) {
    const g: Frame = { k: 'lit', texts: longer, pos: f.pos + 1 };
    // A literal that just ended on a self-delimiting character (a string, object or array) pops at once.
    if (longer.length === 1 && longer[0].length === f.pos + 1 && /["}\]]/.test(c)) childDone(up, null, out);
    else push(out, g, up);
  }
  if (f.texts.some((t) => t.length === f.pos)) childDone(up, c, out);
}
