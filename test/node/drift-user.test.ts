/**
 * The simulated user (bench/drift/user.ts): its two draws per judgement (u: rate at all? v: flip?)
 * from mulberry32, stated draw by draw; neutral answers; keyed judgements; Regenerate; and how its
 * thumbs become pairs through the widget's FeedbackLog.
 */
import { describe, expect, it } from 'vitest';
import { keySeed, SimulatedUser } from '../../bench/drift/user.ts';
import { CAT_DOG_BALL_RULE } from '../../bench/drift/rules.ts';
import { FeedbackLog } from '../../src/learn/feedback.ts';
import { DEFAULT_STORY_RULE, wordRule } from '../../src/learn/stories-prefs.ts';
import { mulberry32 } from '../../src/util/prng.ts';

const PLAY = DEFAULT_STORY_RULE;

describe('SimulatedUser.assess / judge', () => {
  it('two draws per call from mulberry32(seed), in call order, whatever the outcome', () => {
    // mulberry32(7): 0.011705 0.061958 | 0.976908 0.699029 | 0.521445 0.405522 | 0.466233 0.239925 | 0.553326 0.729822 | 0.257816 0.155948
    const user = new SimulatedUser({ feedbackRate: 0.6, noise: 0.2, seed: 7 });
    const texts = ['They played.', 'They ran.', 'They ran.', 'play', 'They ran.', 'play'];
    const verdicts = texts.map((t) => user.assess(t, PLAY));
    const ref = mulberry32(7);
    for (const v of verdicts) expect(v.draws).toEqual([ref(), ref()]);
    // 1: u .012 < .6 rates; preferred → up, v .062 < .2 flips → down.  2: u .977 >= .6: no feedback.
    // 3: rates, dispreferred → down (v .406 no flip).  4: preferred → up (v .240 no flip).
    // 5: dispreferred → down.  6: preferred → up, v .156 < .2 flips → down.
    expect(verdicts.map((v) => v.rating)).toEqual(['down', null, 'down', 'up', 'down', 'down']);
    expect(verdicts.map((v) => v.flipped)).toEqual([true, false, false, false, false, true]);
    expect(verdicts.map((v) => v.willing)).toEqual([true, false, true, true, true, true]);
    expect(verdicts.map((v) => v.judgement)).toEqual(['preferred', 'dispreferred', 'dispreferred', 'preferred', 'dispreferred', 'preferred']);
    expect(user.judged).toBe(6);
    // judge() is assess().rating on the same stream: a new user with the same seed repeats it.
    const again = new SimulatedUser({ feedbackRate: 0.6, noise: 0.2, seed: 7 });
    expect(texts.map((t) => again.judge(t, PLAY))).toEqual(['down', null, 'down', 'up', 'down', 'down']);
  });

  it('the rule decides: the same draws under the drift rule', () => {
    const user = new SimulatedUser({ feedbackRate: 1, noise: 0, seed: 1 });
    expect(['They played.', 'The dog ran.', 'They played ball.', 'They sat.'].map((t) => user.judge(t, CAT_DOG_BALL_RULE))).toEqual(['down', 'up', 'up', 'down']);
  });

  it('rate 0 never rates, rate 1 always does; noise 1 always flips, noise 0 never', () => {
    const never = new SimulatedUser({ feedbackRate: 0, noise: 0, seed: 3 });
    expect(Array.from({ length: 50 }, () => never.judge('play', PLAY)).every((r) => r === null)).toBe(true);
    const liar = new SimulatedUser({ feedbackRate: 1, noise: 1, seed: 3 });
    expect(Array.from({ length: 50 }, (_, i) => liar.judge(i % 2 ? 'play' : 'run', PLAY))).toEqual(Array.from({ length: 50 }, (_, i) => (i % 2 ? 'down' : 'up')));
  });

  it('over many calls: the exact counts for seed 11, near the rates', () => {
    const user = new SimulatedUser({ feedbackRate: 0.3, noise: 0.1, seed: 11 });
    const v = Array.from({ length: 10_000 }, () => user.assess('They played.', PLAY));
    const rated = v.filter((x) => x.rating !== null);
    const flipped = rated.filter((x) => x.flipped);
    expect([rated.length, flipped.length]).toEqual([3016, 325]); // 30.2% rated, 10.8% of those flipped
    const ref = mulberry32(11);
    let r = 0;
    let fl = 0;
    for (let i = 0; i < 10_000; i++) {
      const [u, w] = [ref(), ref()];
      if (u < 0.3) [r, fl] = [r + 1, fl + (w < 0.1 ? 1 : 0)];
    }
    expect([r, fl]).toEqual([3016, 325]);
    expect(rated.every((x) => x.rating === (x.flipped ? 'down' : 'up'))).toBe(true);
  });

  it('a neutral answer (wordRule: both or neither) gets no thumb, and still takes its two draws', () => {
    const user = new SimulatedUser({ feedbackRate: 1, noise: 0, seed: 5 });
    const rule = wordRule('cat', 'dog');
    expect(['a cat', 'a dog', 'a cat and a dog', 'a bird'].map((t) => user.judge(t, rule))).toEqual(['up', 'down', null, null]);
    expect(user.assess('a bird', rule)).toMatchObject({ rating: null, judgement: 'neutral', willing: true, flipped: false });
    expect(user.judged).toBe(5);
  });

  it('keyed judgements: draws from mulberry32(keySeed(seed, request, attempt)), independent of history', () => {
    expect([keySeed(7, 0, 0), keySeed(7, 0, 1), keySeed(7, 3, 0)]).toEqual([4037132254, 4037132689, 3775434079]);
    const user = new SimulatedUser({ feedbackRate: 0.65, noise: 0.2, seed: 7 });
    const a = user.assess('play', PLAY, { request: 0, attempt: 0 }); // u .621 < .65, v .236: up
    const b = user.assess('play', PLAY, { request: 0, attempt: 1 }); // u .678 >= .65: none
    const c = user.assess('play', PLAY, { request: 3, attempt: 0 }); // u .641, v .176 < .2: flipped
    const g = mulberry32(keySeed(7, 3, 0));
    expect(c.draws).toEqual([g(), g()]);
    expect([a.rating, b.rating, c.rating]).toEqual(['up', null, 'down']);
    // Keyed calls leave the stream alone, and history does not change a keyed outcome.
    expect(user.judged).toBe(0);
    const other = new SimulatedUser({ feedbackRate: 0.65, noise: 0.2, seed: 7 });
    for (let i = 0; i < 9; i++) other.judge('x', PLAY);
    expect(other.assess('play', PLAY, { request: 3, attempt: 0 })).toEqual(c);
    expect(new SimulatedUser({ feedbackRate: 0.65, noise: 0.2, seed: 8 }).assess('play', PLAY, { request: 3, attempt: 0 }).draws).not.toEqual(c.draws);
  });

  it('bad options and inputs are DriftErrors naming the field', () => {
    const f = (o: object) => () => new SimulatedUser({ feedbackRate: 0.5, noise: 0.1, seed: 1, ...o });
    expect(f({ feedbackRate: 1.5 })).toThrow(expect.objectContaining({ field: 'feedbackRate' }));
    expect(f({ noise: -0.1 })).toThrow(expect.objectContaining({ field: 'noise' }));
    expect(f({ noise: NaN })).toThrow(expect.objectContaining({ field: 'noise' }));
    expect(f({ seed: 1.5 })).toThrow(expect.objectContaining({ field: 'seed' }));
    expect(f({ maxRegenerations: -1 })).toThrow(expect.objectContaining({ field: 'maxRegenerations' }));
    const user = new SimulatedUser({ feedbackRate: 0.5, noise: 0.1, seed: 1 });
    expect(() => user.judge(42 as unknown as string, PLAY)).toThrow(expect.objectContaining({ field: 'text' }));
    expect(() => user.judge('x', {} as typeof PLAY)).toThrow(expect.objectContaining({ field: 'rule' }));
    expect(() => user.judge('x', PLAY, { request: -1, attempt: 0 })).toThrow(expect.objectContaining({ field: 'key.request' }));
    expect(() => user.shouldRegenerate('down', 0.5)).toThrow(expect.objectContaining({ field: 'regenerationsSoFar' }));
    expect(() => user.shouldRegenerate('meh' as 'up', 0)).toThrow(expect.objectContaining({ field: 'rating' }));
  });
});

