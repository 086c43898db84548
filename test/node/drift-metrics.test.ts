/**
 * The drift experiment's alignment metrics (bench/drift/metrics.ts) on inputs whose every figure is
 * worked out by hand in the comments: win rate against the base, CLPD, reward accuracy (ties half
 * and strict), time to adapt, the step time average, distinct bigrams (and run D's figures).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { bigramRatio, clpd, distinctBigramRatio, pairClpd, preDriftLevel, rewardAccuracy, timeAverage, timeToAdapt, winCounts, winRate, wordsOf, type PairLogprobRow } from '../../bench/drift/metrics.ts';
import { CAT_DOG_BALL_RULE } from '../../bench/drift/rules.ts';
import { dpoBatch } from '../../src/learn/dpo.ts';
import { DEFAULT_STORY_RULE, wordRule } from '../../src/learn/stories-prefs.ts';

const PLAY = DEFAULT_STORY_RULE;

describe('winRate', () => {
  it('per prompt 1 / 0 / 0.5 (both or neither preferred), mean over prompts', () => {
    // win, loss, tie (both mention play), tie (neither)
    expect(winCounts(['They played.', 'They ran.', 'play', 'They sat.'], ['They ran.', 'They played.', 'play!', 'They ate.'], PLAY)).toEqual({ wins: 1, ties: 2, losses: 1, prompts: 4, winRate: 0.5 });
    expect(winRate(['play', 'play', 'ran'], ['ran', 'ran', 'ran'], PLAY)).toBe(2.5 / 3);
    expect(winRate(['a dog', 'a cat', 'a car'], ['play', 'Dogs', 'a bus'], CAT_DOG_BALL_RULE)).toBe(2 / 3); // win, tie, tie
  });

  it('the base against itself is exactly 0.5; all wins 1, all losses 0', () => {
    const base = ['They played.', 'They ran.', 'play ball'];
    expect(winRate(base, base, PLAY)).toBe(0.5);
    expect(winRate(['play', 'play'], ['ran', 'sat'], PLAY)).toBe(1);
    expect(winRate(['ran', 'sat'], ['play', 'play'], PLAY)).toBe(0);
  });

  it('under a wordRule the rule score decides: neutral beats dispreferred', () => {
    expect(winCounts(['a bird', 'a cat', 'a cat and a dog'], ['a dog', 'a bird', 'a bird'], wordRule('cat', 'dog'))).toEqual({ wins: 2, ties: 1, losses: 0, prompts: 3, winRate: 5 / 6 });
  });

  it('mismatched or empty lists are DriftErrors naming the field', () => {
    expect(() => winRate(['a'], ['a', 'b'], PLAY)).toThrow(expect.objectContaining({ field: 'base', message: 'base has 2 answers for 1 served ones; one base answer per held-out prompt' }));
    expect(() => winRate([], [], PLAY)).toThrow(expect.objectContaining({ field: 'served' }));
    expect(() => winRate(['a', 3 as unknown as string], ['a', 'b'], PLAY)).toThrow(expect.objectContaining({ field: 'served[1]' }));
  });
});

/** Four pairs: (adapter c − r) − (base c − r) = 3, −2, 0 (the base itself), 2. */
const ROWS: PairLogprobRow[] = [
  { adapterChosen: -10, adapterRejected: -14, baseChosen: -12, baseRejected: -13 }, // 4 − 1 = 3; rewards 2β vs −β: right
  { adapterChosen: -20, adapterRejected: -18, baseChosen: -19, baseRejected: -19 }, // −2 − 0 = −2; −β vs β: wrong
  { adapterChosen: -7, adapterRejected: -9, baseChosen: -7, baseRejected: -9 }, //     0: a tie (0 vs 0)
  { adapterChosen: -30, adapterRejected: -40, baseChosen: -31, baseRejected: -39 }, // 10 − 8 = 2; β vs −β: right
];

