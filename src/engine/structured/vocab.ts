/**
 * The vocabulary as the grammar matcher sees it: each token's text in the middle of an output
 * (decoded after an anchor token, so SentencePiece's "▁" reads as the space it is), a character
 * trie over those texts (a mask walks each shared prefix once), and per automaton state a cache of
 * every token's close cost after it (one pass of the trie per distinct state; a mask for any
 * budget is then a cheap pass over that array).
 *
 * Tokens that are no text in the middle of an output are never allowed under a grammar: special
 * tokens (empty when decoded), byte-fallback pieces of a multi-byte character (decoded as U+FFFD)
 * and ids past the tokenizer (padded embeddings). EOS is the automaton's END.
 */
import { closeCost, END, signature, step, type State } from './automaton.ts';

/** What the vocabulary needs from a tokenizer (TextTokenizer has it). */
export interface DecodingTokenizer {
  decode(ids: readonly number[], skipSpecialTokens?: boolean): string;
  encode(text: string, addSpecialTokens?: boolean): number[];
}

interface TrieNode {
  children: Map<string, TrieNode>;
  ids: number[];
}

/** Close costs cached per state (LRU by insertion). */
const COST_CACHE = 256;
/** A close cost as stored: dead and anything past 65534 are the same for any budget. */
const DEAD = 0xffff;

export class TokenVocab {
  /** Text of each id in the middle of an output; null: never allowed under a grammar. */
  readonly texts: (string | null)[];
  readonly eos: ReadonlySet<number>;
  /** Longest token text, in code points. */
  readonly maxChars: number;
  /** A token for each character that has one of exactly that text (shortest completions use them). */
  readonly charToken: ReadonlyMap<string, number>;
  private readonly root: TrieNode = { children: new Map(), ids: [] };
  private readonly costs = new Map<string, Uint16Array>();

  constructor(
    readonly size: number,
    texts: (string | null)[],
    eosIds: Iterable<number>,
  ) {
    this.eos = new Set([...eosIds].filter((id) => id >= 0 && id < size));
    this.texts = Array.from({ length: size }, (_, i) => (this.eos.has(i) ? null : (texts[i] ?? null)));
    let maxChars = 0;
    const charToken = new Map<string, number>();
    this.texts.forEach((t, id) => {
      if (t === null) return;
      const chars = [...t];
      maxChars = Math.max(maxChars, chars.length);
      if (chars.length === 1 && !charToken.has(t)) charToken.set(t, id);
      let node = this.root;
      for (const c of chars) {
        let next = node.children.get(c);
        if (!next) node.children.set(c, (next = { children: new Map(), ids: [] }));
        node = next;
      }
      node.ids.push(id);
    });
    this.maxChars = maxChars;
    this.charToken = charToken;
  }

  /** Per token, the close cost of the state after it (DEAD: not allowed); EOS ids are 0 when END is accepted. */
  costsAfter(state: State): Uint16Array {
    const key = signature(state, this.maxChars);
    const hit = this.costs.get(key);
    if (hit) {
      this.costs.delete(key); // most recent last
      this.costs.set(key, hit);
      return hit;
    }
    const out = new Uint16Array(this.size).fill(DEAD);
    const walk = (node: TrieNode, s: State) => {
      for (const [c, child] of node.children) {
        const next = step(s, c);
        if (next.length === 0) continue;
        if (child.ids.length) {
          const cost = Math.min(closeCost(next), DEAD - 1);
          for (const id of child.ids) out[id] = cost;
        }
        walk(child, next);
      }
    };
    walk(this.root, state);
    if (step(state, END).length > 0) for (const id of this.eos) out[id] = 0;
    this.costs.set(key, out);
    if (this.costs.size > COST_CACHE) this.costs.delete(this.costs.keys().next().value!);
    return out;
  }
}

/** Token texts of a tokenizer's vocabulary (ids [0, size)), decoded after an anchor token. */
export function tokenTexts(tok: DecodingTokenizer, size: number): (string | null)[] {
  const anchor = tok.encode('a', false)[0];
  const head = anchor === undefined ? '' : tok.decode([anchor]);
  const texts: (string | null)[] = [];
  for (let id = 0; id < size; id++) {
    let t: string;
    try {
      t = anchor === undefined ? tok.decode([id]) : tok.decode([anchor, id]);
    } catch {
      texts.push(null);
      continue;
    }
    if (!t.startsWith(head)) {
      texts.push(null);
      continue;
    }
    const text = t.slice(head.length);
    texts.push(text.length === 0 || text.includes('\uFFFD') || text.includes(END) ? null : text);
  }
  return texts;
}

const VOCABS = new WeakMap<object, Map<number, TokenVocab>>();

/** The vocabulary of `tok` for a model of `size` ids (built once per tokenizer and size). */
export function vocabFor(tok: DecodingTokenizer, size: number, eosIds: Iterable<number>): TokenVocab {
  let bySize = VOCABS.get(tok);
  if (!bySize) VOCABS.set(tok, (bySize = new Map()));
  let v = bySize.get(size);
  if (!v) bySize.set(size, (v = new TokenVocab(size, tokenTexts(tok, size), eosIds)));
  return v;
}
