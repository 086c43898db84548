/** Feedback log → preference pairs, and the PreferenceSet's validation and de-duplication. */
import { describe, expect, it } from 'vitest';
import { CompletionConflictError, FeedbackLog, UnknownCompletionError } from '../../src/learn/feedback.ts';
import { contextKeyOf, fnv1a64, PreferenceInputError, PreferenceSet } from '../../src/learn/pairs.ts';
import type { ChatCompletion } from '../../src/engine/types.ts';

const ask = [{ role: 'user', content: 'Tell me a story about a cat.' }];
const other = [{ role: 'user', content: 'Tell me a story about a dog.' }];

/** A clock that ticks 1000 ms per call, so createdAt values are exact. */
function clock(start = 1_000_000): () => number {
  let t = start;
  return () => (t += 1000);
}

function errorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
}

describe('hashing', () => {
  it('FNV-1a 64 matches the published test vectors', () => {
    expect(fnv1a64('')).toBe('cbf29ce484222325');
    expect(fnv1a64('a')).toBe('af63dc4c8601ec8c');
    expect(fnv1a64('foobar')).toBe('85944171f73967e8');
  });

  it('context keys depend on roles and contents only; text parts equal a string', () => {
    const parts = { messages: [{ role: 'user', content: 'Tell me a story about a cat.' }] };
    expect(contextKeyOf(parts)).toBe(contextKeyOf({ messages: ask }));
    expect(contextKeyOf({ messages: ask })).not.toBe(contextKeyOf({ messages: other }));
    expect(contextKeyOf({ prompt: 'Tell me a story about a cat.' })).not.toBe(contextKeyOf({ messages: ask }));
    expect(contextKeyOf({ messages: [{ role: 'system', content: 'Tell me a story about a cat.' }] })).not.toBe(contextKeyOf({ messages: ask }));
    expect(contextKeyOf({ prompt: 'x' })).toMatch(/^ctx-[0-9a-f]{16}$/);
  });
});

