/**
 * DPO training of a LoRA adapter on the GPU, one preference pair per optimizer step, cut into work
 * units a scheduler can interleave with serving (each unit is at most one layer's forward or one
 * layer's backward, or a small head/embedding/optimizer unit):
 *
 *   plan(pair)          validate the pair, write its tokens and targets, return the StepPlan
 *   plan.forward        per sequence (chosen, then rejected): embed, layers 0..L-1 with LoRA, head
 *                       (final norm, LM head, token log-probs)
 *   loss(plan, ref)     read back the two sequences' response log-probs (2·T floats), DPO on the
 *                       CPU (dpoPair), write the per-position weights of the backward and the lr
 *   plan.backward       per sequence: head-backward, layers L-1..0 (dA/dB accumulate into the
 *                       adapter's grads), then the AdamW unit (clip, NaN/Inf skip, zero grads)
 *   finish(plan, loss)  read AdamW's stats → TRL's metrics
 *
 * runStep(pair, ref) drives these with a plain loop. `ref` are the reference model's (adapter off)
 * summed response log-probs: referenceLogprobs(pair) computes them with the same forward minus the
 * LoRA dispatches; the caller caches them per pair. The spec of all of it is TrainingReference.
 *
 * The pieces: the work units and their cached lists (work-units.ts, over train-units.ts's dispatches),
 * the arena (train-arena.ts) and its host-side transfers and input checks (train-arena-io.ts). A
 * sequence runs at its length bucketed to TOKEN_BUCKET (work-units.ts says why padding is exact).
 * Attention applies the model's sliding window (config.slidingWindow), as serving does.
 */
import type { GpuContext } from '../gpu/device.ts';
import { ADAMW_DEFAULTS, createAdamW, type AdamW, type AdamWHyper } from '../kernels/adamw.ts';
import { uploadRopeBackwardInvFreq } from '../kernels/rope-bwd.ts';
import { ropeInvFreq } from '../kernels/rope.ts';
import type { GpuModelWeights } from '../model/gpu-weights.ts';
import type { GpuAdapter } from './adapter.ts';
import { dpoBatch, dpoPair, type DpoMetrics, type DpoPairResult } from './dpo.ts';
import type { KtoLoopTrainer, KtoStepMetrics } from './kto-loop.ts';
import { ktoBatch, ktoExample, ktoReferencePoint, type KtoExampleResult } from './kto.ts';
import type { KtoLogprobs, TokenKto, TokenPair } from './reference.ts';
import { lrAt, validateSchedule, type LrSchedule } from './schedule.ts';
import { createTrainArena, type TrainArena } from './train-arena.ts';
import { ArenaIO, TrainerInputError, type PairLogprobs } from './train-arena-io.ts';
import { bucketedLength, SEQS, submitUnits, UNIT_GRANULARITIES, UnitLists, type KtoStepPlan, type SeqName, type StepPlan, type UnitGranularity, type WorkUnit } from './work-units.ts';

// The units and the arena's transfers live beside this file; importers take everything from here.
export { TrainerInputError, type PairLogprobs } from './train-arena-io.ts';
export { SEQS, submitUnits, TOKEN_BUCKET, UNIT_GRANULARITIES, type KtoStepPlan, type SeqName, type StepPlan, type UnitGranularity, type UnitKind, type WorkUnit } from './work-units.ts';

export interface StepLoss {
  policy: PairLogprobs;
  ref: PairLogprobs;
  result: DpoPairResult;
  lr: number;
}

/** One step's log line, under TRL's names (grad_norm and learning_rate as HF's Trainer logs them). */
export interface StepMetrics extends DpoMetrics {
  loss: number;
  grad_norm: number;
  learning_rate: number;
  /** This step was skipped: non-finite gradient norm, adapter left unchanged. */
  skipped: boolean;
  /** Steps skipped so far. */
  skipped_steps: number;
  /** Steps attempted so far, this one included (the scheduler's step count). */
  step: number;
}

export interface TrainerOptions {
  /** Most tokens of one sequence (prompt + response); the arena is sized for it. */
  maxTokens: number;
  /** DPO β (and KTO's β). */
  beta: number;
  /** KTO's desirable_weight / undesirable_weight (default 1, 1). */
  desirableWeight?: number;
  undesirableWeight?: number;
  schedule: LrSchedule;
  adamw?: AdamWHyper;
  /** Work-unit size (default 'matmul'). */
  granularity?: UnitGranularity;
}

