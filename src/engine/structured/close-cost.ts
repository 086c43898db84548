/**
 * closeCost: the exact fewest characters from a state to the end of the output (END, i.e. EOS,
 * counted where the value does not end itself), as the sum over a stack's frames of what each
 * still needs once the frames above it are done; the minimum over the state's stacks.
 */
import type { SchemaNode } from './schema.ts';
import { isTerminal, N, P, type Frame, type ObjectNode, type Stack, type State } from './frames.ts';

/** Fewest characters (END included) to finish; 0 when terminal; Infinity when dead. */
export function closeCost(state: State): number {
  if (state.length === 0) return Infinity;
  if (isTerminal(state)) return 0;
  let best = Infinity;
  for (const top of state) {
    let total = 0;
    let child: Frame | null = null;
    for (let s: Stack | null = top; s; s = s.up) {
      total += s.f.k === 'root' ? rootRest(s.f, child) : rest(s.f);
      child = s.f;
    }
    if (total < best) best = total;
  }
  return best;
}

/** A value that ends on its own last character (the output may stop there): no END needed after it. */
const endsItself = (lastChar: string | undefined) => lastChar === '"' || lastChar === '}' || lastChar === ']';

/** Fewest characters of a whole output of `node`, END included where the value does not end itself. */
function outputMinChars(node: SchemaNode): number {
  switch (node.kind) {
    case 'object':
    case 'array':
    case 'string':
      return node.minChars;
    case 'number':
      return node.minChars + 1;
    case 'literal':
      return Math.min(...node.texts.map((t) => t.length + (endsItself(t.at(-1)) ? 0 : 1)));
    case 'anyOf':
      return Math.min(...node.options.map(outputMinChars));
    case 'any':
      return 2; // "" (or {}, [], or a digit and END)
  }
}

/** The root's part of closeCost; `child`: the frame of its running value. */
function rootRest(f: Extract<Frame, { k: 'root' }>, child: Frame | null): number {
  if (f.p === P.Before) return outputMinChars(f.node);
  if (f.p === P.Done || child === null) return 1;
  // The running value's shortest completion ends it (no END needed) when it ends on its own last character.
  if (child.k === 'obj' || child.k === 'arr' || child.k === 'str') return 0;
  if (child.k === 'lit') {
    let best = Infinity;
    for (const t of child.texts) if (t.length >= child.pos) best = Math.min(best, t.length - child.pos + (endsItself(t.at(-1)) ? 0 : 1));
    return best - rest(child); // what the literal's own rest does not already count
  }
  return 1;
}

export function requiredMissing(n: ObjectNode, seen: readonly number[]): number {
  let cost = 0;
  let count = 0;
  n.props.forEach((p, i) => {
    if (p.required && !seen.includes(i)) {
      cost += p.keyText.length + 1 + p.node.minChars;
      count++;
    }
  });
  return count === 0 ? -1 : cost + count - 1;
}

/** Cost from After: the missing required members (each with a comma), then '}'. */
function objectAfterCost(n: ObjectNode, seen: readonly number[]): number {
  const r = requiredMissing(n, seen);
  return r < 0 ? 1 : r + 1 + 1;
}

/** Shortest key that is neither declared nor used, extending `prefix` (additional properties). */
export function freeKeyExtension(n: ObjectNode, extra: readonly string[], prefix: string): string | null {
  if (!n.additional) return null;
  const taken = (k: string) => extra.includes(k) || n.props.some((p) => p.name === k);
  if (!taken(prefix)) return '';
  for (const a of 'abcdefghijklmnopqrstuvwxyz') if (!taken(prefix + a)) return a;
  for (const a of 'abcdefghijklmnopqrstuvwxyz') for (const b of 'abcdefghijklmnopqrstuvwxyz') if (!taken(prefix + a + b)) return a + b;
  return null;
}

/** Cost of one more member from just after its opening quote (key text so far `key`), then the rest. */
function keyCost(n: ObjectNode, seen: readonly number[], extra: readonly string[], key: string): number {
  let best = Infinity;
  n.props.forEach((p, i) => {
    if (seen.includes(i) || !p.keyText.startsWith(`"${key}`)) return;
    best = Math.min(best, p.keyText.length - 1 - key.length + 1 + p.node.minChars + objectAfterCost(n, [...seen, i]));
  });
  const ext = freeKeyExtension(n, extra, key);
  if (ext !== null) best = Math.min(best, ext.length + 1 + 1 + n.additional!.minChars + objectAfterCost(n, seen));
  return best;
}

export function rest(f: Frame): number {
  switch (f.k) {
    case 'root':
      return f.p === P.Before ? f.node.minChars + 1 : 1;
    case 'obj': {
      const n = f.node;
      switch (f.p) {
        case P.Start:
          return n.minChars;
        case P.Open: {
          const r = requiredMissing(n, f.seen);
          return r < 0 ? 1 : r + 1;
        }
        case P.Key:
          return keyCost(n, f.seen, f.extra, f.key);
        case P.Colon:
          return 1 + memberNode(n, f.cur).minChars + objectAfterCost(n, f.seen);
        case P.BeforeValue:
          return memberNode(n, f.cur).minChars + objectAfterCost(n, f.seen);
        case P.Value:
        case P.After:
          return objectAfterCost(n, f.seen);
        default: // Next: one more member is due (after its quote: 1 + keyCost)
          return 1 + keyCost(n, f.seen, f.extra, '');
      }
    }
    case 'arr': {
      const n = f.node;
      const item = n.items.minChars;
      const after = (k: number) => (k >= n.minItems ? 1 : (n.minItems - k) * (1 + item) + 1);
      switch (f.p) {
        case P.Start:
          return n.minChars;
        case P.Open:
          return n.minItems === 0 ? 1 : n.minItems * item + n.minItems - 1 + 1;
        case P.Value:
          return after(f.n + 1);
        case P.After:
          return after(f.n);
        default: // Next
          return f.n + 1 > n.maxItems ? Infinity : item + after(f.n + 1);
      }
    }
    case 'str': {
      const lacking = (len: number) => Math.max(0, f.node.minLength - len);
      if (f.p === P.Start) return f.node.minChars;
      if (f.esc === 0) return lacking(f.len) + 1;
      // In an escape: it completes one character (1 or 4 - (esc - 2) more), then the rest.
      return (f.esc === 1 ? 1 : 4 - (f.esc - 2)) + lacking(f.len + 1) + 1;
    }
    case 'num':
      return f.p === N.Zero || f.p === N.Int || f.p === N.Frac || f.p === N.ExpDigits ? 0 : 1;
    case 'lit': {
      let best = Infinity;
      for (const t of f.texts) best = Math.min(best, t.length - f.pos);
      return best;
    }
  }
}

/** The schema of member `cur` (-1: an additional property). */
export function memberNode(n: ObjectNode, cur: number): SchemaNode {
  return cur >= 0 ? n.props[cur].node : n.additional!;
}
