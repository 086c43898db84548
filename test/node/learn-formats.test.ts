/**
 * Preference files → pairs: excerpts of the three LLaMA-Factory demo files (test/fixtures/preferences,
 * copied from ../shared/data/preferences), TRL JSONL in its three shapes, and crafted bad input.
 * When ../shared is present the whole demo files are parsed too.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { detectFormat, importPairs, parsePreferenceFile, PreferenceFormatError, tokenCounter } from '../../src/learn/formats.ts';
import { TextTokenizer } from '../../src/model/tokenizer.ts';
import { PreferenceSet } from '../../src/learn/pairs.ts';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/preferences/${name}`, import.meta.url), 'utf8');
const SHARED = new URL('../../../shared/data/preferences/', import.meta.url);
const haveShared = existsSync(new URL('dpo_en_demo.json', SHARED));

function thrown(fn: () => unknown): PreferenceFormatError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(PreferenceFormatError);
    return e as PreferenceFormatError;
  }
  throw new Error('expected a throw');
}

/** A whitespace word count: a stand-in tokenizer for the limit tests. */
const words = (t: string) => t.split(/\s+/).filter(Boolean).length;

describe('LLaMA-Factory demo excerpts', () => {
  it('dpo_en_demo (ShareGPT): 3 records → 3 pairs, roles mapped, system and multi-turn context kept', () => {
    const r = parsePreferenceFile('dpo_en_demo.excerpt.json', fixture('dpo_en_demo.excerpt.json'));
    expect(r).toMatchObject({ format: 'sharegpt-dpo', records: 3, skipped: [], tooLong: [] });
    expect(r.pairs).toHaveLength(3);
    expect(r.pairs.map((p) => p.messages!.map((m) => m.role).join(','))).toEqual(['system,user', 'user', 'user,assistant,user,assistant,user']);
    expect(r.pairs.map((p) => p.record)).toEqual(['[0]', '[1]', '[2]']);
    const raw = JSON.parse(fixture('dpo_en_demo.excerpt.json'));
    r.pairs.forEach((p, i) => {
      expect(p.chosen).toBe(raw[i].chosen.value);
      expect(p.rejected).toBe(raw[i].rejected.value);
      expect(p.messages!.at(-1)!.content).toBe(raw[i].conversations.at(-1).value);
    });
  });

  it('kto_en_demo: 4 thumbs examples, 3 contexts, 1 with both labels → exactly 1 pair', () => {
    const r = parsePreferenceFile('kto_en_demo.excerpt.json', fixture('kto_en_demo.excerpt.json'));
    expect(r.format).toBe('kto');
    expect(r.kto).toEqual({ examples: 4, liked: 2, disliked: 2, contexts: 3, contextsWithBoth: 1 });
    expect(r.pairs).toHaveLength(1);
    const raw = JSON.parse(fixture('kto_en_demo.excerpt.json'));
    expect(r.pairs[0]).toMatchObject({ record: '[0] + [3]', chosen: raw[0].messages.at(-1).content, rejected: raw[3].messages.at(-1).content });
    expect(r.pairs[0].messages).toHaveLength(raw[0].messages.length - 1);
  });

  it('v1_dpo_demo: content parts joined, the shared system+user prefix is the context', () => {
    const r = parsePreferenceFile('v1_dpo_demo.excerpt.jsonl', fixture('v1_dpo_demo.excerpt.jsonl'));
    expect(r).toMatchObject({ format: 'v1-dpo', records: 3, skipped: [] });
    expect(r.pairs.map((p) => p.record)).toEqual(['line 1', 'line 2', 'line 3']);
    expect(r.pairs[0].messages!.map((m) => m.role)).toEqual(['system', 'user']);
    expect(r.pairs[0].chosen).toBe('Abdulah Hasanagic is the proud owner of AS Company in Gorazde, a small town located on the banks of the Drina River, near the border with Serbia, in Eastern Bosnia.');
    expect(r.pairs[0].rejected.startsWith(' Abdulah Hasanagic is the proud owner of AS Company, a small town')).toBe(true);
  });

  it('answers over a token limit are reported (file, record, field, count) and left out', () => {
    const r = parsePreferenceFile('dpo_en_demo.excerpt.json', fixture('dpo_en_demo.excerpt.json'), { countTokens: words, maxResponseTokens: 40 });
    const raw = JSON.parse(fixture('dpo_en_demo.excerpt.json'));
    const expected = raw.flatMap((rec: { chosen: { value: string }; rejected: { value: string } }, i: number) =>
      (['chosen', 'rejected'] as const).filter((f) => words(rec[f].value) > 40).map((f) => ({ file: 'dpo_en_demo.excerpt.json', record: `[${i}]`, field: f, tokens: words(rec[f].value), limit: 40 })),
    );
    expect(expected.length).toBeGreaterThan(0);
    expect(r.tooLong).toEqual(expected);
    expect(r.pairs.length).toBe(3 - new Set(expected.map((e: { record: string }) => e.record)).size);
    expect(() => parsePreferenceFile('x.jsonl', '{}', { maxResponseTokens: 5 })).toThrow(/maxResponseTokens needs countTokens/);
  });

  it('counts tokens with the model tokenizer (no BOS): "Once upon a time" is 4 tokens', () => {
    const model = new URL('../../public/models/stories260K/', import.meta.url);
    const read = (f: string) => readFileSync(new URL(f, model), 'utf8');
    const count = tokenCounter(TextTokenizer.load(read('tokenizer.json'), read('tokenizer_config.json'), [2]));
    expect(count('Once upon a time')).toBe(4);
    const line = JSON.stringify({ prompt: 'Lily', chosen: 'Once upon a time', rejected: 'Once upon a time there was a dog.' });
    const r = parsePreferenceFile('t.jsonl', line, { countTokens: count, maxResponseTokens: 4 });
    expect(r.pairs).toEqual([]);
    expect(r.tooLong).toEqual([{ file: 't.jsonl', record: 'line 1', field: 'rejected', tokens: count('Once upon a time there was a dog.'), limit: 4 }]);
    expect(r.tooLong[0].tokens).toBeGreaterThan(4);
  });

  it('imports into a PreferenceSet without duplicates', () => {
    const set = new PreferenceSet(() => 7);
    const r = parsePreferenceFile('v1.jsonl', fixture('v1_dpo_demo.excerpt.jsonl'));
    expect(importPairs(set, r.pairs)).toEqual({ added: 3, duplicates: 0 });
    expect(importPairs(set, r.pairs)).toEqual({ added: 0, duplicates: 3 });
    expect(set.list().every((p) => p.source === 'import' && p.createdAt === 7)).toBe(true);
  });
});

