/**
 * `mace train --synthetic`: the training-step benchmark — one DPO step's cost per work-unit kind on a
 * synthetic model of a real architecture's shapes (bench/synthetic-model.ts), in either runtime.
 * Split from bench/train.ts (the training run itself).
 */
import type { GpuContext } from '../src/gpu/device.ts';
import { kernelPlan, setKernelPlan, type KernelPlan } from '../src/kernels/plan.ts';
import type { WeightFormat } from '../src/kernels/weights.ts';
import { createAdapter } from '../src/learn/adapter.ts';
import type { NamedPair } from '../src/learn/train-loop.ts';
import { DpoTrainer, submitUnits, TOKEN_BUCKET, type StepMetrics, type UnitKind, type WorkUnit } from '../src/learn/trainer.ts';
import { LINEAR_MODULES } from '../src/model/tensors.ts';
import { describeGpu } from '../src/gpu/device.ts';
import { decodeWeightBytes, parameterCount, SYNTHETIC_MODEL_IDS, SYNTHETIC_MODEL_NAMES, syntheticConfig, syntheticModel, type SyntheticModelId } from './synthetic-model.ts';
import { syntheticPair } from './train-data.ts';
import { TrainRequestError } from './train.ts';

const mean = (xs: number[]) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);


/**
 * `mace train --synthetic ID`: the cost of one DPO step (one pair) on a model's exact shapes with
 * random weights made on the GPU (bench/synthetic-model.ts), per base format. Every work unit is
 * submitted on its own and waited for (as the scheduler will slot them between chat iterations), so
 * each unit's wall time is its cost; a step's phases are the sums of their units plus the CPU parts
 * (loss: read back 2·T log-probs and the DPO coefficient; optimizer: AdamW plus its stats readback).
 */
export interface TrainStepBenchOptions {
  model: SyntheticModelId;
  dtype: WeightFormat;
  /** Steps to time (default 1). The first also pays pipeline compilation: reported apart. */
  steps?: number;
  /** Defaults 48 and 48: one pair of prompt 48 + responses of 48 tokens. */
  promptTokens?: number;
  responseTokens?: number;
  /** LoRA rank on all seven Linears (default 8; alpha 2·rank). */
  rank?: number;
  seed?: number;
  /** Kernel plan (src/kernels/plan.ts; default: the context's, normally 'fused'); 'unfused' is the plan before issue 11. */
  plan?: KernelPlan;
}

export interface UnitKindTiming {
  kind: UnitKind;
  unitsPerStep: number;
  msPerUnit: number;
  msPerStep: number;
}

export interface StepTiming {
  step: number;
  /** forward = embed + layers + head units of both sequences; backward = head-backward + layers. */
  forwardMs: number;
  lossMs: number;
  backwardMs: number;
  optimizerMs: number;
  stepMs: number;
  units: UnitKindTiming[];
  metrics: StepMetrics;
}

export interface TrainStepBenchResult {
  device: string;
  model: { id: SyntheticModelId; name: string; parameters: number; layers: number; hidden: number; vocab: number };
  dtype: WeightFormat;
  /** The kernel plan the step ran with. */
  plan: KernelPlan;
  rank: number;
  promptTokens: number;
  responseTokens: number;
  /** Each sequence (prompt + response) runs at this bucketed length. */
  bucketTokens: number;
  weightsMs: number;
  /** The reference model's log-probs of the pair (adapter off; cached per pair when training). */
  referenceMs: number;
  steps: StepTiming[];
  /** Mean over the steps after the first, or the first step when only one ran (then includesCompile). */
  summary: Omit<StepTiming, 'step' | 'metrics'> & { includesCompile: boolean; tokensPerSec: number };
  memory: {
    /** The trainer's arena: every buffer of a step, allocated once (its peak is its size). */
    arenaBytes: number;
    /** LoRA params, grads and the two AdamW moments. */
    adapterStateBytes: number;
    /** Matmul weights + LM head in the stored format (the frozen base). */
    baseWeightBytes: number;
  };
}

const UNIT_KINDS: readonly UnitKind[] = ['embed', 'forward', 'head', 'head-backward', 'backward', 'optimizer'];

function checkStepBench(o: TrainStepBenchOptions): void {
  if (!SYNTHETIC_MODEL_IDS.includes(o.model)) throw new TrainRequestError('synthetic', `'${o.model}' is not a synthetic model (known: ${SYNTHETIC_MODEL_IDS.join(', ')})`);
  for (const [field, v] of [['steps', o.steps], ['promptTokens', o.promptTokens], ['responseTokens', o.responseTokens], ['rank', o.rank]] as const) {
    if (v !== undefined && !(Number.isInteger(v) && v >= 1)) throw new TrainRequestError(field, `= ${v} must be an integer >= 1`);
  }
}