export interface KtoStepLoss {
  policy: KtoLogprobs;
  ref: KtoLogprobs;
  label: boolean;
  z0: number;
  result: KtoExampleResult;
  lr: number;
}

/** KTO example → the pair the slots run: chosen = completion, rejected = KL completion. */
const ktoPair = (e: TokenKto): TokenPair => ({ prompt: e.prompt, chosen: e.completion, rejected: e.kl });

export class DpoTrainer implements KtoLoopTrainer {
  readonly arena: TrainArena;
  readonly optimizer: AdamW;
  private readonly negInvFreq: GPUBuffer;
  private readonly optimizerUnit: WorkUnit;
  private readonly units: UnitLists;
  private readonly io: ArenaIO;
  private attempts = 0;
  readonly granularity: UnitGranularity;
  /** Unit lists built so far (cache misses: their first run also pays set-up and shader compiles). */
  built = 0;
  private readonly countBuild = () => {
    this.built++;
  };

  constructor(
    private readonly ctx: GpuContext,
    readonly weights: GpuModelWeights,
    readonly adapter: GpuAdapter,
    readonly options: TrainerOptions,
  ) {
    const c = weights.config;
    const T = options.maxTokens;
    if (!Number.isInteger(T) || T < 2) throw new TrainerInputError('maxTokens', `= ${T}; it must be an integer >= 2 (a prompt token and a response token)`);
    if (!(Number.isFinite(options.beta) && options.beta > 0)) throw new TrainerInputError('beta', `= ${options.beta}; it must be a finite number > 0`);
    validateSchedule(options.schedule);
    const m = adapter.model;
    const same = m.nLayers === c.nLayers && m.hiddenSize === c.hiddenSize && m.intermediateSize === c.intermediateSize && m.nHeads === c.nHeads && m.nKvHeads === c.nKvHeads && m.headDim === c.headDim;
    if (!same) throw new TrainerInputError('adapter', `was made for a different model shape (${m.nLayers} layers, hidden ${m.hiddenSize}) than the weights (${c.nLayers} layers, hidden ${c.hiddenSize})`);
    // Every option is checked before the first buffer exists: a refusal leaves nothing to free.
    this.granularity = options.granularity ?? 'matmul';
    if (!UNIT_GRANULARITIES.includes(this.granularity)) throw new TrainerInputError('granularity', `= ${JSON.stringify(options.granularity)} is not one of ${UNIT_GRANULARITIES.join(', ')}`);
    this.arena = createTrainArena(ctx, c, adapter.layout.r, T);
    let negInvFreq: GPUBuffer | undefined;
    try {
      negInvFreq = uploadRopeBackwardInvFreq(ctx, ropeInvFreq(c.headDim, c.ropeTheta, c.ropeScaling)); // [headDim/2] f32
      this.optimizer = createAdamW(ctx, { params: adapter.params, grads: adapter.grads, m: adapter.m, v: adapter.v, n: adapter.layout.n }, options.adamw ?? ADAMW_DEFAULTS);
    } catch (e) {
      this.arena.destroy();
      negInvFreq?.destroy();
      throw e;
    }
    this.negInvFreq = negInvFreq;
    this.optimizerUnit = { kind: 'optimizer', dispatches: this.optimizer.dispatches, mmacs: adapter.layout.n / 1e6, bytes: 0 };
    this.units = new UnitLists({ ctx, weights, adapter, arena: this.arena, negInvFreq: this.negInvFreq }, this.granularity, this.countBuild);
    this.io = new ArenaIO(ctx, this.arena, c, options);
  }

  /** The AdamW unit that ends every step's backward. */
  get optimizerWorkUnit(): WorkUnit {
    return this.optimizerUnit;
  }

  /** Optimizer steps attempted so far (applied + skipped): the schedule's step counter. */
  get steps(): number {
    return this.attempts;
  }

  /** The length a sequence of T tokens runs at. */
  bucket(T: number): number {
    return bucketedLength(T, this.options.maxTokens);
  }

  /** Units of one sequence's forward at bucketed length Tb: embed, layers, head (built once per shape). */
  forwardUnits(seq: SeqName, Tb: number, withAdapter: boolean): WorkUnit[] {
    return this.units.forward(seq, Tb, withAdapter);
  }