describe.skipIf(!haveShared)('the whole demo files in ../shared/data/preferences', () => {
  const read = (f: string) => readFileSync(new URL(f, SHARED), 'utf8');
  it('dpo_en_demo.json: 300 pairs; kto_en_demo.json: 300 examples, 297 contexts, 1 pair; v1_dpo_demo.jsonl: 10 pairs', () => {
    const dpo = parsePreferenceFile('dpo_en_demo.json', read('dpo_en_demo.json'));
    expect([dpo.records, dpo.pairs.length, dpo.skipped.length]).toEqual([300, 300, 0]);
    const kto = parsePreferenceFile('kto_en_demo.json', read('kto_en_demo.json'));
    expect(kto.kto).toEqual({ examples: 300, liked: 150, disliked: 150, contexts: 297, contextsWithBoth: 1 });
    expect(kto.pairs).toHaveLength(1);
    const v1 = parsePreferenceFile('v1_dpo_demo.jsonl', read('v1_dpo_demo.jsonl'));
    expect([v1.records, v1.pairs.length, v1.skipped.length]).toEqual([10, 10, 0]);
  });
});

describe('TRL JSONL', () => {
  it('standard, conversational with explicit prompt, and implicit prompt', () => {
    const lines = [
      { prompt: 'Once upon a time', chosen: ' there was a cat.', rejected: ' there was a dog.' },
      { prompt: [{ role: 'user', content: 'Hi' }], chosen: [{ role: 'assistant', content: 'Hello!' }], rejected: [{ role: 'assistant', content: 'Go away.' }] },
      { chosen: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello!' }], rejected: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Meh.' }] },
    ];
    const r = parsePreferenceFile('trl.jsonl', lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    expect(r.format).toBe('trl');
    expect(r.skipped).toEqual([]);
    expect(r.pairs).toEqual([
      { prompt: 'Once upon a time', chosen: ' there was a cat.', rejected: ' there was a dog.', file: 'trl.jsonl', record: 'line 1' },
      { messages: [{ role: 'user', content: 'Hi' }], chosen: 'Hello!', rejected: 'Go away.', file: 'trl.jsonl', record: 'line 2' },
      { messages: [{ role: 'user', content: 'Hi' }], chosen: 'Hello!', rejected: 'Meh.', file: 'trl.jsonl', record: 'line 3' },
    ]);
  });

  it('each bad line is skipped with file, line and field named; good lines still load', () => {
    const ok = JSON.stringify({ prompt: 'p', chosen: 'a', rejected: 'b' });
    const bad: [string, string][] = [
      ['{not json', '(line)'],
      ['', '(line)'],
      ['[1,2]', '(record)'],
      [JSON.stringify({ prompt: 'p', chosen: '', rejected: 'b' }), 'chosen'],
      [JSON.stringify({ prompt: 'p', chosen: 'a' }), 'rejected'],
      [JSON.stringify({ chosen: 'a', rejected: 'b' }), 'prompt'],
      [JSON.stringify({ prompt: 'p', chosen: 'same', rejected: 'same ' }), 'chosen/rejected'],
      [JSON.stringify({ prompt: [{ role: 'user', content: 'q' }], chosen: [{ role: 'user', content: 'a' }], rejected: [{ role: 'assistant', content: 'b' }] }), 'chosen[0].role'],
      [JSON.stringify({ chosen: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }], rejected: [{ role: 'user', content: 'Q' }, { role: 'assistant', content: 'b' }] }), 'rejected[0]'],
      [JSON.stringify({ prompt: [{ role: 'user', content: 5 }], chosen: [{ role: 'assistant', content: 'a' }], rejected: [{ role: 'assistant', content: 'b' }] }), 'prompt[0].content'],
    ];
    const text = [ok, ...bad.map((b) => b[0]), ok].join('\n');
    const r = parsePreferenceFile('bad.jsonl', text);
    expect(r.pairs.map((p) => p.record)).toEqual(['line 1', `line ${bad.length + 2}`]);
    const got = r.skipped.map((e) => [e.record, e.field]).sort();
    const want = bad.map((b, i) => [`line ${i + 2}`, b[1]]).sort();
    expect(got).toEqual(want);
    for (const e of r.skipped) {
      expect(e.code).toBe('bad-preference-file');
      expect(e.message.startsWith(`bad.jsonl ${e.record}: ${e.field} `)).toBe(true);
    }
    // strict: the first bad one is thrown instead.
    const strict = thrown(() => parsePreferenceFile('bad.jsonl', text, { strict: true }));
    expect([strict.record, strict.field]).toEqual(['line 2', '(line)']);
  });

  it('whole-file problems throw: empty, invalid JSON list, not a list, no records, unknown format', () => {
    expect(thrown(() => parsePreferenceFile('e.jsonl', '  \n')).message).toBe('e.jsonl (file): (content) is empty');
    expect(thrown(() => parsePreferenceFile('a.json', '[{"chosen": ')).field).toBe('(content)');
    expect(thrown(() => parsePreferenceFile('a.json', '[]')).detail).toBe('holds no records');
    expect(thrown(() => parsePreferenceFile('u.jsonl', '{"question": "q", "answer": "a"}')).field).toBe('(format)');
    expect(() => detectFormat('x', 3)).toThrow(PreferenceFormatError);
  });
});

