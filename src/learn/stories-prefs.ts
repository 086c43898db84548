/**
 * Preference pairs in stories260K's own domain, for the on-device learning experiment.
 *
 * stories260K only knows children's stories, so chat preference data means nothing to it. Instead
 * the model's OWN sampled continuations of story prompts are judged by a stated, mechanical rule:
 * per prompt, continuations the rule prefers become `chosen` and ones it disprefers `rejected`.
 * After DPO on the train pairs, greedy continuations of the held-out prompts should score higher
 * under `ruleScore` than before: that is the experiment's measure of "moved toward the preference".
 *
 * DEFAULT RULE (DEFAULT_STORY_RULE): see its description below; it was picked because, measured on
 * stories260K's own samples (temperature 1, 48 tokens), both outcomes are common (figures in the
 * description and the project report).
 *
 * makeStoryThumbs is the unpaired version (for KTO): the same samples, each one labelled ALONE by
 * the same rule (preferred → thumbs-up, dispreferred → thumbs-down, neutral left out), nothing paired.
 *
 * Sampling is deterministic: sample s of prompt p uses seed `seed + p * samplesPerPrompt + s`,
 * and the held-out prompts are chosen by hash of the prompt text, so the same inputs give the same
 * pairs and the same split.
 */
import { LearnError } from './errors.ts';
import { fnv1a64 } from './pairs.ts';

export type Judgement = 'preferred' | 'dispreferred' | 'neutral';

export interface StoryRule {
  /** Short id, e.g. 'cat-over-dog'. */
  name: string;
  /** The rule in words (it goes into reports). */
  description: string;
  judge(text: string): Judgement;
  /** Higher is more preferred (mentionRule: 1 or 0; wordRule: +1, -1, or 0 when neutral); the mean over continuations measures a shift. */
  score(text: string): number;
}

/** Bad arguments of makeStoryPairs or a rule (names the field). */
export class StoryPairsError extends LearnError {
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super('bad-story-pairs', `${field} ${detail}`);
  }
}

/** A whole word (plural -s allowed), any case. */
function wordPattern(word: string): RegExp {
  if (!/^[a-z]+$/i.test(word)) throw new StoryPairsError('word', `'${word}' must be letters only`);
  return new RegExp(`\\b${word}s?\\b`, 'i');
}

/**
 * "A continuation that mentions `preferred` and not `dispreferred` beats one that mentions
 * `dispreferred` and not `preferred`"; one that mentions both or neither is neutral (unused).
 * Mentions are whole words, any case, plural -s included ('Cats' counts as 'cat').
 */
export function wordRule(preferred: string, dispreferred: string, measured = ''): StoryRule {
  const p = wordPattern(preferred);
  const d = wordPattern(dispreferred);
  if (preferred.toLowerCase() === dispreferred.toLowerCase()) throw new StoryPairsError('dispreferred', 'must differ from preferred');
  const judge = (text: string): Judgement => {
    const hp = p.test(text);
    const hd = d.test(text);
    return hp && !hd ? 'preferred' : hd && !hp ? 'dispreferred' : 'neutral';
  };
  return {
    name: `${preferred}-over-${dispreferred}`,
    description: `a continuation that mentions '${preferred}' (and not '${dispreferred}') beats one that mentions '${dispreferred}' (and not '${preferred}'); whole words, any case, plural -s included${measured}`,
    judge,
    score: (text) => ({ preferred: 1, dispreferred: -1, neutral: 0 })[judge(text)],
  };
}

/** Measured share of the default rule on stories260K (appended to its description). */
const MEASURED_PLAY = "; measured on stories260K's own samples (temperature 1, 48 tokens, 8 story prompts x 40 seeds): 107 of 320 (33%) mention it";

/**
 * "A continuation that mentions any of `forms` beats one that mentions none of them" (whole words,
 * any case). Score 1 when it mentions one, else 0, so the mean score is the share of continuations
 * that satisfy the rule.
 */