/** Submit one unit and wait for it: its wall time in ms. */
async function timeUnit(ctx: GpuContext, u: WorkUnit): Promise<number> {
  const t0 = performance.now();
  submitUnits(ctx, [u]);
  await ctx.device.queue.onSubmittedWorkDone();
  return performance.now() - t0;
}

function byKind(times: { kind: UnitKind; ms: number }[]): UnitKindTiming[] {
  return UNIT_KINDS.map((kind) => {
    const of = times.filter((t) => t.kind === kind);
    const total = of.reduce((a, t) => a + t.ms, 0);
    return { kind, unitsPerStep: of.length, msPerUnit: of.length ? total / of.length : 0, msPerStep: total };
  }).filter((k) => k.unitsPerStep > 0);
}

async function timedStep(ctx: GpuContext, trainer: DpoTrainer, pair: NamedPair, ref: { chosen: number; rejected: number }, step: number): Promise<StepTiming> {
  const plan = trainer.plan(pair);
  const times: { kind: UnitKind; ms: number }[] = [];
  for (const u of plan.forward) times.push({ kind: u.kind, ms: await timeUnit(ctx, u) });
  let t0 = performance.now();
  const loss = await trainer.loss(plan, ref);
  const lossMs = performance.now() - t0;
  for (const u of plan.backward) times.push({ kind: u.kind, ms: await timeUnit(ctx, u) });
  t0 = performance.now();
  const metrics = await trainer.finish(loss);
  const statsMs = performance.now() - t0;
  const sum = (kinds: UnitKind[]) => times.filter((t) => kinds.includes(t.kind)).reduce((a, t) => a + t.ms, 0);
  const forwardMs = sum(['embed', 'forward', 'head']);
  const backwardMs = sum(['head-backward', 'backward']);
  const optimizerMs = sum(['optimizer']) + statsMs;
  return { step, forwardMs, lossMs, backwardMs, optimizerMs, stepMs: forwardMs + lossMs + backwardMs + optimizerMs, units: byKind(times), metrics };
}

function meanTiming(steps: StepTiming[]): Omit<StepTiming, 'step' | 'metrics'> {
  const m = (f: (s: StepTiming) => number) => mean(steps.map(f));
  const units = steps[0].units.map((u, i) => ({ kind: u.kind, unitsPerStep: u.unitsPerStep, msPerUnit: m((s) => s.units[i].msPerUnit), msPerStep: m((s) => s.units[i].msPerStep) }));
  return { forwardMs: m((s) => s.forwardMs), lossMs: m((s) => s.lossMs), backwardMs: m((s) => s.backwardMs), optimizerMs: m((s) => s.optimizerMs), stepMs: m((s) => s.stepMs), units };
}

