/**
 * KTO (Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization") as TRL's
 * KTOTrainer computes it (loss_type 'kto'), for unpaired examples — one completion with a thumbs-up
 * (desirable) or thumbs-down (undesirable) label — whose completion log-probabilities have already
 * been summed over the completion tokens:
 *
 *   ρ    = log π(y|x) − log π_ref(y|x)                  the example's log-ratio
 *   z0   = max(0, mean_k (log π(y_k'|x_k) − log π_ref(y_k'|x_k)))
 *          over MISMATCHED pairs (x_k with another example's completion y_k'): TRL's KL estimate,
 *          DETACHED (no gradient flows through it; it is a reference point, not a target)
 *   loss desirable   = w_d · (1 − σ(β(ρ − z0))) = w_d · σ(β(z0 − ρ))
 *   loss undesirable = w_u · (1 − σ(β(z0 − ρ))) = w_u · σ(β(ρ − z0))
 *   ∂loss/∂ρ: desirable −w_d·β·σ(u)σ(−u) with u = β(ρ − z0); undesirable +w_u·β·σ(v)σ(−v), v = β(z0 − ρ)
 *   (∂ρ/∂ log π(y|x) = 1, so these are the gradients w.r.t. the policy's summed log-prob.)
 *
 * Over a batch the loss is the mean over its examples (TRL: losses.nanmean() over the desirable and
 * undesirable losses together), so each example's gradient carries 1/N. `1 − σ(x)` is computed as
 * σ(−x) and σ(x)σ(−x) from one exp: no cancellation and no overflow for any margin.
 *
 * Metrics under TRL's names: TRL logs per batch `rewards/chosen_sum`, `logps/chosen_sum`,
 * `count/chosen` (and the rejected ones) and `kl`, and reports rewards/chosen = sum / count; here
 * the means are given directly (NaN when the batch has no example of that label, as TRL's 0/0),
 * with TRL's reward = β·ρ (detached) and rewards/margins = rewards/chosen − rewards/rejected.
 *
 * HOW z0 IS ESTIMATED HERE (what pairs are "mismatched"): TRL builds its KL dataset once by
 * rotating completions by one inside each chunk of the dataset, so each example carries ONE fixed
 * mismatched completion, and a step's z0 is the mean over the step's examples of their KL
 * sequences. We do the same (ktoPartners: a seeded rotation over the whole set, so the partner is
 * never the example itself, even at batch size 1 where TRL's rotation would degenerate to the
 * example's own completion), so the reference log-probs of both sequences are computed once per
 * example and cached. With one example per step, z0 is that one mismatched pair's log-ratio,
 * clamped at 0: noisy, but unbiased before the clamp, and it only shifts where the sigmoid sits.
 */
import { sigmoid } from './dpo.ts';
import { LearnError } from './errors.ts';

/** A KTO input the loss cannot take (names the field). */
export class KtoInputError extends LearnError {
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super('bad-kto-input', `${field} ${detail}`);
  }
}

export interface KtoOptions {
  beta: number;
  /** TRL's desirable_weight (default 1). */
  desirableWeight?: number;
  /** TRL's undesirable_weight (default 1). */
  undesirableWeight?: number;
}

/** Summed completion log-probs of one labelled example. */
export interface KtoExampleLogprobs {
  policy: number;
  ref: number;
  /** true: desirable (thumbs-up). */
  label: boolean;
}

/** Summed log-probs of one mismatched (prompt, other completion) sequence. */
export interface KlLogprobs {
  policy: number;
  ref: number;
}

export interface KtoExampleResult {
  /** This example's weighted loss (not divided by N). */
  loss: number;
  /** ∂loss/∂policy (z0 held fixed). */
  gradPolicy: number;
  /** β·(policy − ref): TRL's reward. */
  reward: number;
}

/** TRL KTOTrainer's metric names, as means over the batch (see the file comment). */
export interface KtoMetrics {
  'rewards/chosen': number;
  'rewards/rejected': number;
  'rewards/margins': number;
  'logps/chosen': number;
  'logps/rejected': number;
  'count/chosen': number;
  'count/rejected': number;
  /** z0: the clamped, detached KL estimate the step used. */
  kl: number;
}

export interface KtoBatchResult {
  loss: number;
  /** ∂(mean loss)/∂policy per example (each example's gradient / N). */
  gradPolicy: Float64Array;
  z0: number;
  metrics: KtoMetrics;
}

function finite(v: number, field: string): void {
  if (!Number.isFinite(v)) throw new KtoInputError(field, `= ${v}; log-probs must be finite numbers`);
}

