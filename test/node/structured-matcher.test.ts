import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../src/engine/errors.ts';
import { closeCost, END, initialState, isTerminal, run, signature, step } from '../../src/engine/structured/automaton.ts';
import { GrammarMatcher, maskWords } from '../../src/engine/structured/matcher.ts';
import { compileSchema, JSON_OBJECT, type SchemaNode } from '../../src/engine/structured/schema.ts';
import { TokenVocab, vocabFor } from '../../src/engine/structured/vocab.ts';
import { TextTokenizer } from '../../src/model/tokenizer.ts';
import { mulberry32 } from '../util/random.ts';
import { validates } from '../util/json-schema.ts';

const dir = new URL('../../public/models/stories260K/', import.meta.url);
const read = (f: string) => readFileSync(new URL(f, dir), 'utf8');
const tok = TextTokenizer.load(read('tokenizer.json'), read('tokenizer_config.json'), [2]);
const stories = vocabFor(tok, 512, [2]);

const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 8 },
    age: { type: 'integer' },
    pet: { enum: ['cat', 'dog', null] },
    tags: { type: 'array', items: { type: 'string', maxLength: 3 }, minItems: 1, maxItems: 3 },
    score: { anyOf: [{ type: 'number' }, { type: 'boolean' }] },
  },
  required: ['name', 'age', 'tags'],
  additionalProperties: false,
};

const accepts = (node: SchemaNode, text: string) => GrammarMatcher.accepts(node, text);

describe('JSON schema subset: compile errors name the path', () => {
  const bad: [unknown, string][] = [
    [{ type: 'string', pattern: 'a+' }, 's.pattern'],
    [{ type: 'string', format: 'email' }, 's.format'],
    [{ $ref: '#/defs/a' }, 's.$ref'],
    [{ type: 'object', properties: { a: { type: 'number', minimum: 0 } } }, 's.properties.a.minimum'],
    [{ type: 'array', items: { oneOf: [] } }, 's.items.oneOf'],
    [{ type: 'strng' }, 's.type'],
    [{ type: 'object', required: ['x'] }, 's.required'],
    [{ type: 'string', minLength: 3, maxLength: 2 }, 's.maxLength'],
    [{ type: 'array', minItems: -1 }, 's.minItems'],
    [{ type: 'integer', enum: [1, 'a'] }, 's.enum[1]'],
    [{ anyOf: [] }, 's.anyOf'],
    [{ type: 'number', minLength: 2 }, 's.minLength'],
    [{ properties: {} }, 's.type'],
    ['string', 's'],
  ];
  for (const [schema, param] of bad) {
    it(`${JSON.stringify(schema)} -> ${param}`, () => {
      try {
        compileSchema(schema, 's');
        expect.unreachable('compiled');
      } catch (e) {
        expect(e).toBeInstanceOf(InvalidRequestError);
        expect((e as InvalidRequestError).param).toBe(param);
      }
    });
  }
  it('annotations constrain nothing and are accepted', () => {
    expect(() => compileSchema({ type: 'string', title: 't', description: 'd', $schema: 'x' }, 's')).not.toThrow();
  });
});

describe('the automaton accepts exactly the schema language', () => {
  const node = compileSchema(PERSON, 's');
  const good = [
    '{"name":"bo","age":3,"tags":["a"]}',
    ' {"tags": ["x", "yz"], "age": -12, "name": "Ann", "pet": null, "score": true}',
    '{"name":"\\u00e9\\n","age":0,"tags":["","",""],"score":1.5e-3}',
    '{\n  "name": "a",\n  "age": 1,\n  "tags": ["b"],\n  "pet": "dog"\n}',
  ];
  const badTexts = [
    '{"name":"bo","age":3}', // tags required
    '{"name":"","age":3,"tags":["a"]}', // minLength 1
    '{"name":"bo","age":3.5,"tags":["a"]}', // integer
    '{"name":"bo","age":3,"tags":[]}', // minItems
    '{"name":"bo","age":3,"tags":["a","b","c","d"]}', // maxItems
    '{"name":"bo","age":3,"tags":["abcd"]}', // item maxLength
    '{"name":"bo","age":3,"tags":["a"],"x":1}', // additionalProperties false
    '{"name":"bo","name":"b","age":3,"tags":["a"]}', // duplicate key
    '{"name":"bo","age":03,"tags":["a"]}', // leading zero
    '{"name":"bo","age":3,"tags":["a"],"pet":"cow"}', // enum
    '{"name":"bo","age":3,"tags":["a"]} ', // nothing after the value
    '{"name":"bo","age":3,"tags":["a"],}',
  ];
  for (const t of good) it(`accepts ${JSON.stringify(t)}`, () => {
    expect(accepts(node, t)).toBe(true);
    expect(validates(PERSON, JSON.parse(t))).toBe(true);
  });
  for (const t of badTexts) it(`rejects ${JSON.stringify(t)}`, () => expect(accepts(node, t)).toBe(false));
  it('json_object: any object, nothing else', () => {
    for (const t of ['{}', '{"a":[1,{"b":null}],"c":"d"}']) expect(accepts(JSON_OBJECT, t)).toBe(true);
    for (const t of ['[]', '"a"', '1', '{"a":1,"a":2}', '{"a"}']) expect(accepts(JSON_OBJECT, t)).toBe(false);
  });
  it('a number at the root ends only at the end; an object is terminal once closed', () => {
    const num = compileSchema({ type: 'number' }, 's');
    expect(isTerminal(run(initialState(num), '12'))).toBe(false);
    expect(step(run(initialState(num), '12'), END).length).toBe(1);
    expect(isTerminal(run(initialState(node), good[0]))).toBe(true);
  });
});