  /** Units of one sequence's backward: head-backward, then layers L-1..0. */
  backwardUnits(seq: SeqName, Tb: number): WorkUnit[] {
    return this.units.backward(seq, Tb);
  }

  /** Validate the pair, upload its inputs and return the step's units. Run plan.forward before loss(). */
  plan(pair: TokenPair): StepPlan {
    const tokens = this.io.writeInputs(pair);
    const forward = SEQS.flatMap((s) => this.forwardUnits(s, this.bucket(tokens[s]), true));
    const backward = [...SEQS.flatMap((s) => this.backwardUnits(s, this.bucket(tokens[s]))), this.optimizerUnit];
    return { pair: { prompt: [...pair.prompt], chosen: [...pair.chosen], rejected: [...pair.rejected] }, tokens, forward, backward };
  }

  /** Summed response log-probs of both sequences after a forward phase ran (reads 2·T floats back). */
  pairLogprobs(tokens: Readonly<Record<SeqName, number>>, promptLen: number): Promise<PairLogprobs> {
    return this.io.pairLogprobs(tokens, promptLen);
  }

  /**
   * After plan.forward ran: the DPO loss and coefficients on the CPU, then the backward's inputs
   * (per-position weights: ∂loss/∂logp on response positions, 0 elsewhere) and this step's lr.
   */
  async loss(plan: StepPlan, ref: PairLogprobs, weight = 1): Promise<StepLoss> {
    const P = plan.pair.prompt.length;
    const policy = await this.pairLogprobs(plan.tokens, P);
    const result = dpoPair({ policyChosen: policy.chosen, policyRejected: policy.rejected, refChosen: ref.chosen, refRejected: ref.rejected }, this.options.beta);
    // weight: this pair's share of a batch's mean loss (1/N); its gradients add into the adapter's.
    const coef: Record<SeqName, number> = { chosen: weight * result.gradPolicyChosen, rejected: weight * result.gradPolicyRejected };
    for (const s of SEQS) this.io.writeWeights(s, plan.tokens[s], P, coef[s]);
    const lr = lrAt(this.options.schedule, this.attempts);
    this.optimizer.setLr(lr);
    return { policy, ref: { ...ref }, result, lr };
  }

  /**
   * After plan.backward ran (optimizer included): count the step and read the optimizer's stats.
   * For a batch, the losses of all its pairs: the step's loss and TRL metrics are their means.
   */
  async finish(loss: StepLoss | readonly StepLoss[]): Promise<StepMetrics> {
    const losses: readonly StepLoss[] = Array.isArray(loss) ? loss : [loss as StepLoss];
    this.attempts++;
    const stats = await this.optimizer.readStats();
    const rows = losses.map((l) => ({ policyChosen: l.policy.chosen, policyRejected: l.policy.rejected, refChosen: l.ref.chosen, refRejected: l.ref.rejected }));
    const { metrics } = dpoBatch(rows, this.options.beta);
    const mean = losses.reduce((s, l) => s + l.result.loss, 0) / losses.length;
    return { loss: mean, ...metrics, grad_norm: stats.gradNorm, learning_rate: losses[0].lr, skipped: stats.lastSkipped, skipped_steps: stats.skipped, step: this.attempts };
  }

  /** One optimizer step on one pair: plan → forward units → loss → backward units + AdamW → metrics. */
  async runStep(pair: TokenPair, ref: PairLogprobs): Promise<StepMetrics> {
    const plan = this.plan(pair);
    submitUnits(this.ctx, plan.forward);
    const loss = await this.loss(plan, ref);
    submitUnits(this.ctx, plan.backward);
    return this.finish(loss);
  }