describe('clpd', () => {
  it('mean of (adapterChosen − adapterRejected) − (baseChosen − baseRejected)', () => {
    expect(ROWS.map(pairClpd)).toEqual([3, -2, 0, 2]);
    expect(clpd(ROWS)).toBe(0.75);
    expect(clpd([ROWS[0], ROWS[1]])).toBe(0.5);
  });

  it('0 for the base itself; it is TRL rewards/margins divided by beta', () => {
    expect(clpd([{ adapterChosen: -5, adapterRejected: -6, baseChosen: -5, baseRejected: -6 }])).toBe(0);
    const trl = dpoBatch(ROWS.map((r) => ({ policyChosen: r.adapterChosen, policyRejected: r.adapterRejected, refChosen: r.baseChosen, refRejected: r.baseRejected })), 0.5);
    expect(trl.metrics['rewards/margins']).toBe(0.5 * 0.75);
  });

  it('bad rows are DriftErrors naming the row and field', () => {
    expect(() => clpd([ROWS[0], { ...ROWS[1], baseRejected: NaN }])).toThrow(expect.objectContaining({ field: 'rows[1].baseRejected', code: 'bad-drift-input' }));
    expect(() => clpd([])).toThrow(expect.objectContaining({ field: 'rows' }));
  });
});

describe('rewardAccuracy', () => {
  it('beta(adapterChosen − baseChosen) > beta(adapterRejected − baseRejected); ties half, or strict', () => {
    expect(rewardAccuracy(ROWS, 0.1)).toEqual({ pairs: 4, wins: 2, ties: 1, losses: 1, accuracy: 0.625, strict: 0.5 });
    // Beta > 0 scales both rewards: it never changes a pair's outcome.
    expect(rewardAccuracy(ROWS, 3)).toEqual(rewardAccuracy(ROWS, 0.1));
    // strict is TRL's rewards/accuracies.
    const trl = dpoBatch(ROWS.map((r) => ({ policyChosen: r.adapterChosen, policyRejected: r.adapterRejected, refChosen: r.baseChosen, refRejected: r.baseRejected })), 0.1);
    expect(trl.metrics['rewards/accuracies']).toBe(0.5);
  });

  it('the base model (adapter = base on every pair) scores 0.5, strict 0', () => {
    const base = ROWS.map((r) => ({ adapterChosen: r.baseChosen, adapterRejected: r.baseRejected, baseChosen: r.baseChosen, baseRejected: r.baseRejected }));
    expect(rewardAccuracy(base, 0.1)).toEqual({ pairs: 4, wins: 0, ties: 4, losses: 0, accuracy: 0.5, strict: 0 });
  });

  it('beta must be finite and > 0; rows must not be empty', () => {
    for (const b of [0, -1, NaN]) expect(() => rewardAccuracy(ROWS, b)).toThrow(expect.objectContaining({ field: 'beta' }));
    expect(() => rewardAccuracy([], 0.1)).toThrow(expect.objectContaining({ field: 'rows' }));
  });
});

describe('preDriftLevel and timeToAdapt', () => {
  // Binary-exact values: pre-drift .5 .625 .75 .875, drift at 30, then .25 .5 .625 .75.
  const win = [
    { t: 0, value: 0.5 }, { t: 10, value: 0.625 }, { t: 20, value: 0.75 }, { t: 29, value: 0.875 },
    { t: 30, value: 0.25 }, { t: 40, value: 0.5 }, { t: 50, value: 0.625 }, { t: 60, value: 0.75 },
  ];

  it('preDriftLevel: mean of the last window points before the drift (fewer if fewer; null if none)', () => {
    expect(preDriftLevel(win, 30, 3)).toBe(0.75); // (.625 + .75 + .875) / 3
    expect(preDriftLevel(win, 30, 1)).toBe(0.875);
    expect(preDriftLevel(win, 15, 5)).toBe(0.5625); // only t = 0, 10 before 15
    expect(preDriftLevel(win, 0, 3)).toBeNull();
    expect(() => preDriftLevel(win, 30, 0)).toThrow(expect.objectContaining({ field: 'window' }));
  });

  it('seconds after the drift until the value first reaches fraction x level', () => {
    expect(timeToAdapt(win, 30, 0.75)).toBe(30); // target .675: first at t = 60 (.75)
    expect(timeToAdapt(win, 30, 0.75, 0.8)).toBe(20); // target .6: t = 50 (.625)
    expect(timeToAdapt(win, 30, 0.75, 0.9, 55)).toBeNull(); // never before endT
    expect(timeToAdapt(win, 30, 0.875, 1)).toBeNull();
    expect(timeToAdapt(win, 30, 0.25, 1)).toBe(0); // the point at driftT already meets it
    expect(timeToAdapt(win, 30, null)).toBeNull(); // no pre-drift level
    expect(timeToAdapt(win, 30, preDriftLevel(win, 30, 3))).toBe(30);
  });

  it('bad series and arguments are DriftErrors naming the field', () => {
    expect(() => timeToAdapt([{ t: 0, value: 1 }, { t: 5, value: 1 }, { t: 4, value: 1 }], 1, 1)).toThrow(expect.objectContaining({ field: 'series[2].t' }));
    expect(() => timeToAdapt([{ t: 0, value: NaN }], 1, 1)).toThrow(expect.objectContaining({ field: 'series[0].value' }));
    expect(() => timeToAdapt(win, 30, -0.1)).toThrow(expect.objectContaining({ field: 'preDriftLevel' }));
    expect(() => timeToAdapt(win, 30, 0.5, 0)).toThrow(expect.objectContaining({ field: 'fraction' }));
    expect(() => timeToAdapt(win, 30, 0.5, 0.9, 30)).toThrow(expect.objectContaining({ field: 'endT' }));
    expect(() => timeToAdapt(win, NaN, 0.5)).toThrow(expect.objectContaining({ field: 'driftT' }));
  });
});