describe('crafted bad records of the LLaMA-Factory formats', () => {
  it('ShareGPT: unknown speaker, answer not from gpt, conversation not ending with human', () => {
    const good = { conversations: [{ from: 'human', value: 'q' }], chosen: { from: 'gpt', value: 'a' }, rejected: { from: 'gpt', value: 'b' } };
    const recs = [good, { ...good, conversations: [{ from: 'robot', value: 'q' }] }, { ...good, chosen: { from: 'human', value: 'a' } }, { ...good, conversations: [{ from: 'human', value: 'q' }, { from: 'gpt', value: 'x' }] }, { ...good, rejected: { from: 'gpt', value: '' } }];
    const r = parsePreferenceFile('s.json', JSON.stringify(recs));
    expect(r.pairs).toHaveLength(1);
    expect(r.skipped.map((e) => [e.record, e.field])).toEqual([
      ['[1]', 'conversations[0].from'],
      ['[2]', 'chosen.from'],
      ['[3]', 'conversations[1].from'],
      ['[4]', 'rejected.value'],
    ]);
  });

  it('KTO: non-boolean label, answer not last, single message', () => {
    const ex = (label: unknown, answer = 'a', role = 'assistant') => ({ messages: [{ role: 'user', content: 'q' }, { role, content: answer }], label });
    const recs = [ex(true, 'good'), ex(false, 'bad'), ex('yes'), ex(true, 'x', 'user'), { messages: [{ role: 'assistant', content: 'a' }], label: true }];
    const r = parsePreferenceFile('k.json', JSON.stringify(recs));
    expect(r.pairs.map((p) => [p.chosen, p.rejected])).toEqual([['good', 'bad']]);
    expect(r.skipped.map((e) => [e.record, e.field])).toEqual([
      ['[2]', 'label'],
      ['[3]', 'messages[1].role'],
      ['[4]', 'messages'],
    ]);
    expect(r.kto).toEqual({ examples: 2, liked: 1, disliked: 1, contexts: 1, contextsWithBoth: 1 });
  });

  it('v1: prefixes that differ, a non-text part, a missing side', () => {
    const conv = (answer: string, user = 'q') => [{ role: 'user', content: [{ type: 'text', value: user }] }, { role: 'assistant', content: [{ type: 'text', value: answer }] }];
    const recs = [
      { chosen_messages: conv('a'), rejected_messages: conv('b') },
      { chosen_messages: conv('a'), rejected_messages: conv('b', 'other') },
      { chosen_messages: [{ role: 'user', content: [{ type: 'image', url: 'x' }] }, { role: 'assistant', content: 'a' }], rejected_messages: conv('b') },
      { chosen_messages: conv('a') },
    ];
    const r = parsePreferenceFile('v.jsonl', recs.map((x) => JSON.stringify(x)).join('\n'));
    expect(r.pairs).toHaveLength(1);
    expect(r.skipped.map((e) => [e.record, e.field])).toEqual([
      ['line 2', 'rejected_messages[0]'],
      ['line 3', 'chosen_messages[0].content[0]'],
      ['line 4', 'rejected_messages'],
    ]);
  });
});
