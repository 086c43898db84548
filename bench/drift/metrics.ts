/**
 * The alignment metrics of `mace bench drift`, per policy, over time: how the MACE paper's Figure 2
 * metrics are read in this project. Each one is tested with exact figures in
 * test/node/drift-metrics.test.ts. An empty input (no prompts, pairs, texts) is a DriftError naming
 * the field, never a silent 0 or 0.5.
 *
 * - WIN RATE (winRate): over the held-out prompts (never in the trace), the served model's answer
 *   (the policy's current adapter) against the base model's answer to the same prompt with the same
 *   seed, judged by the rule in force. Per prompt: 1 when the rule scores the served answer higher,
 *   0 when it scores the base answer higher, 0.5 on a tie; the win rate is the mean. Under a mention
 *   rule (score 1 or 0) that is exactly "1 if the rule prefers served and not base, 0 if the reverse,
 *   0.5 when both or neither are preferred"; under a wordRule (score +1 / 0 / −1) a neutral answer
 *   beats a dispreferred one. The base model against itself scores exactly 0.5 (every prompt a tie),
 *   so 0.5 is "no better than not learning".
 * - CLPD (clpd), "chosen-minus-rejected log-prob difference": over held-out pairs of the rule in
 *   force (a chosen and a rejected answer to one held-out prompt), the mean of
 *     (adapterChosen − adapterRejected) − (baseChosen − baseRejected),
 *   each a summed response log-prob (nats, the whole answer given the prompt). The paper names the
 *   metric without a formula; this is its reading here: how much more the adapter separates the
 *   chosen answer from the rejected one than the base does. 0 for the base itself (PEFT's B = 0), > 0
 *   when the adapter moved toward the preference. It is TRL's `rewards/margins` divided by β, so it
 *   does not depend on β.
 * - HELD-OUT REWARD ACCURACY (rewardAccuracy): DPO's implicit reward r = β·(adapter − base log-prob);
 *   a pair is right when r(chosen) > r(rejected), i.e. β(adapterChosen − baseChosen) >
 *   β(adapterRejected − baseRejected). `accuracy` counts an exact tie as half (0.5 for the base, every
 *   pair a tie), `strict` counts ties as wrong (TRL's `rewards/accuracies`, 0 for the base).
 * - TIME TO ADAPT (timeToAdapt): after a drift at driftT, the time until the win rate first reaches
 *   `fraction` (default 0.9) of its pre-drift level: the first point with driftT ≤ t < endT and
 *   value ≥ fraction · level gives t − driftT; null when no point does (it never recovered within the
 *   phase; or no pre-drift level). A point at driftT itself counts (it is measured under the new
 *   rule already: rules.ts).
 *   preDriftLevel: the mean of the last `window` points with t < driftT (fewer if there are fewer;
 *   null if none).
 * - TIME AVERAGE (timeAverage): a step (sample-and-hold) average: point i's value holds from its t
 *   until the next point's t (the last until t1), and the average is ∫value dt / covered time over
 *   [t0, t1]. Step, not trapezoid, because each point measures the adapter serving from that moment
 *   until the next evaluation: an adapter does not improve between versions, and interpolating
 *   would credit a sparse (periodic) policy with improvements before they happened. Time in
 *   [t0, t1] before the first point is not covered (left out of the mean); a series covering none of
 *   it is a DriftError.
 * - DISTINCT BIGRAMS (distinctBigramRatio), the collapse guard-rail: per text, distinct ÷ total word
 *   bigrams, where words are the runs of letters and digits, lower-cased (punctuation dropped); a text
 *   with fewer than two words scores 0 (a collapsed "ararar…" has no bigram); the mean over texts.
 *   It is the definition behind docs/BENCHMARKS.md's "greedy distinct word bigrams" (it reproduces
 *   run D's 0.84 → 0.68 from docs/results/run-d/train.json). 1.0 is no repeated bigram.
 */
import type { StoryRule } from '../../src/learn/stories-prefs.ts';
import { DriftError, finite } from './errors.ts';

export interface WinCounts {
  wins: number;
  ties: number;
  losses: number;
  prompts: number;
  /** (wins + ties / 2) / prompts. */
  winRate: number;
}