export async function runTrainStepBench(ctx: GpuContext, o: TrainStepBenchOptions, log: (m: string) => void = () => {}): Promise<TrainStepBenchResult> {
  checkStepBench(o);
  const config = syntheticConfig(o.model);
  const P = o.promptTokens ?? 48;
  const R = o.responseTokens ?? 48;
  const rank = o.rank ?? 8;
  const seed = o.seed ?? 1;
  const nSteps = o.steps ?? 1;
  const plan = o.plan ?? kernelPlan(ctx);
  setKernelPlan(ctx, plan); // read when the trainer's dispatches are built
  if (P + R > config.maxPositionEmbeddings) throw new TrainRequestError('promptTokens', `+ responseTokens = ${P + R} exceeds the model's context (${config.maxPositionEmbeddings})`);
  const t0 = performance.now();
  const weights = await syntheticModel(ctx, config, o.dtype, seed);
  const weightsMs = performance.now() - t0;
  log(`${SYNTHETIC_MODEL_NAMES[o.model]} ${o.dtype}: random weights made on the GPU in ${(weightsMs / 1000).toFixed(1)} s`);
  const cleanup: (() => void)[] = [() => weights.destroy()];
  try {
    const adapter = await createAdapter(ctx, config, { r: rank, loraAlpha: 2 * rank, useRslora: false, targetModules: [...LINEAR_MODULES], baseModelNameOrPath: `synthetic ${o.model}` }, seed + 1);
    cleanup.unshift(() => adapter.destroy());
    const maxTokens = Math.ceil((P + R) / TOKEN_BUCKET) * TOKEN_BUCKET;
    // A constant lr without warmup: every step applies an update (the timing does not depend on it).
    const trainer = new DpoTrainer(ctx, weights, adapter, { maxTokens, beta: 0.1, schedule: { kind: 'constant', baseLr: 5e-4, warmupSteps: 0, totalSteps: nSteps } });
    cleanup.unshift(() => trainer.destroy());
    log(`arena ${maxTokens} tokens per sequence = ${(trainer.arena.bytes / 2 ** 20).toFixed(1)} MiB; pair ${P} + ${R} tokens`);
    const pair = syntheticPair(config, P, R, seed * 1000);
    let t = performance.now();
    const ref = await trainer.referenceLogprobs(pair);
    const referenceMs = performance.now() - t;
    log(`reference log-probs (adapter off) in ${(referenceMs / 1000).toFixed(1)} s`);
    const steps: StepTiming[] = [];
    for (let i = 1; i <= nSteps; i++) {
      const s = await timedStep(ctx, trainer, pair, ref, i);
      steps.push(s);
      log(`step ${i}: ${(s.stepMs / 1000).toFixed(1)} s = forward ${(s.forwardMs / 1000).toFixed(1)} + loss ${s.lossMs.toFixed(0)} ms + backward ${(s.backwardMs / 1000).toFixed(1)} + optimizer ${s.optimizerMs.toFixed(0)} ms; loss ${s.metrics.loss.toFixed(4)}, grad_norm ${s.metrics.grad_norm.toFixed(4)}`);
    }
    const warm = steps.length > 1 ? steps.slice(1) : steps;
    const summary = meanTiming(warm);
    const tokens = 2 * P + 2 * R; // real tokens of both sequences
    return {
      device: describeGpu(ctx),
      model: { id: o.model, name: SYNTHETIC_MODEL_NAMES[o.model], parameters: parameterCount(config), layers: config.nLayers, hidden: config.hiddenSize, vocab: config.vocabSize },
      dtype: o.dtype,
      plan,
      rank,
      promptTokens: P,
      responseTokens: R,
      bucketTokens: trainer.bucket(P + R),
      weightsMs,
      referenceMs,
      steps,
      summary: { ...summary, includesCompile: steps.length === 1, tokensPerSec: (tokens * 1000) / summary.stepMs },
      memory: { arenaBytes: trainer.arena.bytes, adapterStateBytes: 4 * adapter.layout.n * 4, baseWeightBytes: decodeWeightBytes(config, o.dtype) },
    };
  } finally {
    for (const f of cleanup) f();
  }
}

/** The benchmark's figures as a markdown table (one row per unit kind, then the phases). */
export function trainStepToMarkdown(r: TrainStepBenchResult): string {
  const s = r.summary;
  const ms = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
  const mib = (b: number) => (b / 2 ** 20).toFixed(1);
  const lines = [
    `${r.model.name} shapes, ${r.dtype} base, LoRA r ${r.rank} on all seven Linears; one pair: prompt ${r.promptTokens} + responses ${r.responseTokens} tokens (sequences run at ${r.bucketTokens}); ${r.device}`,
    `${s.includesCompile ? 'one step (includes pipeline compilation)' : `mean of ${r.steps.length - 1} step(s) after the first`}: ${ms(s.stepMs)} ms per step, ${s.tokensPerSec.toFixed(2)} forward+backward tokens/s; reference log-probs ${ms(r.referenceMs)} ms (once per pair)`,
    '',
    '| unit kind | units per step | ms per unit | ms per step |',
    '| --- | --- | --- | --- |',
    ...s.units.map((u) => `| ${u.kind} | ${u.unitsPerStep} | ${ms(u.msPerUnit)} | ${ms(u.msPerStep)} |`),
    `| loss (readback + DPO on the CPU) | 1 | ${ms(s.lossMs)} | ${ms(s.lossMs)} |`,
    '',
    `phases: forward ${ms(s.forwardMs)} ms, loss ${ms(s.lossMs)} ms, backward ${ms(s.backwardMs)} ms, optimizer ${ms(s.optimizerMs)} ms (AdamW unit + stats readback)`,
    `memory: training arena ${mib(r.memory.arenaBytes)} MiB, adapter state ${mib(r.memory.adapterStateBytes)} MiB, frozen base ${mib(r.memory.baseWeightBytes)} MiB`,
    '',
  ];
  return lines.join('\n');
}