export function mentionRule(name: string, forms: readonly string[], measured = ''): StoryRule {
  if (forms.length === 0) throw new StoryPairsError('forms', 'must list at least one word');
  for (const f of forms) if (!/^[a-z]+$/i.test(f)) throw new StoryPairsError('forms', `'${f}' must be letters only`);
  const re = new RegExp(`\\b(?:${forms.join('|')})\\b`, 'i');
  const judge = (text: string): Judgement => (re.test(text) ? 'preferred' : 'dispreferred');
  return {
    name,
    description: `a continuation that mentions ${forms.map((f) => `'${f}'`).join(', ')} (whole words, any case) beats one that mentions none of them${measured}`,
    judge,
    score: (text) => (judge(text) === 'preferred' ? 1 : 0),
  };
}

/**
 * The default rule: "a continuation that mentions playing (play, plays, played, playing) beats one
 * that does not". Chosen from stories260K's own samples (temperature 1, 48 new tokens, 8 story
 * prompts x 40 seeds = 320 continuations, two independent seed sets):
 *   play/plays/played/playing: 107/320 (33%) in the second set; play/plays alone 88/320 and 90/320;
 *   per prompt between 5/40 and 23/40, so both outcomes occur on every prompt;
 *   'cat' only 7/320 and 15/320, 'dog' 20/320 and 27/320: a cat-over-dog rule would give few pairs.
 */
export const DEFAULT_STORY_RULE: StoryRule = mentionRule('mentions-play', ['play', 'plays', 'played', 'playing'], MEASURED_PLAY);

/** A text's score under `rule` (default rule: 1 if it mentions playing, else 0). */
export function ruleScore(text: string, rule: StoryRule = DEFAULT_STORY_RULE): number {
  return rule.score(text);
}

/** Mean rule score over texts (0 for none): the before/after figure of the experiment. */
export function meanRuleScore(texts: readonly string[], rule: StoryRule = DEFAULT_STORY_RULE): number {
  return texts.length === 0 ? 0 : texts.reduce((s, t) => s + rule.score(t), 0) / texts.length;
}

export interface StoryPair {
  prompt: string;
  chosen: string;
  rejected: string;
  chosenSeed: number;
  rejectedSeed: number;
}

export interface StoryPairsOptions {
  /** Sampled continuation of `prompt` (e.g. engine completions.create, temperature ~1, this seed). */
  complete: (prompt: string, seed: number) => Promise<string>;
  prompts: readonly string[];
  samplesPerPrompt: number;
  rule?: StoryRule;
  /** First seed. Default 0. */
  seed?: number;
  /** Share of prompts held out (never trained on), by prompt hash. Default 0.25; at least 1 prompt when there are 2+. */
  heldOutFraction?: number;
  /** Calls of `complete` in flight at once (the engine batches them). Default 8. */
  concurrency?: number;
  /**
   * Train prompts: each preferred continuation is paired with up to this many dispreferred ones,
   * every dispreferred one used at most once (default 1: the k-th preferred with the k-th
   * dispreferred). More pairs from the same samples; held-out prompts always pair one to one.
   */
  rejectedPerChosen?: number;
}

export interface PromptStats {
  prompt: string;
  heldOut: boolean;
  samples: number;
  preferred: number;
  dispreferred: number;
  neutral: number;
  pairs: number;
}

export interface StoryPairs {
  rule: { name: string; description: string };
  train: StoryPair[];
  heldOut: StoryPair[];
  /** Prompts held out, in the order given. */
  heldOutPrompts: string[];
  trainPrompts: string[];
  perPrompt: PromptStats[];
  totals: { samples: number; preferred: number; dispreferred: number; neutral: number };
}

/** Held-out prompts: the first round(fraction * n) (>= 1 when n >= 2) in FNV-1a order of their text. */
export function splitPrompts(prompts: readonly string[], fraction: number): Set<string> {
  if (!(fraction >= 0 && fraction < 1)) throw new StoryPairsError('heldOutFraction', `= ${fraction}; it must be in [0, 1)`);
  const unique = [...new Set(prompts)];
  let n = Math.round(fraction * unique.length);
  if (fraction > 0 && unique.length >= 2) n = Math.max(1, n);
  const ranked = unique.map((p) => [fnv1a64(p), p] as const).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return new Set(ranked.slice(0, n).map((r) => r[1]));
}

