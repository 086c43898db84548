/**
 * The CPU reference of the whole training loop: a LoopTrainer (what trainDpo drives) built from
 * TrainingReference (forward, DPO, backward down to each LoRA A/B) and adamwStepRef, over the same
 * flat adapter layout as the GPU (adapterLayout), initialised as createAdapter does (fillRef with
 * the same seed and offsets: bit-identical A, B = 0) and scheduled by the same lrAt.
 *
 * Why it exists: it is the spec of DpoTrainer over many steps (the GPU trainer's adapter after N
 * steps is checked against it), and on tiny models it is fast enough (a quarter of a second per
 * stories260K pair) to sweep training settings before running them on the GPU.
 */
import { ADAMW_DEFAULTS, adamwStepRef, type AdamWHyper, type AdamWRefState } from '../kernels/adamw.ts';
import { fillRef } from '../kernels/fill.ts';
import type { ModelConfig } from '../model/config.ts';
import type { HostWeights } from '../model/reference.ts';
import { adapterLayout, validateAdapterConfig, type AdapterConfig, type AdapterLayout, type HostAdapter } from './adapter.ts';
import { dpoBatch } from './dpo.ts';
import type { KtoStepMetrics } from './kto-loop.ts';
import { loraKey, TrainingReference, type KtoLogprobs, type LoraGrads, type TokenKto, type TokenPair } from './reference.ts';
import { lrAt, validateSchedule, type LrSchedule } from './schedule.ts';
import type { LoopTrainer } from './train-loop.ts';
import type { KtoLoopTrainer } from './kto-loop.ts';
import type { PairLogprobs, StepMetrics } from './trainer.ts';

export interface ReferenceTrainerOptions {
  maxTokens: number;
  beta: number;
  /** KTO's desirable_weight / undesirable_weight (default 1, 1). */
  desirableWeight?: number;
  undesirableWeight?: number;
  schedule: LrSchedule;
  adamw?: AdamWHyper;
}

/** The flat params of a fresh PEFT-style adapter, as createAdapter(…, seed) makes them on the GPU. */
export function initAdapterRef(layout: AdapterLayout, seed: number): Float32Array {
  const params = new Float32Array(layout.n);
  for (const s of layout.slices) {
    const bound = 1 / Math.sqrt(s.inDim);
    params.set(fillRef(layout.r * s.inDim, seed, { lo: -bound, hi: bound }, s.aOffset), s.aOffset);
  }
  return params;
}

export class ReferenceTrainer implements LoopTrainer, KtoLoopTrainer {
  readonly layout: AdapterLayout;
  readonly weights: { readonly config: ModelConfig };
  private state: AdamWRefState;
  private attempts = 0;

  constructor(
    readonly config: ModelConfig,
    private readonly host: HostWeights,
    readonly adapterConfig: AdapterConfig,
    seed: number,
    readonly options: ReferenceTrainerOptions,
  ) {
    validateAdapterConfig(config, adapterConfig);
    validateSchedule(options.schedule);
    this.layout = adapterLayout(config, adapterConfig);
    this.weights = { config };
    const n = this.layout.n;
    this.state = { params: initAdapterRef(this.layout, seed), m: new Float32Array(n), v: new Float32Array(n), step: 0, skipped: 0 };
  }

  /** The current adapter in PEFT shapes (copies). */
  adapter(): HostAdapter {
    const { r } = this.layout;
    const p = this.state.params;
    return {
      config: { ...this.adapterConfig },
      tensors: this.layout.slices.map((s) => ({
        layer: s.layer,
        module: s.module,
        A: p.slice(s.aOffset, s.aOffset + r * s.inDim),
        B: p.slice(s.bOffset, s.bOffset + s.outDim * r),
      })),
    };
  }

  /** The flat optimizer state (params, moments), as the GPU adapter's buffers hold it. */
  get optimizerState(): Readonly<AdamWRefState> {
    return this.state;
  }

  private model(adapter: boolean): TrainingReference {
    return new TrainingReference(this.config, this.host, adapter ? this.adapter() : null);
  }