describe('FeedbackLog', () => {
  it('thumbs-down, regenerate, thumbs-up on one context forms exactly one pair', () => {
    const log = new FeedbackLog(clock());
    log.recordCompletion({ completionId: 'a', messages: ask, answer: 'The dog ran.', createdAt: 10 });
    expect(log.rate('a', 'down', 20).added).toEqual([]);
    log.recordCompletion({ completionId: 'b', messages: ask, answer: 'The cat sat.', createdAt: 30 });
    const r = log.rate('b', 'up', 40);
    expect(r.added).toHaveLength(1);
    expect(r.removed).toEqual([]);
    const [pair] = log.pairs();
    expect(pair).toMatchObject({ messages: ask, chosen: 'The cat sat.', rejected: 'The dog ran.', createdAt: 40, source: 'feedback', contextKey: contextKeyOf({ messages: ask }) });
    expect(pair.id).toMatch(/^pp-[0-9a-f]{16}$/);
  });

  it('pairs only within a context; every liked answer against every disliked one', () => {
    const log = new FeedbackLog(clock());
    log.recordCompletion({ completionId: 'a', messages: ask, answer: 'A' });
    log.recordCompletion({ completionId: 'b', messages: ask, answer: 'B' });
    log.recordCompletion({ completionId: 'c', messages: ask, answer: 'C' });
    log.recordCompletion({ completionId: 'd', messages: other, answer: 'D' });
    log.rate('a', 'up');
    log.rate('d', 'down'); // other context: no pair with a
    expect(log.pairs()).toEqual([]);
    log.rate('b', 'down');
    log.rate('c', 'down');
    expect(log.pairs().map((p) => [p.chosen, p.rejected])).toEqual([['A', 'B'], ['A', 'C']]);
  });

  it('a later rating replaces the earlier one and withdraws the pairs it no longer supports', () => {
    const log = new FeedbackLog(clock());
    log.recordCompletion({ completionId: 'a', prompt: 'Once upon a time', answer: ' there was a cat.' });
    log.recordCompletion({ completionId: 'b', prompt: 'Once upon a time', answer: ' there was a dog.' });
    log.rate('a', 'up', 100);
    log.rate('b', 'down', 200);
    expect(log.pairs()).toHaveLength(1);
    const flip = log.rate('a', 'down', 300);
    expect(flip.previous).toEqual({ completionId: 'a', rating: 'up', at: 100 });
    expect(flip.removed.map((p) => p.chosen)).toEqual([' there was a cat.']);
    expect(log.pairs()).toEqual([]);
    expect(log.rating('a')).toEqual({ completionId: 'a', rating: 'down', at: 300 });
    const back = log.rate('b', 'up', 400);
    expect(back.added.map((p) => [p.chosen, p.rejected, p.createdAt, p.prompt])).toEqual([[' there was a dog.', ' there was a cat.', 400, 'Once upon a time']]);
    expect(log.ratings()).toHaveLength(2);
  });

  it('re-rating the same way does not duplicate pairs; equal answers never pair', () => {
    const log = new FeedbackLog(clock());
    log.recordCompletion({ completionId: 'a', messages: ask, answer: 'Same.' });
    log.recordCompletion({ completionId: 'b', messages: ask, answer: ' Same. ' });
    log.recordCompletion({ completionId: 'c', messages: ask, answer: 'Other.' });
    log.rate('a', 'up');
    log.rate('b', 'down');
    expect(log.pairs()).toEqual([]);
    log.rate('c', 'down');
    log.rate('c', 'down');
    log.rate('a', 'up');
    expect(log.pairs().map((p) => [p.chosen, p.rejected])).toEqual([['Same.', 'Other.']]);
  });

  it('records engine completions by their id; recording the same one twice is a no-op', () => {
    const log = new FeedbackLog(clock());
    const c = { id: 'chatcmpl-1', created: 1700000000, choices: [{ message: { role: 'assistant', content: 'Hi!' } }] } as unknown as ChatCompletion;
    const r = log.recordChatCompletion(ask, c);
    expect(r).toMatchObject({ completionId: 'chatcmpl-1', answer: 'Hi!', createdAt: 1700000000000, messages: ask });
    expect(log.recordChatCompletion(ask, c)).toBe(r);
    expect(log.completions()).toHaveLength(1);
  });

  it('typed errors name the field, and bad input leaves the log as it was', () => {
    const log = new FeedbackLog(clock());
    log.recordCompletion({ completionId: 'a', messages: ask, answer: 'A' });
    log.recordCompletion({ completionId: 'b', messages: ask, answer: 'B' });
    log.rate('a', 'up', 5);
    log.rate('b', 'down', 6);
    const before = JSON.stringify([log.completions(), log.ratings(), log.pairs()]);

    const unknown = errorOf(() => log.rate('zzz', 'up'));
    expect(unknown).toBeInstanceOf(UnknownCompletionError);
    expect(unknown).toMatchObject({ code: 'unknown-completion', field: 'completionId', completionId: 'zzz' });
    expect(errorOf(() => log.rate('a', 'meh'))).toMatchObject({ code: 'bad-preference', field: 'rating' });
    expect(errorOf(() => log.rate('a', 'down', -1))).toMatchObject({ field: 'at' });
    expect(errorOf(() => log.rate('', 'up'))).toMatchObject({ field: 'completionId' });
    expect(errorOf(() => log.recordCompletion({ completionId: 'c', messages: ask, answer: '   ' }))).toMatchObject({ field: 'answer' });
    expect(errorOf(() => log.recordCompletion({ completionId: 'c', messages: [], answer: 'x' }))).toMatchObject({ field: 'messages' });
    expect(errorOf(() => log.recordCompletion({ completionId: 'c', messages: [{ role: 'user' }], answer: 'x' }))).toMatchObject({ field: 'messages[0].content' });
    expect(errorOf(() => log.recordCompletion({ completionId: 'c', messages: ask, prompt: 'p', answer: 'x' }))).toMatchObject({ field: 'messages/prompt' });
    const conflict = errorOf(() => log.recordCompletion({ completionId: 'a', messages: ask, answer: 'changed' }));
    expect(conflict).toBeInstanceOf(CompletionConflictError);
    expect(conflict.message).toContain("'a'");
    expect(errorOf(() => log.recordCompletion({ completionId: 'a', messages: other, answer: 'A' }))).toMatchObject({ code: 'completion-conflict' });

    expect(JSON.stringify([log.completions(), log.ratings(), log.pairs()])).toBe(before);
  });
});