/** β and the two weights, validated, defaults applied. */
export function ktoOptions(o: KtoOptions): Required<KtoOptions> {
  if (!(Number.isFinite(o.beta) && o.beta > 0)) throw new KtoInputError('beta', `= ${o.beta}; it must be a finite number > 0`);
  const out = { beta: o.beta, desirableWeight: o.desirableWeight ?? 1, undesirableWeight: o.undesirableWeight ?? 1 };
  for (const k of ['desirableWeight', 'undesirableWeight'] as const) {
    if (!(Number.isFinite(out[k]) && out[k] >= 0)) throw new KtoInputError(k, `= ${out[k]}; it must be a finite number >= 0`);
  }
  return out;
}

/** z0 = max(0, mean over the mismatched sequences of policy − ref). */
export function ktoReferencePoint(kl: readonly KlLogprobs[]): number {
  if (kl.length === 0) throw new KtoInputError('kl', 'is empty; the KL reference point needs at least one mismatched sequence');
  let s = 0;
  kl.forEach((k, i) => {
    finite(k.policy, `kl[${i}].policy`);
    finite(k.ref, `kl[${i}].ref`);
    s += k.policy - k.ref;
  });
  return Math.max(0, s / kl.length);
}

/** One example's loss, gradient and reward at a given (detached) reference point z0. */
export function ktoExample(e: KtoExampleLogprobs, z0: number, options: KtoOptions): KtoExampleResult {
  const o = ktoOptions(options);
  finite(e.policy, 'example.policy');
  finite(e.ref, 'example.ref');
  if (!(Number.isFinite(z0) && z0 >= 0)) throw new KtoInputError('z0', `= ${z0}; it must be a finite number >= 0`);
  if (typeof e.label !== 'boolean') throw new KtoInputError('example.label', `= ${String(e.label)}; it must be true (desirable) or false (undesirable)`);
  const rho = e.policy - e.ref;
  const u = o.beta * (rho - z0); // desirable: the loss falls as u grows
  const reward = o.beta * rho;
  if (e.label) {
    const s = sigmoid(u);
    return { loss: o.desirableWeight * sigmoid(-u), gradPolicy: -o.desirableWeight * o.beta * s * (1 - s), reward };
  }
  const s = sigmoid(-u); // σ(v), v = β(z0 − ρ) = −u
  return { loss: o.undesirableWeight * sigmoid(u), gradPolicy: o.undesirableWeight * o.beta * s * (1 - s), reward };
}

/**
 * The mean KTO loss of a batch, each example's gradient of the mean, z0 and TRL's metrics. `kl` are
 * the batch's mismatched sequences (one per example here, see the file comment); `z0` overrides
 * the estimate (a caller that already computed it, or a test holding it fixed).
 */
export function ktoBatch(examples: readonly KtoExampleLogprobs[], kl: readonly KlLogprobs[], options: KtoOptions, z0?: number): KtoBatchResult {
  ktoOptions(options);
  if (examples.length === 0) throw new KtoInputError('examples', 'is empty; a KTO batch needs at least one example');
  const point = z0 ?? ktoReferencePoint(kl);
  const n = examples.length;
  const grad = new Float64Array(n);
  let loss = 0;
  const sums = { rc: 0, rr: 0, lc: 0, lr: 0, nc: 0, nr: 0 };
  examples.forEach((e, i) => {
    let r: KtoExampleResult;
    try {
      r = ktoExample(e, point, options);
    } catch (err) {
      if (err instanceof KtoInputError) throw new KtoInputError(`examples[${i}]${err.field.replace(/^example/, '')}`, err.message.slice(err.field.length + 1));
      throw err;
    }
    loss += r.loss;
    grad[i] = r.gradPolicy / n;
    if (e.label) {
      sums.rc += r.reward;
      sums.lc += e.policy;
      sums.nc++;
    } else {
      sums.rr += r.reward;
      sums.lr += e.policy;
      sums.nr++;
    }
  });
  const chosen = sums.rc / sums.nc; // NaN when there is none (TRL: 0/0)
  const rejected = sums.rr / sums.nr;
  return {
    loss: loss / n,
    gradPolicy: grad,
    z0: point,
    metrics: {
      'rewards/chosen': chosen,
      'rewards/rejected': rejected,
      'rewards/margins': chosen - rejected,
      'logps/chosen': sums.lc / sums.nc,
      'logps/rejected': sums.lr / sums.nr,
      'count/chosen': sums.nc,
      'count/rejected': sums.nr,
      kl: point,
    },
  };
}

/**
 * The fixed mismatched partner of each of n examples: a seeded permutation `order` of 0..n-1, and
 * example order[k] is paired with the completion of order[k − 1] (order[n − 1] for k = 0) — TRL's
 * rotation by one, over the whole set so that partner[i] ≠ i for every i when n ≥ 2.
 */
export function ktoPartners(n: number, rand: () => number): number[] {
  if (!(Number.isInteger(n) && n >= 2)) throw new KtoInputError('examples', `has ${n} usable examples; KTO's KL reference point needs at least 2 (an example's prompt with another's completion)`);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const partner = new Array<number>(n);
  for (let k = 0; k < n; k++) partner[order[k]] = order[(k + n - 1) % n];
  return partner;
}
