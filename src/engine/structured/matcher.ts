/**
 * One request's grammar state over the token vocabulary: the per-step token mask (a packed bitmask
 * row, 1 = allowed) and the token it then accepts. The mask keeps the output closable within the
 * budget: a token is allowed only if what it leaves can still close in the tokens left after it
 * (closeCost ≤ budget − 1; each closing character has a one-character token, checked when the
 * matcher is made), and EOS only where the output may end. So output under a finite max_tokens
 * always parses: near the end of the budget the mask admits only the shortest completion's paths.
 */
import { InvalidRequestError } from '../errors.ts';
import { closeCost, END, initialState, isTerminal, run, step, type State } from './automaton.ts';
import type { SchemaNode } from './schema.ts';
import type { TokenVocab } from './vocab.ts';

/** Words of a packed mask row for `vocab` ids. */
export const maskWords = (vocab: number) => Math.ceil(vocab / 32);

/** Characters a shortest completion may need, which must each have a one-character token. */
function closingChars(node: SchemaNode, into: Set<string>): void {
  switch (node.kind) {
    case 'object':
      for (const c of '{}":,') into.add(c);
      for (const p of node.props) {
        for (const c of p.keyText) into.add(c);
        closingChars(p.node, into);
      }
      if (node.additional) {
        for (const c of 'abcdefghijklmnopqrstuvwxyz') into.add(c);
        closingChars(node.additional, into);
      }
      return;
    case 'array':
      for (const c of '[],') into.add(c);
      return closingChars(node.items, into);
    case 'string':
      into.add('"');
      return;
    case 'number':
      into.add('0');
      return;
    case 'literal':
      for (const t of node.texts) for (const c of t) into.add(c);
      return;
    case 'anyOf':
      return node.options.forEach((o) => closingChars(o, into));
    case 'any':
      into.add('0');
      return;
  }
}

export class GrammarMatcher {
  private state: State;
  /** Tokens the request may still generate (set before each step's mask: RowMaskSource). */
  budget = Infinity;

  /** `param`: the request field errors name (e.g. 'response_format'). */
  constructor(
    readonly node: SchemaNode,
    readonly vocab: TokenVocab,
    param: string,
  ) {
    const need = new Set<string>();
    closingChars(node, need);
    for (const c of need) if (!vocab.charToken.has(c)) throw new InvalidRequestError(param, `needs the character ${JSON.stringify(c)}, which has no single token in this model's vocabulary, so a shortest completion cannot be guaranteed`);
    // A string's content needs some one-character token that is a plain string character.
    if (need.has('"') && ![...vocab.charToken.keys()].some((c) => c >= ' ' && c !== '"' && c !== '\\')) throw new InvalidRequestError(param, 'needs a plain character token for string content; this vocabulary has none');
    this.state = initialState(node);
  }

  /** Fewest tokens the output still needs (0: complete). */
  get closeCost(): number {
    return closeCost(this.state);
  }

  /** The output is complete: only its end can follow (the request stops here). */
  get terminal(): boolean {
    return isTerminal(this.state);
  }

  /**
   * Write this step's mask into `words` at `offset` (maskWords(vocab) words): the tokens allowed
   * with `budget` tokens left, this one included (budget ≥ closeCost, which the matcher keeps).
   */
  fillMask(words: Uint32Array, offset: number, budget: number): void {
    const costs = this.vocab.costsAfter(this.state);
    const W = maskWords(this.vocab.size);
    words.fill(0, offset, offset + W);
    const limit = budget - 1;
    for (let id = 0; id < costs.length; id++) {
      // EOS is stored with cost 0 when the output may end here: it needs no token after it.
      if (costs[id] <= limit || (costs[id] === 0 && this.vocab.eos.has(id))) words[offset + (id >>> 5)] |= 1 << (id & 31);
    }
  }

  /** Advance by a sampled token (it must have been allowed by the last mask). */
  accept(id: number): void {
    const text = this.vocab.eos.has(id) ? END : this.vocab.texts[id];
    const next = text === null || text === undefined ? [] : run(this.state, text);
    if (next.length === 0) throw new Error(`grammar matcher: token ${id} (${JSON.stringify(this.vocab.texts[id])}) was sampled outside the mask`);
    this.state = next;
  }

  /** The text a string would take the automaton through (tests: does the grammar accept it). */
  static accepts(node: SchemaNode, text: string): boolean {
    return step(run(initialState(node), text), END).length > 0;
  }
}
