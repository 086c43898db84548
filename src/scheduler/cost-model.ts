/**
 * The cost model: GPU time of an iteration as a linear function of what it holds, learnt online by
 * recursive least squares (with forgetting) from each iteration's measured time: one fit for
 * inference work and one for fine-tune units (see CostModel for how a measured total is split).
 * No offline profiling: a short calibration at start seeds it and every iteration refines it.
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
  /**
   * Tokens of a batch in mixed (prefill) mode: all of its tokens when one entry has more than one
   * (the whole batch then runs the prefill kernels, its decode rows too), else 0. It lets the fit
   * price a decode row in a prefill batch above one in a decode-only batch.
   */
  mixedTokens: number;
  /** Fine-tune units' compute by kind: multiply-accumulates, millions. */
  ftForward: number;
  ftBackward: number;
  /** Head units (LM head over all rows: ∝ tokens·vocab·hidden). */
  ftHead: number;
  /** Optimizer units (∝ adapter size, fixed per model). */
  ftOptimizer: number;
  /** Kernel dispatches of fine-tune units of any kind (per-dispatch overhead: what small units cost on a CPU-class device). */
  ftDispatches: number;
  /**
   * Activation bytes fine-tune units write, millions: the memory-bound part (elementwise ops, the
   * LoRA paths' thin matmuls, the log-softmax over the vocabulary) that multiply-accumulates miss.
   */
  ftBytes: number;
  /** Fine-tune units (each is its own compute pass: a fixed cost per unit beside the per-dispatch one). */
  ftUnits: number;
}

export const FEATURE_NAMES = ['tokens', 'rows', 'attn', 'mixedTokens', 'ftForward', 'ftBackward', 'ftHead', 'ftOptimizer', 'ftDispatches', 'ftBytes', 'ftUnits'] as const satisfies readonly (keyof WorkFeatures)[];

export function zeroFeatures(): WorkFeatures {
  return { tokens: 0, rows: 0, attn: 0, mixedTokens: 0, ftForward: 0, ftBackward: 0, ftHead: 0, ftOptimizer: 0, ftDispatches: 0, ftBytes: 0, ftUnits: 0 };
}

export function addFeatures(a: WorkFeatures, b: WorkFeatures): WorkFeatures {
  const out = zeroFeatures();
  for (const k of FEATURE_NAMES) out[k] = a[k] + b[k];
  return out;
}

/** Recursive least squares with forgetting and a Huber-style error clip. */
class Rls {
  readonly w: Float64Array;
  private readonly P: Float64Array; // [n, n] inverse-covariance estimate

  constructor(
    initial: readonly number[],
    variance: number,
    private readonly forgetting: number,
    private readonly minClipMs: number,
  ) {
    const n = initial.length;
    this.w = Float64Array.from(initial);
    this.P = new Float64Array(n * n);
    for (let i = 0; i < n; i++) this.P[i * n + i] = variance;
  }

  predict(x: Float64Array): number {
    let s = 0;
    for (let i = 0; i < x.length; i++) s += this.w[i] * x[i];
    return s;
  }

  update(x: Float64Array, y: number): void {
    const n = x.length, P = this.P, lam = this.forgetting;
    const Px = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += P[i * n + j] * x[j];
      Px[i] = s;
    }
    let denom = lam;
    for (let i = 0; i < n; i++) denom += x[i] * Px[i];
    const pred = this.predict(x);
    // One outlier (a page hiccup, a late compile) moves the fit by a bounded step.
    const clip = Math.max(this.minClipMs, Math.abs(pred));
    const err = Math.max(-clip, Math.min(clip, y - pred));
    for (let i = 0; i < n; i++) this.w[i] += (Px[i] / denom) * err;
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) P[i * n + j] = (P[i * n + j] - (Px[i] * Px[j]) / denom) / lam;
  }
}

const INFERENCE_FEATURES = ['tokens', 'rows', 'attn', 'mixedTokens'] as const satisfies readonly (keyof WorkFeatures)[];
const FINETUNE_FEATURES = ['ftForward', 'ftBackward', 'ftHead', 'ftOptimizer', 'ftDispatches', 'ftBytes', 'ftUnits'] as const satisfies readonly (keyof WorkFeatures)[];

export interface CostModelOptions {
  /** Forgetting factor of RLS (1: never forget). */
  forgetting?: number;
  /** Initial weights [intercept ms, ms per unit of each of FEATURE_NAMES]; default a small guess. */
  initial?: readonly number[];
  /** Confidence in `initial` (larger: learns faster from measurements). */
  initialVariance?: number;
  /** Smallest error clip in ms (default 5); Infinity: plain least squares. */
  minClipMs?: number;
  /**
   * What the intercept is the fixed cost of: 'submission' (default; wall timing: every submission
   * pays it, fine-tune-only ones too) or 'inference' (GPU timestamps per kind: the inference pass's
   * fixed GPU cost; a fine-tune-only submission does not pay it).
   */
  intercept?: 'submission' | 'inference';
}

/** Guess before any measurement: about 1 ms per submission, 0.1 ms per token, 0.05 ms per fine-tune dispatch. */
const DEFAULT_INITIAL = [1, 0.1, 0.05, 0.01, 0, 0.1, 0.2, 0.2, 1, 0.05, 0, 0];

/**
 * Two fits: inference (a per-submission intercept + tokens, rows, attention) and fine-tuning (per
 * unit kind and its tokens, no intercept). Iterations with only one kind of work update that fit
 * with the measured time; a mixed iteration updates the fine-tune fit with what the inference fit
 * does not explain. Kept apart because in one joint fit the intercept and the fine-tune unit count
 * are collinear (a fine-tune-only iteration holds one unit and one submission), and fine-tune
 * time leaked into the intercept made every decode look slow.
 */