function checkTexts(v: unknown, field: string): asserts v is string[] {
  if (!Array.isArray(v)) throw new DriftError(field, 'must be a list of strings');
  v.forEach((t, i) => {
    if (typeof t !== 'string') throw new DriftError(`${field}[${i}]`, `must be a string, got ${typeof t}`);
  });
}

/** Wins, ties and losses of served[i] against base[i] under `rule` (see the file comment). */
export function winCounts(served: readonly string[], base: readonly string[], rule: StoryRule): WinCounts {
  checkTexts(served, 'served');
  checkTexts(base, 'base');
  if (served.length !== base.length) throw new DriftError('base', `has ${base.length} answers for ${served.length} served ones; one base answer per held-out prompt`);
  if (served.length === 0) throw new DriftError('served', 'is empty; the win rate needs at least one held-out answer');
  if (typeof rule !== 'object' || rule === null || typeof rule.score !== 'function') throw new DriftError('rule', 'must be a StoryRule');
  let wins = 0;
  let ties = 0;
  let losses = 0;
  served.forEach((s, i) => {
    const a = rule.score(s);
    const b = rule.score(base[i]);
    if (a > b) wins++;
    else if (a < b) losses++;
    else ties++;
  });
  const n = served.length;
  return { wins, ties, losses, prompts: n, winRate: (wins + ties / 2) / n };
}

/** The win rate of served answers over the base model's (ties half). */
export function winRate(served: readonly string[], base: readonly string[], rule: StoryRule): number {
  return winCounts(served, base, rule).winRate;
}

/** Summed response log-probs of one held-out pair under the adapter and under the base model. */
export interface PairLogprobRow {
  adapterChosen: number;
  adapterRejected: number;
  baseChosen: number;
  baseRejected: number;
}

const ROW_KEYS = ['adapterChosen', 'adapterRejected', 'baseChosen', 'baseRejected'] as const;

function checkRows(rows: readonly PairLogprobRow[]): void {
  if (!Array.isArray(rows)) throw new DriftError('rows', 'must be a list of { adapterChosen, adapterRejected, baseChosen, baseRejected }');
  if (rows.length === 0) throw new DriftError('rows', 'is empty; it needs at least one held-out pair');
  rows.forEach((r, i) => {
    if (typeof r !== 'object' || r === null) throw new DriftError(`rows[${i}]`, 'must be an object');
    for (const k of ROW_KEYS) finite(r[k], `rows[${i}].${k}`);
  });
}

/** One pair's chosen-minus-rejected log-prob difference, adapter relative to base. */
export function pairClpd(r: PairLogprobRow): number {
  return r.adapterChosen - r.adapterRejected - (r.baseChosen - r.baseRejected);
}

/** CLPD: mean pairClpd over held-out pairs of the rule in force. */
export function clpd(rows: readonly PairLogprobRow[]): number {
  checkRows(rows);
  return rows.reduce((s, r) => s + pairClpd(r), 0) / rows.length;
}

export interface RewardAccuracy {
  pairs: number;
  wins: number;
  ties: number;
  losses: number;
  /** (wins + ties / 2) / pairs. */
  accuracy: number;
  /** wins / pairs (TRL's rewards/accuracies). */
  strict: number;
}

/** Held-out DPO implicit-reward accuracy (see the file comment). */
export function rewardAccuracy(rows: readonly PairLogprobRow[], beta: number): RewardAccuracy {
  if (typeof beta !== 'number' || !Number.isFinite(beta) || beta <= 0) throw new DriftError('beta', `= ${String(beta)}; it must be a finite number > 0`);
  checkRows(rows);
  let wins = 0;
  let ties = 0;
  for (const r of rows) {
    const rc = beta * (r.adapterChosen - r.baseChosen);
    const rr = beta * (r.adapterRejected - r.baseRejected);
    if (rc > rr) wins++;
    else if (rc === rr) ties++;
  }
  const n = rows.length;
  return { pairs: n, wins, ties, losses: n - wins - ties, accuracy: (wins + ties / 2) / n, strict: wins / n };
}