describe('timeAverage (step, sample-and-hold)', () => {
  const s = [{ t: 0, value: 0.5 }, { t: 10, value: 1 }, { t: 30, value: 0 }];

  it('each value holds until the next point; the last until t1', () => {
    expect(timeAverage(s, 0, 40)).toBe(0.625); // (.5·10 + 1·20 + 0·10) / 40; a trapezoid would give 0.4375
    expect(timeAverage(s, 5, 20)).toBe(12.5 / 15); // (.5·5 + 1·10) / 15
    expect(timeAverage(s, 30, 50)).toBe(0);
    expect(timeAverage([{ t: 3, value: 0.25 }], 0, 100)).toBe(0.25);
  });

  it('time before the first point is left out; a later duplicate time wins', () => {
    expect(timeAverage(s, -10, 40)).toBe(0.625); // [−10, 0) uncovered
    expect(timeAverage([{ t: 0, value: 0.5 }, { t: 10, value: 1 }, { t: 10, value: 0.25 }], 0, 20)).toBe(0.375); // (.5·10 + .25·10) / 20
  });

  it('a series covering nothing of [t0, t1], or t1 <= t0, is a DriftError', () => {
    expect(() => timeAverage(s, -10, -1)).toThrow(expect.objectContaining({ field: 'series' }));
    expect(() => timeAverage([], 0, 1)).toThrow(expect.objectContaining({ field: 'series' }));
    expect(() => timeAverage(s, 5, 5)).toThrow(expect.objectContaining({ field: 't1' }));
  });
});

describe('distinctBigramRatio', () => {
  it('words: lower-cased runs of letters and digits; per text distinct / total bigrams; < 2 words is 0; mean', () => {
    expect(wordsOf("The cat's 2 balls, and... Dogs!")).toEqual(['the', 'cat', 's', '2', 'balls', 'and', 'dogs']);
    expect(bigramRatio('the cat sat on the cat sat')).toBe(4 / 6); // the cat, cat sat, sat on, on the (+ 2 repeats)
    expect(bigramRatio('The cat the Cat')).toBe(2 / 3); // case folded: 'the cat' twice
    expect(bigramRatio('The. Cat!')).toBe(1);
    expect(bigramRatio('arararararar')).toBe(0);
    expect(bigramRatio('')).toBe(0);
    expect(distinctBigramRatio(['the cat sat on the cat sat', 'The cat', 'ararar'])).toBe((4 / 6 + 1 + 0) / 3);
    expect(() => distinctBigramRatio([])).toThrow(expect.objectContaining({ field: 'texts' }));
  });

  it("reproduces docs/BENCHMARKS.md's run D figures (greedy distinct word bigrams 0.84 → 0.68)", () => {
    const greedy: { before: string; after: string }[] = JSON.parse(readFileSync(new URL('../../docs/results/run-d/train.json', import.meta.url), 'utf8')).stories.greedy;
    expect(greedy).toHaveLength(8);
    expect(distinctBigramRatio(greedy.map((g) => g.before)).toFixed(2)).toBe('0.84');
    expect(distinctBigramRatio(greedy.map((g) => g.after)).toFixed(2)).toBe('0.68');
  });
});
