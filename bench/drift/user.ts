/**
 * The simulated user of `mace bench drift`: it reads each served answer, judges it by the rule in
 * force (rules.ts ruleAt), sometimes gives a thumb, sometimes the wrong one, and presses Regenerate
 * after a thumbs-down, which is how the widget forms pairs (src/learn/feedback.ts: within one
 * context, every liked answer against every disliked one; an answer liked at once forms no pair).
 *
 * ONE JUDGEMENT (assess / judge), with two uniform draws u then v in [0, 1):
 *   1. u ≥ feedbackRate          → no feedback (null): the user read it and moved on;
 *   2. the rule judges the text: 'preferred' → 'up', 'dispreferred' → 'down', 'neutral' → null;
 *   3. v < noise                 → the thumb is flipped (a misclick, or a user not quite sure).
 * Both draws are made on every call, whatever the outcome, so the i-th call's randomness never
 * depends on earlier texts: two policies serving different answers meet the same user decisions.
 *
 * Neutral answers get no thumb. Under a mention rule (both drift rules) no text is neutral, so this
 * never happens in the default experiment; under a wordRule ('cat' over 'dog') a text mentioning
 * both or neither says nothing about the preference, and makeStoryPairs leaves such samples unused
 * too: a thumbs-down there would teach "avoid neutral text", which the rule does not say.
 *
 * WHERE THE DRAWS COME FROM: by default one mulberry32(seed) stream, two draws per call in call
 * order. With a key { request, attempt } the two draws are the first two of
 * mulberry32(keySeed(seed, request, attempt)) instead, so the outcome for a request's n-th answer is
 * the same whatever happened before (a policy whose answers needed more regenerations earlier does
 * not shift every later decision): the runner should pass keys.
 *
 * REGENERATE: after a 'down' the user presses Regenerate while fewer than maxRegenerations (default
 * 2) regenerations of that request were made; after 'up' or no feedback they move on.
 */
import { fnv1a64 } from '../../src/learn/pairs.ts';
import type { Judgement, StoryRule } from '../../src/learn/stories-prefs.ts';
import { mulberry32 } from '../../src/util/prng.ts';
import { DriftError, unitInterval } from './errors.ts';

export type Thumb = 'up' | 'down';

export interface SimulatedUserOptions {
  /** Probability that the user gives a thumb at all, in [0, 1]. */
  feedbackRate: number;
  /** Probability that a thumb is flipped, in [0, 1] (0.5: thumbs carry no signal). */
  noise: number;
  /** Integer seed of the user's randomness. */
  seed: number;
  /** Regenerations of one request after thumbs-down (integer >= 0). Default 2. */
  maxRegenerations?: number;
}

/** Which answer of which request is judged: makes its draws independent of history. */
export interface JudgeKey {
  /** The request's index in the trace (integer >= 0). */
  request: number;
  /** 0 for the first answer, k for the k-th regeneration. */
  attempt: number;
}

/** Everything one judgement decided (what the runner logs). */
export interface Verdict {
  rating: Thumb | null;
  /** The rule's judgement of the text. */
  judgement: Judgement;
  /** u < feedbackRate: the user was willing to rate this answer. */
  willing: boolean;
  /** The thumb was flipped by noise (false when no thumb was given). */
  flipped: boolean;
  /** The two draws [u, v]. */
  draws: [number, number];
}

/** The seed of a keyed judgement: the low 32 bits of FNV-1a 64 of `${seed}/${request}/${attempt}`. */
export function keySeed(seed: number, request: number, attempt: number): number {
  return parseInt(fnv1a64(`${seed}/${request}/${attempt}`).slice(8), 16) >>> 0;
}

function nonNegativeInt(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new DriftError(field, `= ${String(v)}; it must be an integer >= 0`);
  return v;
}

export class SimulatedUser {
  readonly feedbackRate: number;
  readonly noise: number;
  readonly seed: number;
  readonly maxRegenerations: number;
  private readonly stream: () => number;
  /** Unkeyed judgements made so far (each took two draws of the stream). */
  private calls = 0;

  constructor(o: SimulatedUserOptions) {
    if (typeof o !== 'object' || o === null) throw new DriftError('options', 'must be an object { feedbackRate, noise, seed }');
    this.feedbackRate = unitInterval(o.feedbackRate, 'feedbackRate');
    this.noise = unitInterval(o.noise, 'noise');
    if (typeof o.seed !== 'number' || !Number.isInteger(o.seed)) throw new DriftError('seed', `= ${String(o.seed)}; it must be an integer`);
    this.seed = o.seed;
    this.maxRegenerations = nonNegativeInt(o.maxRegenerations ?? 2, 'maxRegenerations');
    this.stream = mulberry32(o.seed);
  }

  /** Unkeyed judgements so far. */
  get judged(): number {
    return this.calls;
  }

  /** Judge `text` by `rule` (see the file comment for the draws). */
  assess(text: string, rule: StoryRule, key?: JudgeKey): Verdict {
    if (typeof text !== 'string') throw new DriftError('text', `must be a string, got ${typeof text}`);
    if (typeof rule !== 'object' || rule === null || typeof rule.judge !== 'function') throw new DriftError('rule', 'must be a StoryRule');
    let draw: () => number;
    if (key === undefined) {
      draw = this.stream;
      this.calls++;
    } else {
      if (typeof key !== 'object' || key === null) throw new DriftError('key', 'must be { request, attempt }');
      draw = mulberry32(keySeed(this.seed, nonNegativeInt(key.request, 'key.request'), nonNegativeInt(key.attempt, 'key.attempt')));
    }
    const u = draw();
    const v = draw();
    const judgement = rule.judge(text);
    const willing = u < this.feedbackRate;
    if (!willing || judgement === 'neutral') return { rating: null, judgement, willing, flipped: false, draws: [u, v] };
    const honest: Thumb = judgement === 'preferred' ? 'up' : 'down';
    const flipped = v < this.noise;
    return { rating: flipped ? (honest === 'up' ? 'down' : 'up') : honest, judgement, willing, flipped, draws: [u, v] };
  }

  /** The thumb the user gives `text` under `rule`, or null for none. */
  judge(text: string, rule: StoryRule, key?: JudgeKey): Thumb | null {
    return this.assess(text, rule, key).rating;
  }

  /**
   * Does the user press Regenerate after giving `rating` to an answer of a request that has had
   * `regenerationsSoFar` regenerations (0 after its first answer)? Only after 'down', and only
   * while regenerationsSoFar < maxRegenerations. No draw: a user who dislikes always retries.
   */
  shouldRegenerate(rating: Thumb | null, regenerationsSoFar: number): boolean {
    if (rating !== 'up' && rating !== 'down' && rating !== null) throw new DriftError('rating', `= ${String(rating)}; it must be 'up', 'down' or null`);
    return rating === 'down' && nonNegativeInt(regenerationsSoFar, 'regenerationsSoFar') < this.maxRegenerations;
  }
}