describe('shouldRegenerate and pairs', () => {
  it('only after down, while fewer than maxRegenerations (default 2) were made', () => {
    const user = new SimulatedUser({ feedbackRate: 1, noise: 0, seed: 1 });
    expect(user.maxRegenerations).toBe(2);
    expect([user.shouldRegenerate('down', 0), user.shouldRegenerate('down', 1), user.shouldRegenerate('down', 2), user.shouldRegenerate('up', 0), user.shouldRegenerate(null, 0)]).toEqual([true, true, false, false, false]);
    const patient = new SimulatedUser({ feedbackRate: 1, noise: 0, seed: 1, maxRegenerations: 0 });
    expect(patient.shouldRegenerate('down', 0)).toBe(false);
  });

  /** One request as the runner plays it: answer, thumb, Regenerate after down, through the widget's log. */
  function session(user: SimulatedUser, log: FeedbackLog, request: number, answers: string[]) {
    const ratings: (string | null)[] = [];
    for (let attempt = 0; attempt < answers.length; attempt++) {
      const id = `r${request}-${attempt}`;
      log.recordCompletion({ completionId: id, prompt: 'Tom went to the park', answer: answers[attempt], createdAt: 1000 + attempt });
      const rating = user.judge(answers[attempt], PLAY, { request, attempt });
      ratings.push(rating);
      if (rating) log.rate(id, rating, 2000 + attempt);
      if (!user.shouldRegenerate(rating, attempt)) break;
    }
    return ratings;
  }

  it('down then Regenerate then up forms one pair; up at once forms none; three downs stop after two regenerations', () => {
    const user = new SimulatedUser({ feedbackRate: 1, noise: 0, seed: 9 });
    const log = new FeedbackLog(() => 5000);
    expect(session(user, log, 0, [' and ran home.', ' and played tag.', ' unused'])).toEqual(['down', 'up']);
    expect(log.pairs().map((p) => [p.chosen, p.rejected])).toEqual([[' and played tag.', ' and ran home.']]);
    const log2 = new FeedbackLog(() => 5000);
    expect(session(user, log2, 1, [' to play.', ' unused'])).toEqual(['up']);
    expect(log2.pairs()).toEqual([]);
    const log3 = new FeedbackLog(() => 5000);
    expect(session(user, log3, 2, [' sat.', ' ran.', ' ate.', ' unused'])).toEqual(['down', 'down', 'down']);
    expect(log3.pairs()).toEqual([]);
    const log4 = new FeedbackLog(() => 5000);
    expect(session(user, log4, 3, [' sat.', ' ran.', ' played.'])).toEqual(['down', 'down', 'up']);
    expect(log4.pairs().map((p) => [p.chosen, p.rejected])).toEqual([[' played.', ' sat.'], [' played.', ' ran.']]);
  });
});