/** The fewest characters to close, by breadth-first search over a small alphabet (the spec of closeCost). */
function bfsClose(node: SchemaNode, prefix: string, alphabet: string): number {
  let frontier = [run(initialState(node), prefix)];
  for (let d = 0; d < 40; d++) {
    if (frontier.some((s) => isTerminal(s) || step(s, END).length > 0)) return frontier.some((s) => isTerminal(s)) ? d : d + 1;
    const next = new Map<string, ReturnType<typeof step>>(); // states told apart by what can follow
    for (const s of frontier) for (const c of alphabet) {
      const t = step(s, c);
      if (t.length) next.set(signature(t, 40), t);
    }
    frontier = [...next.values()];
  }
  return Infinity;
}

describe('closeCost: the shortest completion', () => {
  const node = compileSchema({ type: 'object', properties: { a: { type: 'string', minLength: 2 }, b: { type: 'array', items: { type: 'integer' }, minItems: 2 } }, required: ['a', 'b'], additionalProperties: false }, 's');
  const alphabet = '{}[]",:0ab';
  for (const prefix of ['', '{', '{"', '{"a', '{"a":"', '{"a":"x', '{"a":"xy","b":[', '{"a":"xy","b":[1', '{"a":"xy","b":[1,2', '{"a":"xy","b":[1,2]']) {
    it(`after ${JSON.stringify(prefix)}: exactly the breadth-first search`, () => {
      expect(closeCost(run(initialState(node), prefix))).toBe(bfsClose(node, prefix, alphabet));
    });
  }
  for (const [schema, prefix, alphabet] of [
    [{ type: 'number' }, '', '0-.e1'],
    [{ type: 'number' }, '-', '0-.e1'],
    [{ type: 'number' }, '1.', '0-.e1'],
    [{ enum: [12, 'ab', true] }, '', '12"abtrue'],
    [{ enum: [12, 'ab', true] }, '1', '12"abtrue'],
    [{ enum: [123, 'a'] }, '1', '123"a'],
    [{ anyOf: [{ type: 'integer' }, { type: 'array', maxItems: 0 }] }, '', '0[]'],
    [{ type: 'array', items: { enum: [1, 22] }, minItems: 2 }, '[2', '[]12,'],
  ] as const) {
    it(`${JSON.stringify(schema)} after ${JSON.stringify(prefix)}: exactly the search`, () => {
      const n = compileSchema(schema, 's');
      expect(closeCost(run(initialState(n), prefix))).toBe(bfsClose(n, prefix, alphabet));
    });
  }
  it('is 0 exactly when complete', () => {
    expect(closeCost(run(initialState(node), '{"a":"xy","b":[1,2]}'))).toBe(0);
  });
});

describe('masks over the stories260K vocabulary', () => {
  it('token texts: SentencePiece spaces kept, special and partial tokens excluded', () => {
    const space = stories.texts.findIndex((t) => t !== null && t.startsWith(' ') && t.length > 1);
    expect(space).toBeGreaterThan(0);
    expect(stories.texts[1]).toBeNull(); // <s>
    expect(stories.texts[2]).toBeNull(); // </s> is EOS: the automaton's END
    expect(stories.texts[3 + 0x7b]).toBe('{'); // <0x7B>
    expect(stories.texts[3 + 0xe2]).toBeNull(); // a lone UTF-8 lead byte
  });
  it('the first mask allows whitespace runs and tokens that open the object, nothing else', () => {
    const m = new GrammarMatcher(compileSchema(PERSON, 's'), stories, 'response_format');
    const words = new Uint32Array(maskWords(512));
    m.fillMask(words, 0, 100);
    const allowed = new Set([...Array(512).keys()].filter((t) => (words[t >>> 5] >>> (t & 31)) & 1));
    for (let t = 0; t < 512; t++) {
      const s = stories.texts[t];
      // Independent of the automaton: JSON whitespace (runs of at most 4), then an opening brace
      // and maybe the start of a key; stories260K's tokens are short, so this covers them.
      const want = s !== null && /^[ \n\t\r]{0,4}(\{[ \n\t\r]{0,4}("((n(a(m(e"?)?)?)?)|(a(g(e"?)?)?)|(t(a(g(s"?)?)?)?)|(p(e(t"?)?)?)|(s(c(o(r(e"?)?)?)?)?))?)?)?$/.test(s) && s.length > 0;
      expect(allowed.has(t), `token ${t} ${JSON.stringify(s)}`).toBe(want);
    }
    expect(allowed.has(3 + 0x7b)).toBe(true);
  });
  it('EOS only where the output may end', () => {
    const num = new GrammarMatcher(compileSchema({ type: 'integer' }, 's'), stories, 'r');
    const words = new Uint32Array(maskWords(512));
    num.fillMask(words, 0, 10);
    expect((words[0] >>> 2) & 1).toBe(0);
    num.accept(stories.charToken.get('7')!);
    num.fillMask(words, 0, 10);
    expect((words[0] >>> 2) & 1).toBe(1);
  });
  it('with one token left only a closing token (or EOS) is allowed', () => {
    const m = new GrammarMatcher(compileSchema({ type: 'array', items: { type: 'integer' } }, 's'), stories, 'r');
    for (const c of '[1,2') m.accept(stories.charToken.get(c)!);
    const words = new Uint32Array(maskWords(512));
    m.fillMask(words, 0, 1);
    const allowed = [...Array(512).keys()].filter((t) => (words[t >>> 5] >>> (t & 31)) & 1).map((t) => stories.texts[t]);
    expect(allowed.length).toBeGreaterThan(0);
    for (const t of allowed) expect(t!.trimStart()).toMatch(/^[0-9]*\]$/);
  });
  it('refuses a schema whose shortest completion needs a character no token spells alone', () => {
    const tiny = new TokenVocab(4, ['{', '}', 'ab', null], [3]);
    expect(() => new GrammarMatcher(compileSchema({ type: 'object' }, 's'), tiny, 'response_format')).toThrow(InvalidRequestError);
  });
});

