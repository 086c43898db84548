/**
 * Sigmoid DPO (Rafailov et al. 2023) as TRL's DPOTrainer computes it, for pairs whose response
 * log-probabilities have already been summed over the response tokens:
 *
 *   z    = β·((πc − rc) − (πr − rr))          πc/πr: policy log p(chosen/rejected), rc/rr: reference
 *   loss = −log σ(z) = softplus(−z)           (stable for any z: no exp overflow, no log(0))
 *   ∂loss/∂πc = −β·σ(−z),  ∂loss/∂πr = +β·σ(−z)
 *
 * Over a batch the loss is the mean, so each pair's gradients carry a 1/N factor; the metrics are
 * TRL's, averaged over the batch, under TRL's key names (grad_norm comes from the optimizer).
 */
import { DpoInputError } from './errors.ts';

/** Summed response log-probs of one preference pair. */
export interface DpoPair {
  policyChosen: number;
  policyRejected: number;
  refChosen: number;
  refRejected: number;
}

export interface DpoPairResult {
  loss: number;
  /** ∂loss/∂policyChosen and ∂loss/∂policyRejected of this pair's own loss (not divided by N). */
  gradPolicyChosen: number;
  gradPolicyRejected: number;
  rewardChosen: number; // β(πc − rc)
  rewardRejected: number; // β(πr − rr)
}

/** TRL's metric names (DPOTrainer.get_batch_loss_metrics, without the eval_ prefix). */
export interface DpoMetrics {
  'rewards/chosen': number;
  'rewards/rejected': number;
  'rewards/margins': number;
  'rewards/accuracies': number;
  'logps/chosen': number;
  'logps/rejected': number;
}

export interface DpoBatchResult {
  /** Mean loss over the pairs. */
  loss: number;
  /** ∂(mean loss)/∂πc and ∂(mean loss)/∂πr per pair (each pair's gradient / N). */
  gradPolicyChosen: Float64Array;
  gradPolicyRejected: Float64Array;
  metrics: DpoMetrics;
}

/** softplus(x) = log(1 + eˣ) without overflow for large x or precision loss for very negative x. */
export function softplus(x: number): number {
  return Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));
}

/** σ(x) = 1 / (1 + e⁻ˣ), never computing exp of a large positive number. */
export function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

function checkBeta(beta: number): void {
  if (!(Number.isFinite(beta) && beta > 0)) throw new DpoInputError('beta', `= ${beta}; it must be a finite number > 0`);
}

function checkPair(p: DpoPair, i: number): void {
  for (const k of ['policyChosen', 'policyRejected', 'refChosen', 'refRejected'] as const) {
    if (!Number.isFinite(p[k])) throw new DpoInputError(`pairs[${i}].${k}`, `= ${p[k]}; log-probs must be finite numbers`);
  }
}

/** Loss, gradients and rewards of one pair. */
export function dpoPair(p: DpoPair, beta: number): DpoPairResult {
  checkBeta(beta);
  checkPair(p, 0);
  const rewardChosen = beta * (p.policyChosen - p.refChosen);
  const rewardRejected = beta * (p.policyRejected - p.refRejected);
  // z = β·(logratio difference); computed from the differences, as TRL does, not from the rewards.
  const z = beta * (p.policyChosen - p.refChosen - (p.policyRejected - p.refRejected));
  const s = sigmoid(-z);
  return { loss: softplus(-z), gradPolicyChosen: -beta * s, gradPolicyRejected: beta * s, rewardChosen, rewardRejected };
}

/** Mean loss, per-pair gradients of the mean, and TRL's batch metrics. */
export function dpoBatch(pairs: readonly DpoPair[], beta: number): DpoBatchResult {
  checkBeta(beta);
  if (pairs.length === 0) throw new DpoInputError('pairs', 'is empty; a DPO batch needs at least one pair');
  pairs.forEach(checkPair);
  const n = pairs.length;
  const gc = new Float64Array(n);
  const gr = new Float64Array(n);
  let loss = 0, rc = 0, rr = 0, margin = 0, acc = 0, lc = 0, lr = 0;
  pairs.forEach((p, i) => {
    const r = dpoPair(p, beta);
    loss += r.loss;
    gc[i] = r.gradPolicyChosen / n;
    gr[i] = r.gradPolicyRejected / n;
    rc += r.rewardChosen;
    rr += r.rewardRejected;
    margin += r.rewardChosen - r.rewardRejected;
    acc += r.rewardChosen > r.rewardRejected ? 1 : 0; // TRL: (chosen_rewards > rejected_rewards).float()
    lc += p.policyChosen;
    lr += p.policyRejected;
  });
  return {
    loss: loss / n,
    gradPolicyChosen: gc,
    gradPolicyRejected: gr,
    metrics: {
      'rewards/chosen': rc / n,
      'rewards/rejected': rr / n,
      'rewards/margins': margin / n,
      'rewards/accuracies': acc / n,
      'logps/chosen': lc / n,
      'logps/rejected': lr / n,
    },
  };
}
