/** The stories-domain pair generator with a fake, deterministic `complete`. */
import { describe, expect, it } from 'vitest';
import { DEFAULT_STORY_RULE, makeStoryPairs, mentionRule, meanRuleScore, ruleScore, splitPrompts, StoryPairsError, wordRule } from '../../src/learn/stories-prefs.ts';

/** Continuations chosen by seed: seed % 4 → cat, dog, both, neither. */
const TEXTS = [' the cat sat on the mat.', ' the dog ran to the park.', ' the cat and the dog played.', ' they went home.'];
const fake = (calls: [string, number][]) => async (prompt: string, seed: number) => {
  calls.push([prompt, seed]);
  return TEXTS[seed % 4];
};

describe('wordRule / ruleScore', () => {
  it('judges whole words, any case, plural -s; both or neither is neutral', () => {
    const r = wordRule('cat', 'dog');
    expect(['A cat.', 'Cats!', 'CAT', 'The dogs barked', 'A dog.', 'cat and dog', 'catalog doghouse', 'the bird'].map((t) => r.judge(t))).toEqual(['preferred', 'preferred', 'preferred', 'dispreferred', 'dispreferred', 'neutral', 'neutral', 'neutral']);
    expect([ruleScore('a cat', r), ruleScore('a dog', r), ruleScore('a cow', r)]).toEqual([1, -1, 0]);
    expect(meanRuleScore(['a cat', 'a cat', 'a dog', 'a cow'], r)).toBe(0.25);
    expect(meanRuleScore([], r)).toBe(0);
    expect(r.description).toContain("mentions 'cat'");
    expect(() => wordRule('cat', 'Cat')).toThrow(StoryPairsError);
    expect(() => wordRule('c.t', 'dog')).toThrow(/letters only/);
  });

  it('the default rule: mentioning play/plays/played/playing beats not mentioning it', () => {
    expect(DEFAULT_STORY_RULE.name).toBe('mentions-play');
    expect(DEFAULT_STORY_RULE.description).toContain("'playing'");
    expect(['They played ball.', 'Lily likes to PLAY.', 'He plays.', 'playing tag', 'a player', 'the playground', 'They ran home.'].map((t) => ruleScore(t))).toEqual([1, 1, 1, 1, 0, 0, 0]);
    expect(DEFAULT_STORY_RULE.judge('They ran home.')).toBe('dispreferred');
    expect(meanRuleScore(['They played.', 'They ran.', 'They sat.', 'play!'])).toBe(0.5);
  });

  it('mentionRule validates its words', () => {
    expect(() => mentionRule('x', [])).toThrow(StoryPairsError);
    expect(() => mentionRule('x', ['a|b'])).toThrow(/letters only/);
    expect(mentionRule('m', ['sun']).judge('The Sun rose')).toBe('preferred');
  });
});

