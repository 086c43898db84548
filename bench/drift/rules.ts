/**
 * The drifting preference of `mace bench drift`: which rule the simulated user judges answers by at
 * each moment of the trace.
 *
 * THE RULES (stated here and in DEFAULT_DRIFT's phases):
 * - phase "mentions play": DEFAULT_STORY_RULE of src/learn/stories-prefs.ts, "a continuation that
 *   mentions playing (play, plays, played, playing) beats one that does not" (33% of stories260K's
 *   own samples mention it).
 * - phase "mentions a cat, dog or ball": CAT_DOG_BALL_RULE below, "a continuation that mentions
 *   cat, cats, dog, dogs, ball or balls beats one that mentions none of them". Rarer than play in
 *   the base model's text: on stories260K's own samples (bench/train-cpu.ts sampling, temperature 1,
 *   the 32 STORY_PROMPTS, seeds 1000000 + p·n + s) 46 of 512 continuations (9%) at 24 tokens mention
 *   one (play: 86, 17%; both: 10), 28 of 256 (11%) at 48 tokens (play: 53, 21%); 12 of the 32
 *   prompts had none in 16 samples at 24 tokens. So phase 2 gives fewer liked answers, and so fewer
 *   pairs, per request than phase 1, and a base win rate of 0.5 leaves room up to about 0.95.
 * Both are mentionRule rules: the continuation (the answer, never the prompt) is matched against
 * /\b(?:form|form|...)\b/i, so a mention is a whole word in any case ('Cats', 'DOG' count); plurals
 * count only because they are listed as forms (mentionRule does not add -s itself, unlike wordRule);
 * a word inside a longer word does not count ('catalog', 'football', 'balloon', 'hotdog', 'player'),
 * while a word before punctuation, an apostrophe or a hyphen does ('dog's', 'ball-shaped'). Every text
 * is 'preferred' or 'dispreferred' under a mention rule, never 'neutral'. A text can satisfy both
 * phases' rules ("they played ball"): the rules overlap, as real preferences do.
 *
 * THE SCHEDULE (defaultDrift): the trace lasts `durationS` seconds; phase 1 from 0, phase 2 from
 * durationS / 2; with returnToFirst, three phases from 0, durationS / 3 and 2·durationS / 3, the
 * third returning to the first rule (the paper's concern: does the adapter follow the user back).
 * The phase at time t is the last one whose startS ≤ t (a phase owns its start instant); a time past
 * durationS stays in the last phase (a trace may overrun its nominal length while answers finish).
 */
import { DEFAULT_STORY_RULE, mentionRule, type StoryRule } from '../../src/learn/stories-prefs.ts';
import { DriftError } from './errors.ts';

export interface DriftPhase {
  /** For reports and chart markers, e.g. 'mentions play'. */
  name: string;
  /** Trace second at which this phase's rule takes over. */
  startS: number;
  rule: StoryRule;
}

export interface DriftSchedule {
  /** Nominal length of the trace in seconds (> 0). */
  durationS: number;
  /** Sorted by startS (strictly increasing), the first at 0, every start < durationS. */
  phases: DriftPhase[];
}

/** Measured share of phase 2's rule on stories260K (appended to its description; see the file comment). */
const MEASURED_CAT_DOG_BALL = "; measured on stories260K's own samples (CPU reference sampling, temperature 1, the 32 story prompts): 46 of 512 (9%) at 24 tokens x 16 seeds, 28 of 256 (11%) at 48 tokens x 8 seeds mention one";

/** Phase 2's rule: a continuation mentioning a cat, dog or ball (whole words, any case, plural listed) wins. */
export const CAT_DOG_BALL_RULE: StoryRule = mentionRule('mentions-cat-dog-ball', ['cat', 'cats', 'dog', 'dogs', 'ball', 'balls'], MEASURED_CAT_DOG_BALL);

/** The phases' names, as reports and chart markers show them. */
export const PHASE_NAMES = Object.freeze({ play: 'mentions play', catDogBall: 'mentions a cat, dog or ball', playAgain: 'mentions play (return)' });

export interface DefaultDriftOptions {
  /** Three phases (play, cat/dog/ball, play again) at thirds instead of two at halves. Default false. */
  returnToFirst?: boolean;
}

