/**
 * A conversation longer than the context (issue 13): refused by default with PromptTooLongError
 * naming the limit; with truncation 'auto' the fewest oldest messages after the leading system
 * messages are dropped so the prompt leaves the reply its room; the last message always stays, and
 * what cannot fit even then is refused. With and without a chat template (stories260K has none: its
 * messages are joined in completion mode).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { InvalidRequestError, PromptTooLongError } from '../../src/engine/errors.ts';
import { chatPromptIds, fitChatPrompt, truncationOf, type ChatCompletionMessageParam } from '../../src/model/prompt.ts';
import { TextTokenizer } from '../../src/model/tokenizer.ts';

const dir = new URL('../../public/models/stories260K/', import.meta.url);
const read = (f: string) => readFileSync(new URL(f, dir), 'utf8');
const plain = TextTokenizer.load(read('tokenizer.json'), read('tokenizer_config.json'), [2]);
const templateConfig = JSON.stringify({ ...JSON.parse(read('tokenizer_config.json')), chat_template: "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}" });
const templated = TextTokenizer.load(read('tokenizer.json'), templateConfig, [2]);

const turn = (i: number): ChatCompletionMessageParam[] => [
  { role: 'user', content: `Tell me about the cat number ${i} and the big red ball in the park.` },
  { role: 'assistant', content: `The cat number ${i} played with the big red ball all day long, and it was happy.` },
];
const chat = (turns: number): ChatCompletionMessageParam[] => [{ role: 'system', content: 'You tell short stories.' }, ...Array.from({ length: turns }, (_, i) => turn(i)).flat(), { role: 'user', content: 'And then?' }];

for (const [name, tok] of [['completion mode', plain], ['chat template', templated]] as const) {
  describe(`truncation (${name})`, () => {
    const long = chat(12);
    const full = chatPromptIds(tok, long).length;
    const bound = { maxContext: Math.floor(full / 2) };

    it("'disabled' (the default) refuses a conversation over the context, naming the limit", () => {
      expect(() => fitChatPrompt(tok, long, bound, 'disabled')).toThrow(PromptTooLongError);
      expect(() => fitChatPrompt(tok, long, bound, 'disabled')).toThrow(`the context holds ${bound.maxContext}`);
      const short = chat(1);
      expect(fitChatPrompt(tok, short, bound, 'disabled')).toEqual({ ids: chatPromptIds(tok, short), droppedMessages: 0 });
    });

    it("'auto' drops the fewest oldest messages, keeps the system message and the last one, and leaves the reply's room", () => {
      for (const reserve of [1, 20]) {
        const fit = fitChatPrompt(tok, long, bound, 'auto', reserve);
        expect(fit.ids.length).toBeLessThanOrEqual(bound.maxContext - reserve);
        const kept = [long[0], ...long.slice(1 + fit.droppedMessages)];
        expect(fit.ids).toEqual(chatPromptIds(tok, kept));
        // One message fewer dropped would not fit: the fewest.
        expect(chatPromptIds(tok, [long[0], ...long.slice(fit.droppedMessages)]).length).toBeGreaterThan(bound.maxContext - reserve);
        expect(kept[0].role).toBe('system');
        expect(kept[kept.length - 1].content).toBe('And then?');
      }
      // A conversation that fits is unchanged.
      expect(fitChatPrompt(tok, chat(1), bound, 'auto', 5)).toEqual({ ids: chatPromptIds(tok, chat(1)), droppedMessages: 0 });
    });

    it("'auto' refuses what cannot fit even with everything old dropped; an 80 MB history is dropped unread", () => {
      const huge = [{ role: 'system', content: 'You tell short stories.' }, { role: 'user', content: 'word '.repeat(2000) }];
      expect(() => fitChatPrompt(tok, huge, bound, 'auto')).toThrow(PromptTooLongError);
      const t0 = performance.now();
      const history = [{ role: 'user', content: 'x'.repeat(80_000_000) }, ...chat(2).slice(1)];
      const fit = fitChatPrompt(tok, history, bound, 'auto');
      expect(performance.now() - t0).toBeLessThan(5000); // not a timing target: it must not tokenize 80 MB
      expect(fit.droppedMessages).toBeGreaterThanOrEqual(1);
      expect(fit.ids.length).toBeLessThan(bound.maxContext);
    });
  });
}

describe('truncation values', () => {
  it("are 'auto', 'disabled', or absent; anything else names the field", () => {
    expect([truncationOf(undefined), truncationOf(null), truncationOf('disabled'), truncationOf('auto')]).toEqual(['disabled', 'disabled', 'disabled', 'auto']);
    expect(() => truncationOf('middle')).toThrow(InvalidRequestError);
    expect(() => truncationOf('middle')).toThrow('request: truncation = "middle"');
  });
});