describe('makeStoryPairs', () => {
  const prompts = ['Once upon a time', 'One day', 'Lily went', 'Tom saw', 'The sun'];

  it('samples with deterministic seeds and pairs the k-th preferred with the k-th dispreferred sample', async () => {
    const calls: [string, number][] = [];
    const r = await makeStoryPairs({ complete: fake(calls), prompts, samplesPerPrompt: 8, rule: wordRule('cat', 'dog'), seed: 100, heldOutFraction: 0.4, concurrency: 3 });
    expect(calls.map((c) => c[1]).sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => 100 + i));
    expect(calls.filter((c) => c[0] === 'One day').map((c) => c[1]).sort((a, b) => a - b)).toEqual([108, 109, 110, 111, 112, 113, 114, 115]);
    // Seeds 100..107 for prompt 0: 100%4=0 cat, 101 dog, 102 both, 103 neither, 104 cat, 105 dog, ...
    expect(r.perPrompt[0]).toMatchObject({ prompt: 'Once upon a time', samples: 8, preferred: 2, dispreferred: 2, neutral: 4, pairs: 2 });
    expect(r.totals).toEqual({ samples: 40, preferred: 10, dispreferred: 10, neutral: 20 });
    const all = [...r.train, ...r.heldOut];
    expect(all).toHaveLength(10);
    for (const p of all) {
      expect(p.chosen).toBe(TEXTS[0]);
      expect(p.rejected).toBe(TEXTS[1]);
      expect(p.rejectedSeed - p.chosenSeed).toBe(1);
    }
    expect(all.filter((p) => p.prompt === 'Once upon a time').map((p) => [p.chosenSeed, p.rejectedSeed])).toEqual([[100, 101], [104, 105]]);
  });

  it('splits by prompt, deterministically: held-out prompts never appear in train', async () => {
    const a = await makeStoryPairs({ complete: fake([]), prompts, samplesPerPrompt: 4, heldOutFraction: 0.4, rule: wordRule('cat', 'dog') });
    const b = await makeStoryPairs({ complete: fake([]), prompts: [...prompts].reverse(), samplesPerPrompt: 4, heldOutFraction: 0.4, rule: wordRule('cat', 'dog') });
    expect(a.heldOutPrompts).toHaveLength(2);
    expect(new Set(a.heldOutPrompts)).toEqual(new Set(b.heldOutPrompts)); // by prompt text, not position
    expect(a.heldOutPrompts).toEqual([...splitPrompts(prompts, 0.4)].sort((x, y) => prompts.indexOf(x) - prompts.indexOf(y)));
    expect(a.train.some((p) => a.heldOutPrompts.includes(p.prompt))).toBe(false);
    expect(a.heldOut.every((p) => a.heldOutPrompts.includes(p.prompt))).toBe(true);
    expect(a.trainPrompts.length + a.heldOutPrompts.length).toBe(5);
    expect(splitPrompts(['x', 'y'], 0.1).size).toBe(1); // at least one held out when there are 2+
    expect(splitPrompts(['x', 'y'], 0).size).toBe(0);
  });

  it('drops pairs whose texts are equal and uses each sample once', async () => {
    const texts = ['a cat', 'a dog', 'a cat', 'a cat', 'a dog'];
    const r = await makeStoryPairs({ complete: async (_p, s) => texts[s], prompts: ['x'], samplesPerPrompt: 5, rule: wordRule('cat', 'dog'), heldOutFraction: 0 });
    expect(r.train.map((p) => [p.chosenSeed, p.rejectedSeed])).toEqual([[0, 1], [2, 4]]);
  });

  it('rejectedPerChosen m pairs each preferred sample of a train prompt with up to m dispreferred ones, each used once; held-out prompts stay one to one', async () => {
    // Per prompt: seeds 0,1 mention cat; 2..6 mention dog.
    const texts = ['cat a', 'cat b', 'dog a', 'dog b', 'dog c', 'dog d', 'dog e'];
    const complete = async (_p: string, s: number) => texts[s % 7];
    const r = await makeStoryPairs({ complete, prompts: ['x'], samplesPerPrompt: 7, rule: wordRule('cat', 'dog'), heldOutFraction: 0, rejectedPerChosen: 3 });
    expect(r.train.map((p) => [p.chosenSeed, p.rejectedSeed])).toEqual([[0, 2], [1, 3], [0, 4], [1, 5], [0, 6]]);
    const one = await makeStoryPairs({ complete, prompts: ['x'], samplesPerPrompt: 7, rule: wordRule('cat', 'dog'), heldOutFraction: 0 });
    expect(one.train.map((p) => [p.chosenSeed, p.rejectedSeed])).toEqual([[0, 2], [1, 3]]);
    const held = await makeStoryPairs({ complete, prompts: ['x', 'y'], samplesPerPrompt: 7, rule: wordRule('cat', 'dog'), heldOutFraction: 0.5, rejectedPerChosen: 3 });
    expect(held.heldOut).toHaveLength(2);
    expect(held.train).toHaveLength(5);
  });

  it('bad arguments are typed errors naming the field', async () => {
    const ok = { complete: fake([]), prompts: ['a', 'b'], samplesPerPrompt: 2 };
    const cases: [object, string][] = [
      [{ ...ok, prompts: [] }, 'prompts'],
      [{ ...ok, prompts: ['a', 'a'] }, 'prompts'],
      [{ ...ok, prompts: ['a', 3] }, 'prompts[1]'],
      [{ ...ok, samplesPerPrompt: 1 }, 'samplesPerPrompt'],
      [{ ...ok, seed: 0.5 }, 'seed'],
      [{ ...ok, concurrency: 0 }, 'concurrency'],
      [{ ...ok, rejectedPerChosen: 0 }, 'rejectedPerChosen'],
      [{ ...ok, heldOutFraction: 1 }, 'heldOutFraction'],
      [{ ...ok, complete: 'no' }, 'complete'],
      [{ ...ok, complete: async () => 5 }, 'complete'],
    ];
    for (const [o, field] of cases) await expect(makeStoryPairs(o as never), field).rejects.toMatchObject({ code: 'bad-story-pairs', field });
  });
});