/** Run `tasks` with at most `limit` in flight; results in task order. */
async function pooled<T>(tasks: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const out = new Array<T>(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++;
      out[i] = await tasks[i]();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return out;
}

function validate(o: StoryPairsOptions): void {
  if (typeof o.complete !== 'function') throw new StoryPairsError('complete', 'must be a function (prompt, seed) => Promise<string>');
  if (!Array.isArray(o.prompts) || o.prompts.length === 0) throw new StoryPairsError('prompts', 'must be a non-empty list of strings');
  o.prompts.forEach((p, i) => {
    if (typeof p !== 'string') throw new StoryPairsError(`prompts[${i}]`, 'must be a string');
  });
  if (new Set(o.prompts).size !== o.prompts.length) throw new StoryPairsError('prompts', 'has duplicates');
  if (!Number.isInteger(o.samplesPerPrompt) || o.samplesPerPrompt < 2) throw new StoryPairsError('samplesPerPrompt', `= ${o.samplesPerPrompt}; it must be an integer >= 2`);
  if (o.seed !== undefined && !Number.isInteger(o.seed)) throw new StoryPairsError('seed', `= ${o.seed}; it must be an integer`);
  if (o.concurrency !== undefined && !(Number.isInteger(o.concurrency) && o.concurrency >= 1)) throw new StoryPairsError('concurrency', `= ${o.concurrency}; it must be an integer >= 1`);
  if (o.rejectedPerChosen !== undefined && !(Number.isInteger(o.rejectedPerChosen) && o.rejectedPerChosen >= 1)) throw new StoryPairsError('rejectedPerChosen', `= ${o.rejectedPerChosen}; it must be an integer >= 1`);
}

/**
 * Round k (0 ≤ k < m) pairs preferred sample i with dispreferred sample k·P + i (P preferred
 * samples), while there are dispreferred samples left: each preferred sample is used up to m times,
 * each dispreferred one at most once; m = 1 is the k-th with the k-th. Pairs of equal text are dropped.
 */
function pairSamples<S extends { text: string; seed: number }>(prompt: string, preferred: S[], dispreferred: S[], m: number): StoryPair[] {
  const pairs: StoryPair[] = [];
  for (let k = 0; k < m; k++) {
    for (let i = 0; i < preferred.length; i++) {
      const r = dispreferred[k * preferred.length + i];
      if (!r) return pairs;
      const c = preferred[i];
      if (c.text.trim() !== r.text.trim()) pairs.push({ prompt, chosen: c.text, rejected: r.text, chosenSeed: c.seed, rejectedSeed: r.seed });
    }
  }
  return pairs;
}

/** Every prompt's `samplesPerPrompt` continuations, in prompt order (seed base + p·n + s). */
async function sampleAll(o: StoryPairsOptions): Promise<{ text: string; seed: number }[]> {
  const base = o.seed ?? 0;
  const n = o.samplesPerPrompt;
  const tasks = o.prompts.flatMap((prompt, p) =>
    Array.from({ length: n }, (_, s) => async () => {
      const seed = base + p * n + s;
      const text = await o.complete(prompt, seed);
      if (typeof text !== 'string') throw new StoryPairsError('complete', `returned ${typeof text} for prompt ${p} seed ${seed}; it must return the continuation text`);
      return { text, seed };
    }),
  );
  return pooled(tasks, o.concurrency ?? 8);
}

/** One sampled continuation with its own label (KTO's unpaired thumbs). */
export interface StoryThumb {
  prompt: string;
  completion: string;
  /** true: the rule prefers it (thumbs-up). */
  label: boolean;
  seed: number;
}

export interface StoryThumbs {
  rule: { name: string; description: string };
  train: StoryThumb[];
  heldOut: StoryThumb[];
  heldOutPrompts: string[];
  trainPrompts: string[];
  perPrompt: PromptStats[];
  totals: StoryPairs['totals'];
}

/**
 * Sample as makeStoryPairs does (same seeds, same held-out split) and label each continuation alone:
 * preferred → true, dispreferred → false, neutral dropped. `PromptStats.pairs` counts the
 * (thumbs-up, thumbs-down) couples of the prompt (what held-out reward accuracy is measured on).
 */
export async function makeStoryThumbs(o: StoryPairsOptions): Promise<StoryThumbs> {
  validate(o);
  const rule = o.rule ?? DEFAULT_STORY_RULE;
  const n = o.samplesPerPrompt;
  const held = splitPrompts(o.prompts, o.heldOutFraction ?? 0.25);
  const samples = await sampleAll(o);
  const out: StoryThumbs = { rule: { name: rule.name, description: rule.description }, train: [], heldOut: [], heldOutPrompts: [], trainPrompts: [], perPrompt: [], totals: { samples: 0, preferred: 0, dispreferred: 0, neutral: 0 } };
  o.prompts.forEach((prompt, p) => {
    const isHeld = held.has(prompt);
    const stats = { samples: n, preferred: 0, dispreferred: 0, neutral: 0 };
    for (const s of samples.slice(p * n, (p + 1) * n)) {
      const j = rule.judge(s.text);
      stats[j]++;
      if (j !== 'neutral') (isHeld ? out.heldOut : out.train).push({ prompt, completion: s.text, label: j === 'preferred', seed: s.seed });
    }
    (isHeld ? out.heldOutPrompts : out.trainPrompts).push(prompt);
    out.perPrompt.push({ prompt, heldOut: isHeld, ...stats, pairs: stats.preferred * stats.dispreferred });
    for (const key of ['samples', 'preferred', 'dispreferred', 'neutral'] as const) out.totals[key] += stats[key];
  });
  return out;
}

/**
 * Sample `samplesPerPrompt` continuations per prompt, judge them by the rule, and pair them per
 * prompt: the k-th preferred sample with the k-th dispreferred one (sample order), so each sample
 * is used at most once and no pair repeats (with `rejectedPerChosen` m > 1, train prompts pair each
 * preferred sample with up to m dispreferred ones); pairs with equal text are dropped. Pairs of held-out
 * prompts go to `heldOut`, the rest to `train`.
 */
export async function makeStoryPairs(o: StoryPairsOptions): Promise<StoryPairs> {
  validate(o);
  const rule = o.rule ?? DEFAULT_STORY_RULE;
  const n = o.samplesPerPrompt;
  const held = splitPrompts(o.prompts, o.heldOutFraction ?? 0.25);
  const samples = await sampleAll(o);
  const out: StoryPairs = { rule: { name: rule.name, description: rule.description }, train: [], heldOut: [], heldOutPrompts: [], trainPrompts: [], perPrompt: [], totals: { samples: 0, preferred: 0, dispreferred: 0, neutral: 0 } };
  o.prompts.forEach((prompt, p) => {
    const mine = samples.slice(p * n, (p + 1) * n);
    const byJudgement = { preferred: [] as typeof mine, dispreferred: [] as typeof mine, neutral: [] as typeof mine };
    for (const s of mine) byJudgement[rule.judge(s.text)].push(s);
    const isHeld = held.has(prompt);
    const pairs = pairSamples(prompt, byJudgement.preferred, byJudgement.dispreferred, isHeld ? 1 : (o.rejectedPerChosen ?? 1));
    (isHeld ? out.heldOut : out.train).push(...pairs);
    (isHeld ? out.heldOutPrompts : out.trainPrompts).push(prompt);
    const stats = { samples: mine.length, preferred: byJudgement.preferred.length, dispreferred: byJudgement.dispreferred.length, neutral: byJudgement.neutral.length };
    out.perPrompt.push({ prompt, heldOut: isHeld, ...stats, pairs: pairs.length });
    for (const key of ['samples', 'preferred', 'dispreferred', 'neutral'] as const) out.totals[key] += stats[key];
  });
  return out;
}