/** Sample a whole output on the CPU: uniformly among the allowed tokens each step, like a model at high temperature. */
function randomOutput(node: SchemaNode, vocab: TokenVocab, maxTokens: number, seed: number): { text: string; tokens: number; ended: 'stop' | 'length' } {
  const m = new GrammarMatcher(node, vocab, 'r');
  const rand = mulberry32(seed);
  const words = new Uint32Array(maskWords(vocab.size));
  let text = '';
  for (let n = 0; n < maxTokens; n++) {
    m.fillMask(words, 0, maxTokens - n);
    const allowed = [...Array(vocab.size).keys()].filter((t) => (words[t >>> 5] >>> (t & 31)) & 1);
    expect(allowed.length, `no token allowed after ${JSON.stringify(text)}`).toBeGreaterThan(0);
    const id = allowed[Math.floor(rand() * allowed.length)];
    m.accept(id);
    if (vocab.eos.has(id)) return { text, tokens: n + 1, ended: 'stop' };
    text += vocab.texts[id];
    if (m.terminal) return { text, tokens: n + 1, ended: 'stop' };
  }
  return { text, tokens: maxTokens, ended: 'length' };
}

describe('random walks under the mask always parse and validate', () => {
  const schemas: [string, Record<string, unknown>][] = [
    ['person', PERSON],
    ['nested arrays', { type: 'array', items: { type: 'array', items: { type: 'integer' }, maxItems: 2 }, minItems: 1 }],
    ['enum/const/null', { type: 'object', properties: { k: { const: 'fixed' }, v: { type: ['string', 'null'], maxLength: 4 } }, required: ['k', 'v'] }],
  ];
  for (const [name, schema] of schemas) {
    for (const maxTokens of [40, 80]) {
      it(`${name}, max_tokens ${maxTokens}: 30 seeds`, () => {
        const node = compileSchema(schema, 's');
        for (let seed = 1; seed <= 30; seed++) {
          const out = randomOutput(node, stories, maxTokens, seed * 7 + maxTokens);
          const value = JSON.parse(out.text);
          expect(validates(schema, value), out.text).toBe(true);
          expect(out.tokens).toBeLessThanOrEqual(maxTokens);
        }
      });
    }
  }
  it('json_object', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const out = randomOutput(JSON_OBJECT, stories, 30, seed);
      const v = JSON.parse(out.text);
      expect(typeof v === 'object' && v !== null && !Array.isArray(v)).toBe(true);
    }
  });
});

describe('a larger vocabulary', () => {
  it('50k synthetic tokens: masks come from the trie and the per-state cache', () => {
    const rand = mulberry32(5);
    const alphabet = 'abcdefghijklmnopqrstuvwxyz{}[]":, 0123456789-.';
    const texts: string[] = [];
    for (const c of alphabet) texts.push(c);
    while (texts.length < 50000) {
      const len = 1 + Math.floor(rand() * 6);
      texts.push(Array.from({ length: len }, () => alphabet[Math.floor(rand() * alphabet.length)]).join(''));
    }
    const vocab = new TokenVocab(50001, [...texts, null], [50000]);
    const node = compileSchema(PERSON, 's');
    const t0 = performance.now();
    const out = randomOutput(node, vocab, 60, 3);
    const ms = performance.now() - t0;
    expect(validates(PERSON, JSON.parse(out.text))).toBe(true);
    console.log(`50k vocab: ${out.tokens} tokens in ${ms.toFixed(0)} ms (${(ms / out.tokens).toFixed(1)} ms per mask incl. the test's own scan)`);
  }, 60_000); // the CPUs are shared: no timing is asserted
});