  /**
   * One optimizer step on the mean DPO loss of several pairs: each pair's forward, loss (weighted
   * 1/N) and backward in turn, its LoRA gradients adding into the adapter's, then one AdamW unit.
   * The arena holds one pair at a time; the queue runs each pair's units before the next one's.
   */
  async runBatch(pairs: readonly TokenPair[], refs: readonly PairLogprobs[]): Promise<StepMetrics> {
    if (pairs.length === 0 || refs.length !== pairs.length) throw new TrainerInputError('pairs', `= ${pairs.length} pairs with ${refs.length} reference log-probs; a batch needs at least one pair and one reference per pair`);
    if (pairs.length === 1) return this.runStep(pairs[0], refs[0]);
    const losses: StepLoss[] = [];
    try {
      for (let i = 0; i < pairs.length; i++) {
        const plan = this.plan(pairs[i]);
        submitUnits(this.ctx, plan.forward);
        losses.push(await this.loss(plan, refs[i], 1 / pairs.length));
        submitUnits(this.ctx, plan.backward.filter((u) => u.kind !== 'optimizer'));
      }
    } catch (e) {
      this.clearGrads(); // a half-accumulated batch must not leak into the next step
      throw e;
    }
    submitUnits(this.ctx, [this.optimizerUnit]);
    return this.finish(losses);
  }

  /**
   * Summed response log-probs of the pair under the model with (adapter = true) or without the
   * LoRA. Overwrites the arenas' saved activations: never call it between a plan's two phases.
   */
  async logprobs(pair: TokenPair, adapter: boolean): Promise<PairLogprobs> {
    const tokens = this.io.writeInputs(pair);
    submitUnits(this.ctx, SEQS.flatMap((s) => this.forwardUnits(s, this.bucket(tokens[s]), adapter)));
    return this.pairLogprobs(tokens, pair.prompt.length);
  }

  /**
   * The reference pass as units (adapter off, both sequences), for a scheduler to interleave:
   * run `units`, then pairLogprobs(tokens, pair.prompt.length). Overwrites the arenas like logprobs().
   */
  referenceUnits(pair: TokenPair): { tokens: Record<SeqName, number>; units: WorkUnit[] } {
    const tokens = this.io.writeInputs(pair);
    return { tokens, units: SEQS.flatMap((s) => this.forwardUnits(s, this.bucket(tokens[s]), false)) };
  }

  // ------------------------------------------------------------ KTO (unpaired examples)

  private kto() {
    return { beta: this.options.beta, desirableWeight: this.options.desirableWeight, undesirableWeight: this.options.undesirableWeight };
  }

  /**
   * Validate a KTO example, upload its two sequences and return the step's units: forward of both
   * (with the adapter), backward of the completion, the optimizer. Run plan.forward before ktoLoss().
   */
  planKto(example: TokenKto): KtoStepPlan {
    this.io.checkKto(example);
    const p = this.plan(ktoPair(example));
    const backward = [...this.backwardUnits('chosen', this.bucket(p.tokens.chosen)), this.optimizerUnit];
    return { ...p, backward, example: { prompt: [...example.prompt], completion: [...example.completion], label: example.label, kl: [...example.kl] } };
  }

  /**
   * After plan.forward ran: both summed log-probs, z0 (given: a batch's, else this example's KL
   * sequence alone: max(0, π_kl − ref_kl)), the KTO coefficient on the CPU, the completion's
   * backward weights (× weight, a batch's 1/N), the KL sequence's weights 0, and the step's lr.
   */
  async ktoLoss(plan: KtoStepPlan, ref: KtoLogprobs, weight = 1, z0?: number): Promise<KtoStepLoss> {
    const P = plan.example.prompt.length;
    const pl = await this.pairLogprobs(plan.tokens, P);
    const policy = { completion: pl.chosen, kl: pl.rejected };
    const point = z0 ?? ktoReferencePoint([{ policy: policy.kl, ref: ref.kl }]);
    const result = ktoExample({ policy: policy.completion, ref: ref.completion, label: plan.example.label }, point, this.kto());
    this.io.writeWeights('chosen', plan.tokens.chosen, P, weight * result.gradPolicy);
    this.io.writeWeights('rejected', plan.tokens.rejected, P, 0);
    const lr = lrAt(this.options.schedule, this.attempts);
    this.optimizer.setLr(lr);
    return { policy, ref: { ...ref }, label: plan.example.label, z0: point, result, lr };
  }