describe('preferences.add', () => {
  it('adds a pair directly, with no duplicates for the same (context, chosen, rejected)', () => {
    const log = new FeedbackLog(clock(0));
    const first = log.preferences.add({ messages: ask, chosen: 'The cat purred.', rejected: 'The dog barked.' });
    expect(first).toMatchObject({ added: true, changed: true, pair: { source: 'import', createdAt: 1000, chosen: 'The cat purred.' } });
    const again = log.preferences.add({ messages: [{ role: 'user', content: [{ type: 'text', text: 'Tell me a story about a cat.' }] }], chosen: 'The cat purred.', rejected: 'The dog barked.' });
    expect(again.added).toBe(false);
    expect(again.pair).toBe(first.pair);
    // Swapped answers are a different judgement, another context another pair.
    expect(log.preferences.add({ messages: ask, chosen: 'The dog barked.', rejected: 'The cat purred.' }).added).toBe(true);
    expect(log.preferences.add({ prompt: 'Tell me a story about a cat.', chosen: 'The cat purred.', rejected: 'The dog barked.' }).added).toBe(true);
    expect(log.preferences.size).toBe(3);
  });

  it('a direct pair equal to a feedback pair is kept when the ratings change', () => {
    const log = new FeedbackLog(clock());
    log.recordCompletion({ completionId: 'a', messages: ask, answer: 'A' });
    log.recordCompletion({ completionId: 'b', messages: ask, answer: 'B' });
    log.rate('a', 'up');
    log.rate('b', 'down');
    const r = log.preferences.add({ messages: ask, chosen: 'A', rejected: 'B' });
    expect(r).toMatchObject({ added: false, changed: true, pair: { source: 'import' } });
    log.rate('a', 'down');
    expect(log.pairs().map((p) => [p.chosen, p.rejected, p.source])).toEqual([['A', 'B', 'import']]);
  });

  it('rejects empty, malformed and identical answers with the field named', () => {
    const set = new PreferenceSet(() => 1);
    const cases: [unknown, string][] = [
      [{ messages: ask, chosen: 'x', rejected: 'x' }, 'chosen/rejected'],
      [{ messages: ask, chosen: ' x', rejected: 'x\n' }, 'chosen/rejected'],
      [{ messages: ask, chosen: '', rejected: 'x' }, 'chosen'],
      [{ messages: ask, chosen: 'x', rejected: 7 }, 'rejected'],
      [{ messages: ask, rejected: 'x' }, 'chosen'],
      [{ chosen: 'a', rejected: 'b' }, 'messages/prompt'],
      [{ prompt: 3, chosen: 'a', rejected: 'b' }, 'prompt'],
      [{ messages: 'hi', chosen: 'a', rejected: 'b' }, 'messages'],
      [{ messages: [{ role: '', content: 'x' }], chosen: 'a', rejected: 'b' }, 'messages[0].role'],
      [{ messages: [{ role: 'user', content: [{ type: 'image_url' }] }], chosen: 'a', rejected: 'b' }, 'messages[0].content[0]'],
      [{ messages: ask, chosen: 'a', rejected: 'b', source: 'web' }, 'source'],
      [{ messages: ask, chosen: 'a', rejected: 'b', createdAt: NaN }, 'createdAt'],
      [null, 'pair'],
    ];
    for (const [input, field] of cases) {
      const e = errorOf(() => set.add(input as never));
      expect(e, JSON.stringify(input)).toBeInstanceOf(PreferenceInputError);
      expect((e as PreferenceInputError).field).toBe(field);
      expect(e.message.startsWith(field)).toBe(true);
    }
    expect(set.size).toBe(0);
  });
});

describe('FeedbackLog.restore', () => {
  it('rebuilds completions, ratings, feedback pairs and direct pairs; bad records are skipped with a reason', () => {
    const log = new FeedbackLog(clock());
    log.recordCompletion({ completionId: 'a', messages: ask, answer: 'A', createdAt: 1 });
    log.recordCompletion({ completionId: 'b', messages: ask, answer: 'B', createdAt: 2 });
    log.rate('a', 'up', 3);
    log.rate('b', 'down', 4);
    log.preferences.add({ prompt: 'P', chosen: 'x', rejected: 'y', createdAt: 5 });
    const snap = log.snapshot();
    expect(snap.pairs).toHaveLength(1); // the feedback pair is recomputed, not stored
    const bad = { completions: [...snap.completions, { completionId: 'c', messages: ask }], ratings: [...snap.ratings, { completionId: 'nope', rating: 'up', at: 9 }], pairs: [...snap.pairs, { prompt: 'P', chosen: 'same', rejected: 'same' }] };
    const { log: back, skipped } = FeedbackLog.restore(JSON.parse(JSON.stringify(bad)));
    expect(back.pairs()).toEqual(log.pairs());
    expect(back.completions()).toEqual(log.completions());
    expect(back.ratings()).toEqual(log.ratings());
    expect(skipped.map((s) => [s.kind, s.index, s.error.code])).toEqual([
      ['completion', 2, 'bad-preference'],
      ['pair', 1, 'bad-preference'], // replayed in time order: no createdAt sorts first
      ['rating', 2, 'unknown-completion'],
    ]);
  });
});
