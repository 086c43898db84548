import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ChatTemplateError, TextTokenizer, TokenizerLoadError } from '../../src/model/tokenizer.ts';

const dir = new URL('../../public/models/stories260K/', import.meta.url);
const read = (f: string) => readFileSync(new URL(f, dir), 'utf8');
const tok = TextTokenizer.load(read('tokenizer.json'), read('tokenizer_config.json'), [2]);
const reference = JSON.parse(read('reference.json')) as { output_ids_after_bos: number[]; text: string };

describe('TextTokenizer on stories260K', () => {
  it('encodes the checked prompt with BOS', () => {
    expect(tok.encode('Once upon a time')).toEqual([1, 403, 407, 261, 378]);
    expect(tok.encode('Once upon a time', false)).toEqual([403, 407, 261, 378]);
    expect(tok.bosId).toBe(1);
    expect(tok.eosIds).toEqual([2]);
  });

  it('decodes the published reference output to its text', () => {
    expect(tok.decode(reference.output_ids_after_bos).startsWith(reference.text.slice(0, 200))).toBe(true);
  });

  it('streams the same text as a whole decode, delta by delta', () => {
    const ids = reference.output_ids_after_bos;
    const dec = tok.streamDecoder();
    let text = '';
    for (const id of ids) text += dec.push(id);
    text += dec.flush();
    expect(text).toBe(tok.decode(ids));
  });

  it('keeps the leading space of a continuation when given the prompt as context', () => {
    const prompt = tok.encode('Once upon a time, a little fox');
    const next = tok.encode('Once upon a time, a little fox named Benny', false).slice(prompt.length - 1);
    const dec = tok.streamDecoder(prompt.slice(-4));
    let text = '';
    for (const id of next) text += dec.push(id);
    text += dec.flush();
    expect(text).toBe(' named Benny');
    // Without context the first token's space is lost (what a plain decode does).
    expect(tok.decode(next).startsWith('named')).toBe(true);
  });

  it('has no chat template: completion mode', () => {
    expect(tok.hasChatTemplate).toBe(false);
    expect(() => tok.applyChatTemplate([{ role: 'user', content: 'hi' }])).toThrow(ChatTemplateError);
  });
});

describe('chat templates', () => {
  const cfg = {
    ...JSON.parse(read('tokenizer_config.json')),
    chat_template: "{{ bos_token }}{% for m in messages %}{% if m.role == 'tool' %}{{ raise_exception('no tools') }}{% endif %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}",
  };
  const chat = TextTokenizer.load(read('tokenizer.json'), cfg);
  it('renders messages with the generation prompt and encodes without a second BOS', () => {
    expect(chat.applyChatTemplate([{ role: 'user', content: 'Hi' }])).toBe('<s>[user] Hi\n[assistant] ');
    const ids = chat.encodeChat([{ role: 'user', content: 'Hi' }]);
    expect(ids[0]).toBe(1);
    expect(ids[1]).not.toBe(1);
  });
  it('turns raise_exception into a typed error', () => {
    expect(() => chat.applyChatTemplate([{ role: 'tool', content: 'x' }])).toThrow('chat template: no tools');
  });
});

describe('bad tokenizer files', () => {
  it('names the file', () => {
    expect(() => TextTokenizer.load('{oops')).toThrow(TokenizerLoadError);
    expect(() => TextTokenizer.load('{oops')).toThrow(/^tokenizer.json: is not valid JSON/);
    expect(() => TextTokenizer.load({})).toThrow('tokenizer.json: has no "model" object');
    expect(() => TextTokenizer.load(read('tokenizer.json'), '[')).toThrow(/^tokenizer_config.json: is not valid JSON/);
  });
});