/** The experiment's default drift (see the file comment). */
export function defaultDrift(durationS: number, o: DefaultDriftOptions = {}): DriftSchedule {
  checkDuration(durationS);
  const phases: DriftPhase[] = o.returnToFirst
    ? [
        { name: PHASE_NAMES.play, startS: 0, rule: DEFAULT_STORY_RULE },
        { name: PHASE_NAMES.catDogBall, startS: durationS / 3, rule: CAT_DOG_BALL_RULE },
        { name: PHASE_NAMES.playAgain, startS: (2 * durationS) / 3, rule: DEFAULT_STORY_RULE },
      ]
    : [
        { name: PHASE_NAMES.play, startS: 0, rule: DEFAULT_STORY_RULE },
        { name: PHASE_NAMES.catDogBall, startS: durationS / 2, rule: CAT_DOG_BALL_RULE },
      ];
  return checkSchedule({ durationS, phases });
}

function checkDuration(durationS: unknown): void {
  if (typeof durationS !== 'number' || !Number.isFinite(durationS) || durationS <= 0) throw new DriftError('durationS', `= ${String(durationS)}; it must be a finite number of seconds > 0`);
}

/**
 * Validate a schedule (returns it): durationS finite > 0; at least one phase; each phase a non-empty
 * name, a finite startS in [0, durationS) and a rule with judge and score; the first at 0; starts
 * strictly increasing (two phases at one instant would leave one of them never in force).
 */
export function checkSchedule(s: DriftSchedule): DriftSchedule {
  if (typeof s !== 'object' || s === null) throw new DriftError('schedule', 'must be an object { durationS, phases }');
  checkDuration(s.durationS);
  if (!Array.isArray(s.phases) || s.phases.length === 0) throw new DriftError('phases', 'must be a non-empty list of { name, startS, rule }');
  s.phases.forEach((p, i) => {
    const f = `phases[${i}]`;
    if (typeof p !== 'object' || p === null) throw new DriftError(f, 'must be an object { name, startS, rule }');
    if (typeof p.name !== 'string' || p.name === '') throw new DriftError(`${f}.name`, 'must be a non-empty string');
    if (typeof p.startS !== 'number' || !Number.isFinite(p.startS)) throw new DriftError(`${f}.startS`, `= ${String(p.startS)}; it must be a finite number of seconds`);
    if (i === 0 && p.startS !== 0) throw new DriftError(`${f}.startS`, `= ${p.startS}; the first phase must start at 0`);
    if (i > 0 && !(p.startS > s.phases[i - 1].startS)) throw new DriftError(`${f}.startS`, `= ${p.startS}; phases must be sorted by startS, strictly increasing (phases[${i - 1}].startS = ${s.phases[i - 1].startS})`);
    if (p.startS >= s.durationS) throw new DriftError(`${f}.startS`, `= ${p.startS}; it must be < durationS (${s.durationS})`);
    if (typeof p.rule !== 'object' || p.rule === null || typeof p.rule.judge !== 'function' || typeof p.rule.score !== 'function') throw new DriftError(`${f}.rule`, 'must be a StoryRule (judge and score functions)');
  });
  return s;
}

/** Index of the phase in force at trace second tS (the last with startS ≤ tS; tS ≥ 0, finite). */
export function phaseIndexAt(schedule: DriftSchedule, tS: number): number {
  checkSchedule(schedule);
  if (typeof tS !== 'number' || !Number.isFinite(tS) || tS < 0) throw new DriftError('tS', `= ${String(tS)}; it must be a finite number of seconds >= 0`);
  let i = 0;
  while (i + 1 < schedule.phases.length && schedule.phases[i + 1].startS <= tS) i++;
  return i;
}

/** The phase (and so the rule) in force at trace second tS. */
export function ruleAt(schedule: DriftSchedule, tS: number): DriftPhase {
  return schedule.phases[phaseIndexAt(schedule, tS)];
}

/** The drift instants: every phase start after the first (the chart's dashed markers). */
export function driftTimes(schedule: DriftSchedule): number[] {
  return checkSchedule(schedule).phases.slice(1).map((p) => p.startS);
}