export class CostModel {
  private readonly inference: Rls;
  private readonly finetune: Rls;
  /** Measurements absorbed so far. */
  samples = 0;
  readonly intercept: 'submission' | 'inference';
  /** Of those, measurements that held fine-tune units (how much the fine-tune weights are backed by data). */
  finetuneSamples = 0;

  constructor(options: CostModelOptions = {}) {
    const init = options.initial ?? DEFAULT_INITIAL;
    if (init.length !== FEATURE_NAMES.length + 1) throw new RangeError(`cost model: initial weights need ${FEATURE_NAMES.length + 1} numbers (intercept + ${FEATURE_NAMES.join(', ')}), got ${init.length}`);
    const forgetting = options.forgetting ?? 0.995;
    const variance = options.initialVariance ?? 100;
    const clip = options.minClipMs ?? 5;
    this.intercept = options.intercept ?? 'submission';
    if (this.intercept !== 'submission' && this.intercept !== 'inference') throw new RangeError(`cost model: intercept = ${JSON.stringify(options.intercept)} is not 'submission' or 'inference'`);
    const at = (k: keyof WorkFeatures) => init[FEATURE_NAMES.indexOf(k as (typeof FEATURE_NAMES)[number]) + 1];
    this.inference = new Rls([init[0], ...INFERENCE_FEATURES.map(at)], variance, forgetting, clip);
    this.finetune = new Rls(FINETUNE_FEATURES.map(at), variance, forgetting, clip);
  }

  private static x(f: WorkFeatures, names: readonly (keyof WorkFeatures)[], intercept: number | null): Float64Array {
    const x = new Float64Array(names.length + (intercept === null ? 0 : 1));
    let i = 0;
    if (intercept !== null) x[i++] = intercept;
    for (const k of names) x[i++] = f[k];
    return x;
  }

  /** Predicted ms of work with these features, without the per-submission intercept; never negative. */
  marginalMs(f: WorkFeatures): number {
    const inf = Math.max(0, this.inference.predict(CostModel.x(f, INFERENCE_FEATURES, 0)));
    const ft = Math.max(0, this.finetune.predict(CostModel.x(f, FINETUNE_FEATURES, null)));
    return inf + ft;
  }

  /** Fixed cost of one submission (ms), never negative. */
  get interceptMs(): number {
    return Math.max(0, this.inference.w[0]);
  }

  /** The fixed cost a submission pays: with 'inference' intercepts only when it holds inference rows. */
  interceptFor(hasInference: boolean): number {
    return hasInference || this.intercept === 'submission' ? this.interceptMs : 0;
  }

  /** Predicted ms of a submission holding work `f`. */
  predictMs(f: WorkFeatures): number {
    return this.interceptFor(f.tokens > 0 || f.rows > 0) + this.marginalMs(f);
  }

  /** Absorb one measured submission. Non-finite or negative measurements are ignored. */
  observe(f: WorkFeatures, measuredMs: number): void {
    if (!Number.isFinite(measuredMs) || measuredMs < 0) return;
    if (!FEATURE_NAMES.every((k) => Number.isFinite(f[k]))) return;
    const hasInference = f.tokens > 0 || f.rows > 0;
    const hasFinetune = f.ftDispatches > 0;
    const xi = CostModel.x(f, INFERENCE_FEATURES, 1);
    const xf = CostModel.x(f, FINETUNE_FEATURES, null);
    if (hasFinetune && hasInference) this.finetune.update(xf, Math.max(0, measuredMs - Math.max(0, this.inference.predict(xi))));
    else if (hasFinetune) this.finetune.update(xf, measuredMs);
    else this.inference.update(xi, measuredMs);
    this.samples++;
    if (hasFinetune) this.finetuneSamples++;
  }

  /**
   * Absorb one submission timed per kind on the GPU (timestamp queries around the inference and the
   * fine-tune passes): each fit learns from its own kind's time, nothing has to be split by guess.
   * Pass null for a kind the submission did not hold.
   */
  observeByKind(inference: { f: WorkFeatures; ms: number } | null, finetune: { f: WorkFeatures; ms: number } | null): void {
    const ok = (o: { f: WorkFeatures; ms: number } | null) => o !== null && Number.isFinite(o.ms) && o.ms >= 0 && FEATURE_NAMES.every((k) => Number.isFinite(o.f[k]));
    const inf = ok(inference) ? inference : null;
    const ft = ok(finetune) && finetune!.f.ftDispatches > 0 ? finetune : null;
    if (inf) this.inference.update(CostModel.x(inf.f, INFERENCE_FEATURES, 1), inf.ms);
    if (ft) this.finetune.update(CostModel.x(ft.f, FINETUNE_FEATURES, null), ft.ms);
    if (!inf && !ft) return;
    this.samples++;
    if (ft) this.finetuneSamples++;
  }

  /** Plain copy of the weights by name (stats, tests). Fine-tune-only iterations carry their submission overhead in ftDispatches. */
  snapshot(): Record<'intercept' | keyof WorkFeatures, number> {
    const out = { intercept: this.inference.w[0] } as Record<'intercept' | keyof WorkFeatures, number>;
    INFERENCE_FEATURES.forEach((k, i) => (out[k] = this.inference.w[i + 1]));
    FINETUNE_FEATURES.forEach((k, i) => (out[k] = this.finetune.w[i]));
    return out;
  }
}