/** One measurement of a metric at trace time t (seconds). */
export interface SeriesPoint {
  t: number;
  value: number;
}

/** Finite t and value, t non-decreasing; names the bad point. */
function checkSeries(series: readonly SeriesPoint[], field = 'series'): void {
  if (!Array.isArray(series)) throw new DriftError(field, 'must be a list of { t, value }');
  series.forEach((p, i) => {
    if (typeof p !== 'object' || p === null) throw new DriftError(`${field}[${i}]`, 'must be an object { t, value }');
    finite(p.t, `${field}[${i}].t`);
    finite(p.value, `${field}[${i}].value`);
    if (i > 0 && p.t < series[i - 1].t) throw new DriftError(`${field}[${i}].t`, `= ${p.t}; points must be in time order (previous t = ${series[i - 1].t})`);
  });
}

/** Mean of the last `window` points before driftT (fewer if fewer exist); null if none. */
export function preDriftLevel(series: readonly SeriesPoint[], driftT: number, window: number): number | null {
  checkSeries(series);
  finite(driftT, 'driftT');
  if (!Number.isInteger(window) || window < 1) throw new DriftError('window', `= ${window}; it must be an integer >= 1`);
  const before = series.filter((p) => p.t < driftT).slice(-window);
  return before.length === 0 ? null : before.reduce((s, p) => s + p.value, 0) / before.length;
}

/**
 * Seconds after driftT until the value first reaches fraction · level (the pre-drift level), looking
 * at points with driftT ≤ t < endT (endT: pass the next drift; default none); null if it never does,
 * or when level is null (no point before the drift: nothing to recover to).
 */
export function timeToAdapt(series: readonly SeriesPoint[], driftT: number, level: number | null, fraction = 0.9, endT = Infinity): number | null {
  checkSeries(series);
  finite(driftT, 'driftT');
  if (level === null) return null;
  if (finite(level, 'preDriftLevel') < 0) throw new DriftError('preDriftLevel', `= ${level}; time to adapt is defined for a level >= 0 (a win rate)`);
  if (!(fraction > 0 && fraction <= 1)) throw new DriftError('fraction', `= ${fraction}; it must be in (0, 1]`);
  if (!(endT > driftT)) throw new DriftError('endT', `= ${endT}; it must be > driftT (${driftT})`);
  const target = fraction * level;
  const hit = series.find((p) => p.t >= driftT && p.t < endT && p.value >= target);
  return hit === undefined ? null : hit.t - driftT;
}

/** Step (sample-and-hold) time average over [t0, t1] (see the file comment). */
export function timeAverage(series: readonly SeriesPoint[], t0: number, t1: number): number {
  checkSeries(series);
  finite(t0, 't0');
  if (!(finite(t1, 't1') > t0)) throw new DriftError('t1', `= ${t1}; it must be > t0 (${t0})`);
  let area = 0;
  let covered = 0;
  series.forEach((p, i) => {
    const start = Math.max(p.t, t0);
    const end = Math.min(i + 1 < series.length ? series[i + 1].t : t1, t1);
    if (end > start) {
      area += p.value * (end - start);
      covered += end - start;
    }
  });
  if (covered === 0) throw new DriftError('series', `has no point at or before t1 = ${t1} (${series.length} points): nothing covers [${t0}, ${t1}]`);
  return area / covered;
}

/** Lower-cased runs of letters and digits (the bigram metric's words). */
export function wordsOf(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
}

/** One text's distinct ÷ total word bigrams; 0 with fewer than two words. */
export function bigramRatio(text: string): number {
  const w = wordsOf(text);
  if (w.length < 2) return 0;
  const seen = new Set<string>();
  for (let i = 0; i + 1 < w.length; i++) seen.add(`${w[i]} ${w[i + 1]}`);
  return seen.size / (w.length - 1);
}

/** Mean per-text distinct-bigram ratio (docs/BENCHMARKS.md's definition). */
export function distinctBigramRatio(texts: readonly string[]): number {
  checkTexts(texts, 'texts');
  if (texts.length === 0) throw new DriftError('texts', 'is empty; the ratio needs at least one text');
  return texts.reduce((s, t) => s + bigramRatio(t), 0) / texts.length;
}