  /** After the backward and optimizer ran: count the step, read AdamW's stats → TRL's KTO metrics. */
  async finishKto(loss: KtoStepLoss | readonly KtoStepLoss[]): Promise<KtoStepMetrics> {
    const losses: readonly KtoStepLoss[] = Array.isArray(loss) ? loss : [loss as KtoStepLoss];
    this.attempts++;
    const stats = await this.optimizer.readStats();
    const { metrics } = ktoBatch(losses.map((l) => ({ policy: l.policy.completion, ref: l.ref.completion, label: l.label })), [], this.kto(), losses[0].z0);
    const mean = losses.reduce((s, l) => s + l.result.loss, 0) / losses.length;
    return { loss: mean, ...metrics, grad_norm: stats.gradNorm, learning_rate: losses[0].lr, skipped: stats.lastSkipped, skipped_steps: stats.skipped, step: this.attempts };
  }

  /** One optimizer step on one unpaired example: planKto → forward → ktoLoss → backward + AdamW. */
  async runKtoStep(example: TokenKto, ref: KtoLogprobs): Promise<KtoStepMetrics> {
    const plan = this.planKto(example);
    submitUnits(this.ctx, plan.forward);
    const loss = await this.ktoLoss(plan, ref);
    submitUnits(this.ctx, plan.backward);
    return this.finishKto(loss);
  }

  /**
   * One optimizer step on the mean KTO loss of several examples. z0 needs every example's KL
   * sequence before any coefficient is known, and the arena keeps one example's activations: so
   * first the KL sequences' forwards (the 'rejected' slot, read back one by one) give z0, then per
   * example the completion's forward, its coefficient (1/N), its backward; then one AdamW unit.
   */
  async runKtoBatch(examples: readonly TokenKto[], refs: readonly KtoLogprobs[]): Promise<KtoStepMetrics> {
    if (examples.length === 0 || refs.length !== examples.length) throw new TrainerInputError('examples', `= ${examples.length} examples with ${refs.length} reference log-probs; a batch needs at least one example and one reference per example`);
    if (examples.length === 1) return this.runKtoStep(examples[0], refs[0]);
    const kl = [];
    for (let i = 0; i < examples.length; i++) {
      this.io.checkKto(examples[i]);
      const tokens = this.io.writeInputs(ktoPair(examples[i]));
      submitUnits(this.ctx, this.forwardUnits('rejected', this.bucket(tokens.rejected), true));
      kl.push({ policy: await this.io.responseLogprob('rejected', tokens.rejected, examples[i].prompt.length), ref: refs[i].kl });
    }
    const z0 = ktoReferencePoint(kl);
    const losses: KtoStepLoss[] = [];
    try {
      for (let i = 0; i < examples.length; i++) {
        const plan = this.planKto(examples[i]);
        submitUnits(this.ctx, plan.forward.filter((u) => u.seq === 'chosen'));
        const l = await this.ktoLoss(plan, refs[i], 1 / examples.length, z0);
        losses.push({ ...l, policy: { completion: l.policy.completion, kl: kl[i].policy } });
        submitUnits(this.ctx, plan.backward.filter((u) => u.kind !== 'optimizer'));
      }
    } catch (e) {
      this.clearGrads();
      throw e;
    }
    submitUnits(this.ctx, [this.optimizerUnit]);
    return this.finishKto(losses);
  }

  /** Summed log-probs of a KTO example's completion and KL sequences, adapter on or off (overwrites the arena). */
  async ktoLogprobs(example: TokenKto, adapter: boolean): Promise<KtoLogprobs> {
    this.io.checkKto(example);
    const p = await this.logprobs(ktoPair(example), adapter);
    return { completion: p.chosen, kl: p.rejected };
  }

  /** The reference model's (adapter off) log-probs of both sequences: compute once per example and cache. */
  ktoReferenceLogprobs(example: TokenKto): Promise<KtoLogprobs> {
    return this.ktoLogprobs(example, false);
  }

  /** Zero the adapter's gradients (after a step was abandoned half-way through its backward). */
  clearGrads(): void {
    this.ctx.device.queue.writeBuffer(this.adapter.grads, 0, new Float32Array(this.adapter.layout.n));
  }

  /** The reference model's (adapter off) log-probs of a pair: compute once per pair and cache. */
  referenceLogprobs(pair: TokenPair): Promise<PairLogprobs> {
    return this.logprobs(pair, false);
  }

  /** Frees the unit lists' uniforms, the arena and the optimizer's buffers (not the weights or the adapter). */
  destroy(): void {
    this.units.destroy();
    this.arena.destroy();
    this.negInvFreq.destroy();
    this.optimizer.destroy();
  }
}
