/**
 * Oversized work is refused before it is tokenized (issue 15): a prompt over the engine's character
 * limit (promptCharLimit: 64 characters, or the longest token, per token of context), a chat
 * template that blows the prompt up, a token-id prompt longer than the context, and preference
 * records whose text fields are over 1 MiB (or whose JSONL line is over 16 MiB). Each is a typed
 * error naming the field; what is held before stays intact and the next good input works.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../src/engine/errors.ts';
import { chatPromptIds } from '../../src/engine/openai.ts';
import { promptCharLimit } from '../../src/engine/params.ts';
import { MAX_RECORD_CHARS, parsePreferenceFile, PreferenceFormatError } from '../../src/learn/formats.ts';
import { MAX_TEXT_CHARS, PreferenceInputError, PreferenceSet } from '../../src/learn/pairs.ts';
import { TextTokenizer } from '../../src/model/tokenizer.ts';

const dir = new URL('../../public/models/stories260K/', import.meta.url);
const read = (f: string) => readFileSync(new URL(f, dir), 'utf8');
const tok = TextTokenizer.load(read('tokenizer.json'), read('tokenizer_config.json'), [2]);

function thrown<E extends Error>(type: new (...a: never[]) => E, fn: () => unknown): E {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(type);
    return e as E;
  }
  throw new Error('expected a throw');
}

describe('prompt characters, bounded before tokenizing', () => {
  const bound = { maxContext: 512 };
  const limit = promptCharLimit(512, tok.maxTokenChars);

  it('the limit is 64 characters per token of context unless the vocabulary has longer tokens', () => {
    expect(tok.maxTokenChars).toBeLessThan(64);
    expect(limit).toBe(64 * 512);
    expect(promptCharLimit(512, 100)).toBe(100 * 512);
  });

  it('a prompt at the limit is tokenized as without a bound; one character more is refused naming the field', () => {
    const messages = [{ role: 'user' as const, content: 'Once upon a time. '.repeat(10) }];
    expect(chatPromptIds(tok, messages, bound)).toEqual(chatPromptIds(tok, messages));
    const e = thrown(InvalidRequestError, () => chatPromptIds(tok, [{ role: 'user', content: 'a'.repeat(limit - 10) }, { role: 'user', content: 'b'.repeat(11) }], bound));
    expect(e).toMatchObject({ code: 'invalid-request', param: 'messages[1].content' });
    expect(e.message).toBe(`request: messages[1].content brings the prompt to ${limit + 1} characters; a request may hold at most ${limit} (64 per token of the 512-token context), so it cannot fit and is refused before tokenizing`);
    expect(chatPromptIds(tok, [{ role: 'user', content: 'a'.repeat(limit - 10) }, { role: 'user', content: 'b'.repeat(10) }], bound).length).toBeGreaterThan(0);
  });

  it('an 80 MB message (20M tokens at 4 characters each) is refused; content parts are counted one by one', () => {
    const huge = 'x'.repeat(80 * 2 ** 20);
    const e = thrown(InvalidRequestError, () => chatPromptIds(tok, [{ role: 'user', content: huge }], bound));
    expect(e.param).toBe('messages[0].content');
    const parts = thrown(InvalidRequestError, () => chatPromptIds(tok, [{ role: 'user', content: [{ type: 'text', text: 'hi' }, { type: 'text', text: huge }] }], bound));
    expect(parts.param).toBe('messages[0].content[1].text');
  });

  it('a chat template that multiplies the prompt is refused on what it rendered, naming messages', () => {
    const cfg = { ...JSON.parse(read('tokenizer_config.json')), chat_template: '{% for i in range(200) %}{% for m in messages %}{{ m.content }}{% endfor %}{% endfor %}' };
    const chat = TextTokenizer.load(read('tokenizer.json'), cfg);
    const e = thrown(InvalidRequestError, () => chatPromptIds(chat, [{ role: 'user', content: 'y'.repeat(200) }], { maxContext: 64 }));
    expect(e.param).toBe('messages');
    expect(e.message).toMatch(/^request: messages brings the prompt to 40000 characters; a request may hold at most 4096 /);
  });
});

describe('preference records over the size limits', () => {
  const big = 'z'.repeat(10 * 2 ** 20); // 10 MB
  const record = (chosen: string) => JSON.stringify({ prompt: 'Tell me a story.', chosen, rejected: 'No.' });

  it('a 10 MB answer in a JSONL record is a bad record naming line and field; the good records are kept', () => {
    const r = parsePreferenceFile('prefs.jsonl', [record(big), record('Once upon a time, a cat.')].join('\n'));
    expect(r.pairs).toHaveLength(1);
    expect(r.pairs[0].record).toBe('line 2');
    expect(r.skipped).toHaveLength(1);
    expect(r.skipped[0]).toBeInstanceOf(PreferenceFormatError);
    expect(r.skipped[0]).toMatchObject({ code: 'bad-preference-file', file: 'prefs.jsonl', record: 'line 1', field: 'chosen' });
    expect(r.skipped[0].message).toBe(`prefs.jsonl line 1: chosen has ${big.length} characters; at most ${MAX_TEXT_CHARS} (1 MiB) are accepted per text field`);
    expect(() => parsePreferenceFile('prefs.jsonl', record(big), { strict: true })).toThrow(PreferenceFormatError);
  });

  it('exactly 1 MiB is accepted; message contents and ShareGPT values are bounded too', () => {
    expect(parsePreferenceFile('p.jsonl', record('w'.repeat(MAX_TEXT_CHARS))).pairs).toHaveLength(1);
    const conv = JSON.stringify({ prompt: [{ role: 'user', content: big }], chosen: [{ role: 'assistant', content: 'a' }], rejected: [{ role: 'assistant', content: 'b' }] });
    expect(parsePreferenceFile('c.jsonl', conv).skipped[0]).toMatchObject({ field: 'prompt[0].content' });
    const share = JSON.stringify([{ conversations: [{ from: 'human', value: 'hi' }], chosen: { from: 'gpt', value: big }, rejected: { from: 'gpt', value: 'b' } }]);
    expect(parsePreferenceFile('s.json', share).skipped[0]).toMatchObject({ record: '[0]', field: 'chosen.value' });
  });

  it('a JSONL line over 16 MiB is refused before it is parsed', () => {
    const line = JSON.stringify({ prompt: 'p', chosen: 'a', rejected: 'b', pad: 'q'.repeat(MAX_RECORD_CHARS) });
    const r = parsePreferenceFile('long.jsonl', `${line}\n${record('A cat.')}`);
    expect(r.pairs.map((p) => p.record)).toEqual(['line 2']);
    expect(r.skipped[0]).toMatchObject({ record: 'line 1', field: '(line)' });
    expect(r.skipped[0].message).toMatch(/^long\.jsonl line 1: \(line\) has \d+ characters; a record may hold at most 16777216 \(16 MiB\)/);
    // Alone, it leaves no record to tell the format from: that line's error is thrown.
    expect(() => parsePreferenceFile('long.jsonl', line)).toThrow(/^long\.jsonl line 1: \(line\) has \d+ characters/);
  });

  it('PreferenceSet.add refuses an oversized prompt or answer, names the field, and keeps what it held', () => {
    const set = new PreferenceSet(() => 1);
    set.add({ prompt: 'Once', chosen: 'a cat', rejected: 'a dog' });
    expect(thrown(PreferenceInputError, () => set.add({ prompt: big, chosen: 'a', rejected: 'b' }))).toMatchObject({ code: 'bad-preference', field: 'prompt' });
    expect(thrown(PreferenceInputError, () => set.add({ prompt: 'p', chosen: big, rejected: 'b' })).field).toBe('chosen');
    expect(thrown(PreferenceInputError, () => set.add({ messages: [{ role: 'user', content: [{ type: 'text', text: big }] }], chosen: 'a', rejected: 'b' })).field).toBe('messages[0].content');
    expect(set.size).toBe(1);
    expect(set.add({ prompt: 'Twice', chosen: 'a cat', rejected: 'a dog' }).added).toBe(true);
    expect(set.size).toBe(2);
  });
});
