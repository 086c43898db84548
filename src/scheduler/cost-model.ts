/**
 * The cost model: GPU time of an iteration as a linear function of what it holds, learnt online by
 * recursive least squares (with forgetting) from each iteration's measured time. One model over
 * all kinds, because one submission holds several kinds and only its total is measured: the fit
 * attributes the time to the features. No offline profiling: a short calibration at start seeds it
 * and every iteration refines it.
 *
 * Memory is not fitted: KV blocks and arena tokens are exact bookkeeping (see planner.ts).
 */

/** The features of a piece of work (summed over a plan's items; all linear in the work). */
export interface WorkFeatures {
  /** Inference tokens run (prefill chunk tokens + decode rows). */
  tokens: number;
  /** Inference rows (sequences) in the batch. */
  rows: number;
  /** Attention work of inference rows: Σ count·(context after the chunk), in thousands. */
  attn: number;
  /** Fine-tune units by kind, each weighted by its (bucketed) tokens. */
  ftForward: number;
  ftBackward: number;
  /** Head units (LM head over all rows: ∝ tokens·vocab). */
  ftHead: number;
  /** Optimizer units (∝ adapter size, fixed per model). */
  ftOptimizer: number;
  /** Fine-tune units of any kind (per-unit dispatch overhead). */
  ftUnits: number;
}

export const FEATURE_NAMES = ['tokens', 'rows', 'attn', 'ftForward', 'ftBackward', 'ftHead', 'ftOptimizer', 'ftUnits'] as const satisfies readonly (keyof WorkFeatures)[];
/** Weights: [intercept, ...one per feature]. */
const DIM = FEATURE_NAMES.length + 1;

export function zeroFeatures(): WorkFeatures {
  return { tokens: 0, rows: 0, attn: 0, ftForward: 0, ftBackward: 0, ftHead: 0, ftOptimizer: 0, ftUnits: 0 };
}

export function addFeatures(a: WorkFeatures, b: WorkFeatures): WorkFeatures {
  const out = zeroFeatures();
  for (const k of FEATURE_NAMES) out[k] = a[k] + b[k];
  return out;
}

function vector(f: WorkFeatures): Float64Array {
  const x = new Float64Array(DIM);
  x[0] = 1;
  FEATURE_NAMES.forEach((k, i) => (x[i + 1] = f[k]));
  return x;
}

export interface CostModelOptions {
  /** Forgetting factor of RLS (1: never forget). */
  forgetting?: number;
  /** Initial weights [intercept ms, ms per unit of each feature]; default a small guess. */
  initial?: readonly number[];
  /** Confidence in `initial` (larger: learns faster from measurements). */
  initialVariance?: number;
  /** Smallest error clip in ms (default 5); Infinity: plain least squares. */
  minClipMs?: number;
}

/** Guess before any measurement: about 1 ms per submission, 0.1 ms per token or unit. */
const DEFAULT_INITIAL = [1, 0.1, 0.05, 0.01, 0.1, 0.2, 0.2, 1, 0.2];

export class CostModel {
  /** Current weights (ms): [intercept, per feature]. */
  readonly w: Float64Array;
  private readonly P: Float64Array; // [DIM, DIM] inverse-covariance estimate of RLS
  private readonly forgetting: number;
  /** Measurements absorbed so far. */
  samples = 0;
  /** Of those, measurements that held fine-tune units (how much the fine-tune weights are backed by data). */
  finetuneSamples = 0;
  /** Smallest error clip (ms): an error beyond max(this, |prediction|) counts as that much. */
  private readonly minClipMs: number;

  constructor(options: CostModelOptions = {}) {
    this.forgetting = options.forgetting ?? 0.995;
    this.minClipMs = options.minClipMs ?? 5;
    const init = options.initial ?? DEFAULT_INITIAL;
    if (init.length !== DIM) throw new RangeError(`cost model: initial weights need ${DIM} numbers (intercept + ${FEATURE_NAMES.join(', ')}), got ${init.length}`);
    this.w = Float64Array.from(init);
    this.P = new Float64Array(DIM * DIM);
    const v = options.initialVariance ?? 100;
    for (let i = 0; i < DIM; i++) this.P[i * DIM + i] = v;
  }

  /** Predicted ms of work with these features, without the per-submission intercept; never negative. */
  marginalMs(f: WorkFeatures): number {
    let s = 0;
    FEATURE_NAMES.forEach((k, i) => (s += this.w[i + 1] * f[k]));
    return Math.max(0, s);
  }

  /** Fixed cost of one submission (ms), never negative. */
  get interceptMs(): number {
    return Math.max(0, this.w[0]);
  }

  /** Predicted ms of a submission holding work `f`. */
  predictMs(f: WorkFeatures): number {
    return this.interceptMs + this.marginalMs(f);
  }

  /** Absorb one measured submission (RLS update). Non-finite or negative measurements are ignored. */
  observe(f: WorkFeatures, measuredMs: number): void {
    if (!Number.isFinite(measuredMs) || measuredMs < 0) return;
    const x = vector(f);
    if (!x.every(Number.isFinite)) return;
    const n = DIM, P = this.P, lam = this.forgetting;
    const Px = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += P[i * n + j] * x[j];
      Px[i] = s;
    }
    let denom = lam;
    for (let i = 0; i < n; i++) denom += x[i] * Px[i];
    let pred = 0;
    for (let i = 0; i < n; i++) pred += this.w[i] * x[i];
    // Huber-style clip: one outlier (a page hiccup, a late compile) moves the fit by a bounded step.
    const clip = Math.max(this.minClipMs, Math.abs(pred));
    const err = Math.max(-clip, Math.min(clip, measuredMs - pred));
    for (let i = 0; i < n; i++) this.w[i] += (Px[i] / denom) * err;
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) P[i * n + j] = (P[i * n + j] - (Px[i] * Px[j]) / denom) / lam;
    this.samples++;
    if (f.ftUnits > 0) this.finetuneSamples++;
  }

  /** Plain copy of the weights by name (stats, tests). */
  snapshot(): Record<'intercept' | keyof WorkFeatures, number> {
    const out = { intercept: this.w[0] } as Record<'intercept' | keyof WorkFeatures, number>;
    FEATURE_NAMES.forEach((k, i) => (out[k] = this.w[i + 1]));
    return out;
  }
}