  async logprobs(pair: TokenPair, adapter: boolean): Promise<PairLogprobs> {
    const m = this.model(adapter);
    const P = pair.prompt.length;
    return { chosen: m.responseLogprob(m.forward([...pair.prompt, ...pair.chosen]), P), rejected: m.responseLogprob(m.forward([...pair.prompt, ...pair.rejected]), P) };
  }

  referenceLogprobs(pair: TokenPair): Promise<PairLogprobs> {
    return this.logprobs(pair, false);
  }

  runStep(pair: TokenPair, ref: PairLogprobs): Promise<StepMetrics> {
    return this.runBatch([pair], [ref]);
  }

  /** Add LoRA grads (scaled) into the flat layout. */
  private addGrads(flat: Float32Array, grads: LoraGrads, scale: number): void {
    const { r } = this.layout;
    for (const s of this.layout.slices) {
      const g = grads.get(loraKey(s.layer, s.module));
      if (!g) continue;
      for (let j = 0; j < r * s.inDim; j++) flat[s.aOffset + j] += g.dA[j] * scale;
      for (let j = 0; j < s.outDim * r; j++) flat[s.bOffset + j] += g.dB[j] * scale;
    }
  }

  /** One AdamW step on flat gradients at the schedule's lr. */
  private applyStep(flat: Float32Array): { lr: number; gradNorm: number; skipped: boolean } {
    const lr = lrAt(this.options.schedule, this.attempts);
    const step = adamwStepRef(this.state, flat, lr, this.options.adamw ?? ADAMW_DEFAULTS);
    this.state = step.state;
    this.attempts++;
    return { lr, gradNorm: step.gradNorm, skipped: step.skipped };
  }

  /** One optimizer step on the mean DPO loss of `pairs` (gradients of each pair scaled by 1/N). */
  async runBatch(pairs: readonly TokenPair[], refs: readonly PairLogprobs[]): Promise<StepMetrics> {
    const model = this.model(true);
    const flat = new Float32Array(this.layout.n);
    const rows = [];
    let loss = 0;
    for (let i = 0; i < pairs.length; i++) {
      const { result, policy, grads } = model.dpo(pairs[i], refs[i], this.options.beta);
      loss += result.loss / pairs.length;
      rows.push({ policyChosen: policy.chosen, policyRejected: policy.rejected, refChosen: refs[i].chosen, refRejected: refs[i].rejected });
      this.addGrads(flat, grads, 1 / pairs.length);
    }
    const step = this.applyStep(flat);
    const { metrics } = dpoBatch(rows, this.options.beta);
    return { loss, ...metrics, grad_norm: step.gradNorm, learning_rate: step.lr, skipped: step.skipped, skipped_steps: this.state.skipped, step: this.attempts };
  }

  async ktoLogprobs(example: TokenKto, adapter: boolean): Promise<KtoLogprobs> {
    return this.model(adapter).ktoLogprobs(example);
  }

  ktoReferenceLogprobs(example: TokenKto): Promise<KtoLogprobs> {
    return this.ktoLogprobs(example, false);
  }

  runKtoStep(example: TokenKto, ref: KtoLogprobs): Promise<KtoStepMetrics> {
    return this.runKtoBatch([example], [ref]);
  }

  /** One optimizer step on the mean KTO loss of `examples` (z0 from their KL sequences, detached). */
  async runKtoBatch(examples: readonly TokenKto[], refs: readonly KtoLogprobs[]): Promise<KtoStepMetrics> {
    const { result, grads } = this.model(true).kto(examples, refs, this.ktoOptions);
    const flat = new Float32Array(this.layout.n);
    this.addGrads(flat, grads, 1); // the coefficients already carry 1/N
    const step = this.applyStep(flat);
    return { loss: result.loss, ...result.metrics, grad_norm: step.gradNorm, learning_rate: step.lr, skipped: step.skipped, skipped_steps: this.state.skipped, step: this.attempts };
  }

  get ktoOptions() {
    return { beta: this.options.beta, desirableWeight: this.options.desirableWeight, undesirableWeight: this.options.undesirableWeight };
  }
}
