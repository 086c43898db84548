/** The drifting preference (bench/drift/rules.ts): the rules' exact judgements, the schedule, bad schedules. */
import { describe, expect, it } from 'vitest';
import { CAT_DOG_BALL_RULE, checkSchedule, defaultDrift, driftTimes, phaseIndexAt, PHASE_NAMES, ruleAt, type DriftSchedule } from '../../bench/drift/rules.ts';
import { DriftError } from '../../bench/drift/errors.ts';
import { DEFAULT_STORY_RULE, ruleScore } from '../../src/learn/stories-prefs.ts';

describe('CAT_DOG_BALL_RULE', () => {
  it('whole words, any case, the listed plurals; not inside longer words', () => {
    const texts = ['A cat sat.', 'Cats!', 'The DOG barked', 'two dogs', 'a red ball', 'BALLS everywhere', "the dog's bone", 'a ball-shaped cake', 'the catalog', 'football', 'a balloon', 'a hotdog', 'the bird flew', 'catty', ''];
    expect(texts.map((t) => CAT_DOG_BALL_RULE.judge(t))).toEqual([
      'preferred', 'preferred', 'preferred', 'preferred', 'preferred', 'preferred', 'preferred', 'preferred',
      'dispreferred', 'dispreferred', 'dispreferred', 'dispreferred', 'dispreferred', 'dispreferred', 'dispreferred',
    ]);
    expect(texts.map((t) => ruleScore(t, CAT_DOG_BALL_RULE))).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
    expect(CAT_DOG_BALL_RULE.name).toBe('mentions-cat-dog-ball');
    expect(CAT_DOG_BALL_RULE.description).toBe("a continuation that mentions 'cat', 'cats', 'dog', 'dogs', 'ball', 'balls' (whole words, any case) beats one that mentions none of them; measured on stories260K's own samples (CPU reference sampling, temperature 1, the 32 story prompts): 46 of 512 (9%) at 24 tokens x 16 seeds, 28 of 256 (11%) at 48 tokens x 8 seeds mention one");
  });

  it('overlaps the play rule: "they played ball" satisfies both', () => {
    expect([DEFAULT_STORY_RULE.judge('They played ball.'), CAT_DOG_BALL_RULE.judge('They played ball.')]).toEqual(['preferred', 'preferred']);
    expect([DEFAULT_STORY_RULE.judge('The cat slept.'), CAT_DOG_BALL_RULE.judge('Lily likes to play.')]).toEqual(['dispreferred', 'dispreferred']);
  });
});

describe('defaultDrift', () => {
  it('two phases: play from 0, cat/dog/ball from durationS / 2', () => {
    const s = defaultDrift(600);
    expect(s.durationS).toBe(600);
    expect(s.phases.map((p) => [p.name, p.startS, p.rule.name])).toEqual([
      ['mentions play', 0, 'mentions-play'],
      ['mentions a cat, dog or ball', 300, 'mentions-cat-dog-ball'],
    ]);
    expect(s.phases[0].rule).toBe(DEFAULT_STORY_RULE);
    expect(s.phases[1].rule).toBe(CAT_DOG_BALL_RULE);
    expect(driftTimes(s)).toEqual([300]);
  });

  it('returnToFirst: thirds, the third phase back to the play rule', () => {
    const s = defaultDrift(90, { returnToFirst: true });
    expect(s.phases.map((p) => [p.name, p.startS, p.rule.name])).toEqual([
      [PHASE_NAMES.play, 0, 'mentions-play'],
      [PHASE_NAMES.catDogBall, 30, 'mentions-cat-dog-ball'],
      [PHASE_NAMES.playAgain, 60, 'mentions-play'],
    ]);
    expect(PHASE_NAMES.playAgain).toBe('mentions play (return)');
    expect(driftTimes(s)).toEqual([30, 60]);
  });

  it('ruleAt: the last phase with startS <= t; a phase owns its start; past the end stays in the last', () => {
    const s = defaultDrift(90, { returnToFirst: true });
    expect([0, 29.999, 30, 59.5, 60, 89, 90, 500].map((t) => phaseIndexAt(s, t))).toEqual([0, 0, 1, 1, 2, 2, 2, 2]);
    expect(ruleAt(s, 30).rule.name).toBe('mentions-cat-dog-ball');
    expect(ruleAt(s, 12).name).toBe('mentions play');
    expect(ruleAt(defaultDrift(10), 5).name).toBe('mentions a cat, dog or ball');
  });

  it('bad durations and times are DriftErrors naming the field', () => {
    for (const d of [0, -1, NaN, Infinity]) expect(() => defaultDrift(d)).toThrow(expect.objectContaining({ field: 'durationS', code: 'bad-drift-input' }));
    const s = defaultDrift(10);
    for (const t of [-0.1, NaN, Infinity]) expect(() => ruleAt(s, t)).toThrow(expect.objectContaining({ field: 'tS' }));
  });
});

describe('checkSchedule', () => {
  const phase = (name: string, startS: number) => ({ name, startS, rule: DEFAULT_STORY_RULE });
  const bad = (s: unknown, field: string) => {
    let err: unknown;
    try {
      checkSchedule(s as DriftSchedule);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DriftError);
    expect((err as DriftError).field).toBe(field);
    return (err as DriftError).message;
  };

  it('names the field of each fault', () => {
    expect(bad({ durationS: 10, phases: [phase('a', 0), phase('b', 5), phase('c', 3)] }, 'phases[2].startS')).toBe('phases[2].startS = 3; phases must be sorted by startS, strictly increasing (phases[1].startS = 5)');
    expect(bad({ durationS: 10, phases: [phase('a', 1)] }, 'phases[0].startS')).toBe('phases[0].startS = 1; the first phase must start at 0');
    expect(bad({ durationS: 10, phases: [phase('a', 0), phase('b', NaN)] }, 'phases[1].startS')).toContain('= NaN; it must be a finite number');
    expect(bad({ durationS: 10, phases: [phase('a', 0), phase('b', 0)] }, 'phases[1].startS')).toContain('strictly increasing');
    expect(bad({ durationS: 10, phases: [phase('a', 0), phase('b', 10)] }, 'phases[1].startS')).toContain('must be < durationS (10)');
    expect(bad({ durationS: NaN, phases: [phase('a', 0)] }, 'durationS')).toContain('= NaN');
    expect(bad({ durationS: 10, phases: [] }, 'phases')).toContain('non-empty');
    expect(bad({ durationS: 10, phases: [phase('', 0)] }, 'phases[0].name')).toContain('non-empty string');
    expect(bad({ durationS: 10, phases: [{ name: 'a', startS: 0, rule: {} }] }, 'phases[0].rule')).toContain('StoryRule');
    expect(bad(null, 'schedule')).toContain('must be an object');
  });

  it('ruleAt and driftTimes validate the schedule they are given', () => {
    const unsorted = { durationS: 10, phases: [phase('a', 0), phase('b', 6), phase('c', 4)] };
    expect(() => ruleAt(unsorted, 1)).toThrow(DriftError);
    expect(() => driftTimes(unsorted)).toThrow(/phases\[2\]\.startS/);
  });
});
