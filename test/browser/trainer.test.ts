/**
 * The GPU DPO trainer against its spec, TrainingReference (itself checked against finite
 * differences in test/node/learn-reference.test.ts):
 * - the work-unit plan of a 2-layer model, exactly;
 * - GRADIENT CHECK: the LoRA A/B gradients of the DPO loss accumulated on the GPU (read back
 *   before the optimizer unit) vs TrainingReference.dpo, on the llama, qwen2 and llama-tied
 *   fixtures with base weights stored as f32, f16 and q4 (the reference is built from the same
 *   rounded weights). Norm: per (layer, module) and per A / B, ||g_gpu − g_ref||₂ / ||g_ref||₂ < 1e-3.
 *   Reference log-probs = the policy's own (z = 0, the sigmoid's steepest point), so the
 *   gradients are O(1e-2..1), not saturated (each module's ||g_ref|| is checked to be > 1e-4);
 * - a direct central finite difference of the GPU loss on 3 parameters;
 * - the optimizer unit against adamwStepRef on the accumulated gradients, TRL metrics, the
 *   adapter-off reference log-probs against the CPU model without LoRA;
 * - input validation.
 */
import { describe, expect, it } from 'vitest';
import { readF32 } from '../../src/gpu/buffers.ts';
import { ADAMW_DEFAULTS, adamwStepRef, gradNormRef } from '../../src/kernels/adamw.ts';
import type { WeightFormat } from '../../src/kernels/weights.ts';
import { createAdapter, writeAdapter, type AdapterConfig } from '../../src/learn/adapter.ts';
import { dpoPair } from '../../src/learn/dpo.ts';
import { TrainingReference, type TokenPair } from '../../src/learn/reference.ts';
import { initAdapterRef, ReferenceTrainer } from '../../src/learn/reference-trainer.ts';
import { trainDpo } from '../../src/learn/train-loop.ts';
import { DpoTrainer, submitUnits, TrainerInputError, type TrainerOptions } from '../../src/learn/trainer.ts';
import { uploadModelWeights } from '../../src/model/gpu-weights.ts';
import { LINEAR_MODULES } from '../../src/model/tensors.ts';
import { makeFixture, type FixtureArch } from '../util/fixtures.ts';
import { closeTo, testGpu } from './gpu.ts';
import { stories260KTokenizer } from './loader-helpers.ts';
import { compareGrads, gradientsOf, randomHostAdapter, relError, roundedHost, zeroGrads } from './trainer-helpers.ts';

// T = 12 and 9: not multiples of TOKEN_BUCKET, so the padded rows are exercised too.
const pair: TokenPair = { prompt: [1, 57, 300, 12, 199], chosen: [88, 401, 7, 260, 31, 45, 2], rejected: [89, 33, 500, 2] };
const options: TrainerOptions = { maxTokens: 24, beta: 1, schedule: { kind: 'constant', baseLr: 1e-3, warmupSteps: 0, totalSteps: 10 } };
const adapterConfig: AdapterConfig = { r: 4, loraAlpha: 8, useRslora: false, targetModules: [...LINEAR_MODULES], baseModelNameOrPath: 'fixture' };

async function setup(arch: FixtureArch, format: WeightFormat, granularity: 'matmul' | 'layer' = 'matmul', slidingWindow?: number) {
  const ctx = await testGpu();
  const fx = makeFixture({ arch, dtype: 'F32', seed: 11 }, await stories260KTokenizer());
  if (slidingWindow !== undefined) fx.config = { ...fx.config, slidingWindow };
  const weights = await uploadModelWeights(ctx, fx.config, fx.host, format);
  const adapter = await createAdapter(ctx, fx.config, adapterConfig, 5);
  const host = randomHostAdapter(fx.config, 4, 200, 0.3, 0.3);
  writeAdapter(ctx, adapter, host);
  const trainer = new DpoTrainer(ctx, weights, adapter, { ...options, granularity });
  const reference = new TrainingReference(fx.config, roundedHost(fx.config, fx.host, format), host);
  const destroy = () => {
    trainer.destroy();
    adapter.destroy();
    weights.destroy();
  };
  return { ctx, fx, weights, adapter, host, trainer, reference, destroy };
}

describe('DPO trainer work units', () => {
  it('cuts each layer into one unit per matmul (frozen or LoRA) and the attention core, the head into row chunks, in the order of the whole', async () => {
    const { trainer, destroy } = await setup('llama', 'f32');
    const plan = trainer.plan(pair);
    const shape = (u: { kind: string; seq?: string; layer?: number; part?: string }) => [u.kind, u.seq ?? '-', u.layer ?? '-', u.part ?? '-'].join(' ');
    const parts = (kind: string, l: number, names: string) => names.split(' ').map((p) => `${kind} chosen ${l} ${p}`);
    const fwdLayer = 'q q.lora k k.lora v v.lora attn o o.lora gate gate.lora up up.lora down down.lora';
    expect(plan.forward.filter((u) => u.seq === 'chosen').map(shape)).toEqual([
      'embed chosen - -', ...parts('forward', 0, fwdLayer), ...parts('forward', 1, fwdLayer), 'head chosen - head@0', 'head chosen - logprobs',
    ]);
    // Layer 0 has no input gradient: its q, k and v keep only their LoRA paths.
    expect(plan.backward.filter((u) => u.seq === 'chosen').map(shape)).toEqual([
      'head-backward chosen - logprobs', 'head-backward chosen - head@0',
      ...parts('backward', 1, 'down down.lora gate gate.lora up up.lora o o.lora attn q q.lora k k.lora v v.lora'),
      ...parts('backward', 0, 'down down.lora gate gate.lora up up.lora o o.lora attn q.lora k.lora v.lora'),
    ]);
    // A sequence past one chunk runs the LM head in 16-row chunks (24 rows: 16 + 8).
    expect(trainer.forwardUnits('rejected', 24, true).filter((u) => u.kind === 'head').map((u) => u.part)).toEqual(['head@0', 'head@16', 'logprobs']);
    expect(trainer.backwardUnits('rejected', 24).filter((u) => u.kind === 'head-backward').map((u) => u.part)).toEqual(['logprobs', 'head@0', 'head@16']);
    expect(plan.backward.at(-1)!.kind).toBe('optimizer');
    // Every unit has work and a size for the cost model: compute (mmacs > 0 for matmuls) and its memory.
    for (const u of [...plan.forward, ...plan.backward]) {
      expect(u.dispatches.length, shape(u)).toBeGreaterThan(0);
      expect(u.mmacs, shape(u)).toBeGreaterThanOrEqual(0);
      if (u.kind === 'forward') expect(u.bytes, shape(u)).toBeGreaterThan(0);
    }
    // The units of a layer are its whole-layer unit cut in pieces: the same dispatches, in order.
    const coarse = await setup('llama', 'f32', 'layer');
    const whole = coarse.trainer.forwardUnits('chosen', 16, true).find((u) => u.kind === 'forward' && u.layer === 1)!;
    const pieces = trainer.forwardUnits('chosen', 16, true).filter((u) => u.kind === 'forward' && u.layer === 1);
    expect(pieces.reduce((n, u) => n + u.dispatches.length, 0)).toBe(whole.dispatches.length);
    expect(pieces.flatMap((u) => u.dispatches.map((d) => d.label))).toEqual(whole.dispatches.map((d) => d.label));
    expect(pieces.reduce((n, u) => n + u.mmacs, 0)).toBeCloseTo(whole.mmacs, 9);
    const wholeHead = coarse.trainer.backwardUnits('chosen', 24).filter((u) => u.kind === 'head-backward');
    const headPieces = trainer.backwardUnits('chosen', 24).filter((u) => u.kind === 'head-backward');
    expect(wholeHead).toHaveLength(1);
    expect(headPieces.flatMap((u) => u.dispatches.map((d) => d.label))).toEqual(wholeHead[0].dispatches.map((d) => d.label));
    coarse.destroy();
    destroy();
  });

  it('plans a step of a 2-layer model as exactly these units (whole layers), built once per shape', async () => {
    const { trainer, destroy } = await setup('llama', 'f32', 'layer');
    const plan = trainer.plan(pair);
    const shape = (u: { kind: string; seq?: string; layer?: number; adapter?: boolean }) => [u.kind, u.seq ?? '-', u.layer ?? '-', u.adapter ?? '-'].join(' ');
    expect(plan.tokens).toEqual({ chosen: 12, rejected: 9 });
    expect(plan.forward.map(shape)).toEqual([
      'embed chosen - true', 'forward chosen 0 true', 'forward chosen 1 true', 'head chosen - true',
      'embed rejected - true', 'forward rejected 0 true', 'forward rejected 1 true', 'head rejected - true',
    ]);
    expect(plan.backward.map(shape)).toEqual([
      'head-backward chosen - -', 'backward chosen 1 -', 'backward chosen 0 -',
      'head-backward rejected - -', 'backward rejected 1 -', 'backward rejected 0 -',
      'optimizer - - -',
    ]);
    for (const u of [...plan.forward, ...plan.backward]) expect(u.dispatches.length, shape(u)).toBeGreaterThan(0);
    // Layer 0's backward stops at the LoRA gradients: no q/k/v input grads (3 base + 3 LoRA dx
    // dispatches) and no input-norm backward. bwd is [layer 1, layer 0].
    const bwd = plan.backward.filter((u) => u.kind === 'backward' && u.seq === 'chosen');
    expect(bwd[1].dispatches.length).toBe(bwd[0].dispatches.length - 7);
    // The reference pass is the same forward without the 7 modules' LoRA (2 dispatches each).
    const ref = trainer.forwardUnits('chosen', 16, false);
    expect(ref[1].dispatches.length).toBe(plan.forward[1].dispatches.length - 14);
    // Same bucket → the very same unit objects (no allocation per step).
    const again = trainer.plan({ ...pair, chosen: pair.chosen.slice(0, 5) });
    expect(again.forward[1]).toBe(plan.forward[1]);
    expect(again.backward[6]).toBe(plan.backward[6]);
    destroy();
  });

  it('rejects bad pairs and options with typed errors naming the field', async () => {
    const { ctx, weights, adapter, trainer, destroy } = await setup('llama', 'f32');
    expect(() => trainer.plan({ ...pair, chosen: [] })).toThrow(/pair.chosen must be a non-empty/);
    expect(() => trainer.plan({ ...pair, rejected: [3, 512] })).toThrow(TrainerInputError);
    expect(() => trainer.plan({ ...pair, rejected: [3, 512] })).toThrow(/pair.rejected\[1\] = 512/);
    expect(() => trainer.plan({ ...pair, chosen: new Array(20).fill(5) })).toThrow(/25 tokens exceeds maxTokens = 24/);
    expect(() => new DpoTrainer(ctx, weights, adapter, { ...options, maxTokens: 1 })).toThrow(/maxTokens/);
    expect(() => new DpoTrainer(ctx, weights, adapter, { ...options, beta: 0 })).toThrow(/beta/);
    expect(() => new DpoTrainer(ctx, weights, adapter, { ...options, schedule: { ...options.schedule, baseLr: -1 } })).toThrow(/schedule.baseLr/);
    try {
      trainer.plan({ ...pair, prompt: [1.5] });
      expect.unreachable();
    } catch (e) {
      expect((e as TrainerInputError).code).toBe('bad-train-input');
    }
    destroy();
  });
});

const ARCHS: FixtureArch[] = ['llama', 'qwen2', 'llama-tied'];
const FORMATS: WeightFormat[] = ['f32', 'f16', 'q4'];

describe('DPO gradients on the GPU vs TrainingReference', () => {
  for (const arch of ARCHS) {
    for (const format of FORMATS) {
      it(`${arch} fixture, ${format} base weights: every LoRA A/B gradient within 1e-3 relative (L2 per module)`, async () => {
        const { ctx, adapter, trainer, reference, destroy } = await setup(arch, format);
        const P = pair.prompt.length;
        // z = 0: reference log-probs = the policy's own (CPU values, passed to both sides).
        const ref = { chosen: reference.responseLogprob(reference.forward([...pair.prompt, ...pair.chosen]), P), rejected: reference.responseLogprob(reference.forward([...pair.prompt, ...pair.rejected]), P) };
        const want = reference.dpo(pair, ref, options.beta);
        const { loss, grads } = await gradientsOf(ctx, trainer, trainer.plan(pair), ref);
        zeroGrads(ctx, adapter);
        // The forward agrees: summed log-probs to 1e-4 relative, the loss to 1e-5 (z ≈ 0 on both sides).
        expect(Math.abs(loss.policy.chosen - want.policy.chosen)).toBeLessThan(1e-4 * Math.abs(want.policy.chosen));
        expect(Math.abs(loss.policy.rejected - want.policy.rejected)).toBeLessThan(1e-4 * Math.abs(want.policy.rejected));
        expect(Math.abs(loss.result.loss - want.result.loss)).toBeLessThan(1e-5);
        const errors = compareGrads(adapter, grads, want.grads);
        const worst = errors.reduce((a, b) => (b.rel > a.rel ? b : a));
        const smallest = Math.min(...errors.map((e) => e.refNorm));
        console.log(`[trainer grad check] ${arch} ${format}: worst rel L2 error ${worst.rel.toExponential(2)} (${worst.key}.${worst.which}), smallest ||g_ref|| ${smallest.toExponential(2)}, loss ${loss.result.loss.toFixed(6)}`);
        expect(errors).toHaveLength(2 * 7 * 2);
        for (const e of errors) {
          expect(e.refNorm, `${e.key}.${e.which} reference gradient is not ~0`).toBeGreaterThan(1e-4);
          expect(e.rel, `${e.key}.${e.which}`).toBeLessThan(1e-3);
        }
        destroy();
      });
    }
  }
});

describe('DPO gradients with a sliding window shorter than the pair', () => {
  it('mistral fixture, sliding window 4 (sequences of 12 and 9 tokens): log-probs and every LoRA gradient match TrainingReference', async () => {
    const { ctx, fx, adapter, host, trainer, reference, destroy } = await setup('mistral', 'f32', 'matmul', 4);
    expect(trainer.weights.config.slidingWindow).toBe(4);
    const P = pair.prompt.length;
    const ref = { chosen: reference.responseLogprob(reference.forward([...pair.prompt, ...pair.chosen]), P), rejected: reference.responseLogprob(reference.forward([...pair.prompt, ...pair.rejected]), P) };
    const want = reference.dpo(pair, ref, options.beta);
    // the window matters: the same model without it gives other log-probs
    const unwindowed = new TrainingReference({ ...fx.config, slidingWindow: null }, roundedHost(fx.config, fx.host, 'f32'), host);
    const full = unwindowed.responseLogprob(unwindowed.forward([...pair.prompt, ...pair.chosen]), P);
    expect(Math.abs(full - ref.chosen)).toBeGreaterThan(1e-3 * Math.abs(ref.chosen));
    const { loss, grads } = await gradientsOf(ctx, trainer, trainer.plan(pair), ref);
    zeroGrads(ctx, adapter);
    expect(Math.abs(loss.policy.chosen - want.policy.chosen)).toBeLessThan(1e-4 * Math.abs(want.policy.chosen));
    expect(Math.abs(loss.policy.rejected - want.policy.rejected)).toBeLessThan(1e-4 * Math.abs(want.policy.rejected));
    const errors = compareGrads(adapter, grads, want.grads);
    expect(errors).toHaveLength(2 * 7 * 2);
    for (const e of errors) {
      expect(e.refNorm, `${e.key}.${e.which} reference gradient is not ~0`).toBeGreaterThan(1e-4);
      expect(e.rel, `${e.key}.${e.which}`).toBeLessThan(1e-3);
    }
    destroy();
  });
});

describe('DPO gradients past one LM-head chunk', () => {
  it('a pair of 21 and 19 tokens (24 rows: head chunks of 16 + 8) matches TrainingReference (llama fixture, f32)', async () => {
    const { ctx, adapter, trainer, reference, destroy } = await setup('llama', 'f32');
    const long: TokenPair = { prompt: [1, 57, 300, 12, 199, 7], chosen: [88, 401, 7, 260, 31, 45, 9, 77, 140, 3, 99, 18, 260, 5, 2], rejected: [89, 33, 500, 41, 6, 210, 300, 17, 72, 8, 11, 64, 2] };
    const P = long.prompt.length;
    const ref = { chosen: reference.responseLogprob(reference.forward([...long.prompt, ...long.chosen]), P), rejected: reference.responseLogprob(reference.forward([...long.prompt, ...long.rejected]), P) };
    const want = reference.dpo(long, ref, options.beta);
    const plan = trainer.plan(long);
    expect(plan.forward.filter((u) => u.kind === 'head').map((u) => u.part)).toEqual(['head@0', 'head@16', 'logprobs', 'head@0', 'head@16', 'logprobs']);
    const { loss, grads } = await gradientsOf(ctx, trainer, plan, ref);
    zeroGrads(ctx, adapter);
    expect(Math.abs(loss.policy.chosen - want.policy.chosen)).toBeLessThan(1e-4 * Math.abs(want.policy.chosen));
    expect(Math.abs(loss.policy.rejected - want.policy.rejected)).toBeLessThan(1e-4 * Math.abs(want.policy.rejected));
    for (const e of compareGrads(adapter, grads, want.grads)) expect(e.rel, `${e.key}.${e.which}`).toBeLessThan(1e-3);
    destroy();
  });
});

describe('DPO gradient vs finite differences of the GPU loss', () => {
  it('matches central differences on 3 parameters (llama fixture, f32)', async () => {
    const { ctx, adapter, trainer, reference, destroy } = await setup('llama', 'f32');
    const P = pair.prompt.length;
    const ref = { chosen: reference.responseLogprob(reference.forward([...pair.prompt, ...pair.chosen]), P), rejected: reference.responseLogprob(reference.forward([...pair.prompt, ...pair.rejected]), P) };
    const { grads } = await gradientsOf(ctx, trainer, trainer.plan(pair), ref);
    zeroGrads(ctx, adapter);
    const gpuLoss = async () => {
      const lp = await trainer.logprobs(pair, true);
      return dpoPair({ policyChosen: lp.chosen, policyRejected: lp.rejected, refChosen: ref.chosen, refRejected: ref.rejected }, options.beta).loss;
    };
    const params = await readF32(ctx, adapter.params, adapter.layout.n);
    // The largest-gradient entry of three slices: layer 0 v_proj A, layer 1 down_proj B, layer 1 q_proj A.
    const picks = [
      { s: adapter.slice(0, 'v_proj')!, B: false },
      { s: adapter.slice(1, 'down_proj')!, B: true },
      { s: adapter.slice(1, 'q_proj')!, B: false },
    ].map(({ s, B }) => {
      const start = B ? s.bOffset : s.aOffset;
      const len = B ? s.outDim * adapter.layout.r : adapter.layout.r * s.inDim;
      let best = start;
      for (let i = start; i < start + len; i++) if (Math.abs(grads[i]) > Math.abs(grads[best])) best = i;
      return best;
    });
    const h = 5e-3;
    for (const i of picks) {
      const keep = params[i];
      ctx.device.queue.writeBuffer(adapter.params, i * 4, Float32Array.of(keep + h));
      const up = await gpuLoss();
      ctx.device.queue.writeBuffer(adapter.params, i * 4, Float32Array.of(keep - h));
      const down = await gpuLoss();
      ctx.device.queue.writeBuffer(adapter.params, i * 4, Float32Array.of(keep));
      const numeric = (up - down) / (2 * h);
      console.log(`[trainer FD] param ${i}: analytic ${grads[i].toExponential(4)} numeric ${numeric.toExponential(4)}`);
      expect(Math.abs(numeric)).toBeGreaterThan(1e-2);
      expect(Math.abs(grads[i] - numeric), `param ${i}`).toBeLessThan(1e-3 + 1e-2 * Math.abs(numeric));
    }
    destroy();
  });
});

describe('DPO trainer step wiring', () => {
  it('reference log-probs (adapter off) match the CPU model without LoRA', async () => {
    const { fx, trainer, destroy } = await setup('qwen2', 'f32');
    const cpu = new TrainingReference(fx.config, fx.host, null);
    const P = pair.prompt.length;
    const got = await trainer.referenceLogprobs(pair);
    for (const s of ['chosen', 'rejected'] as const) {
      const want = cpu.responseLogprob(cpu.forward([...pair.prompt, ...pair[s]]), P);
      expect(Math.abs(got[s] - want), s).toBeLessThan(1e-4 * Math.abs(want));
    }
    destroy();
  });

  it('the optimizer unit applies AdamW (schedule lr, clipping, decay) to exactly the accumulated gradients, and the metrics follow TRL', async () => {
    const { ctx, adapter, trainer, reference, destroy } = await setup('llama-tied', 'f32');
    const P = pair.prompt.length;
    // Far-off reference log-probs (z ≠ 0) so rewards and margins are not trivially 0.
    const ref = { chosen: reference.responseLogprob(reference.forward([...pair.prompt, ...pair.chosen]), P) - 0.4, rejected: reference.responseLogprob(reference.forward([...pair.prompt, ...pair.rejected]), P) + 0.3 };
    const want = reference.dpo(pair, ref, options.beta);
    const params0 = await readF32(ctx, adapter.params, adapter.layout.n);
    const plan = trainer.plan(pair);
    const { loss, grads } = await gradientsOf(ctx, trainer, plan, ref);
    submitUnits(ctx, plan.backward.filter((u) => u.kind === 'optimizer'));
    const metrics = await trainer.finish(loss);
    const n = adapter.layout.n;
    const expected = adamwStepRef({ params: params0, m: new Float32Array(n), v: new Float32Array(n), step: 0, skipped: 0 }, grads, options.schedule.baseLr, ADAMW_DEFAULTS);
    expect(closeTo(await readF32(ctx, adapter.params, n), expected.state.params, { atol: 1e-6, rtol: 1e-5 }, 'params')).toBeNull();
    expect(await readF32(ctx, adapter.grads, n)).toEqual(new Float32Array(n)); // consumed
    // grad_norm: AdamW's pre-clip norm of the GPU grads = the reference gradients' norm (to 1e-5).
    const refFlat = [...want.grads.values()].flatMap((g) => [...g.dA, ...g.dB]);
    expect(metrics.grad_norm).toBeGreaterThan(options.adamw?.maxGradNorm ?? 1); // clipping was active
    expect(Math.abs(metrics.grad_norm - gradNormRef(refFlat))).toBeLessThan(1e-5 * gradNormRef(refFlat));
    expect(metrics.learning_rate).toBe(options.schedule.baseLr);
    expect(metrics.loss).toBeCloseTo(want.result.loss, 5);
    expect(metrics['rewards/chosen']).toBeCloseTo(want.result.rewardChosen, 4);
    expect(metrics['rewards/rejected']).toBeCloseTo(want.result.rewardRejected, 4);
    expect(metrics['rewards/margins']).toBeCloseTo(want.result.rewardChosen - want.result.rewardRejected, 4);
    expect(metrics['rewards/accuracies']).toBe(1);
    expect(metrics['logps/chosen']).toBeCloseTo(want.policy.chosen, 3);
    expect(metrics['logps/rejected']).toBeCloseTo(want.policy.rejected, 3);
    expect(metrics).toMatchObject({ skipped: false, skipped_steps: 0, step: 1 });
    destroy();
  });
});

describe('DPO training loop: GPU trainer vs the CPU ReferenceTrainer', () => {
  it('a fresh adapter is bit-identical to initAdapterRef, 4 steps of trainDpo (2 pairs, linear warmup) and 2 batched steps agree step by step', async () => {
    const ctx = await testGpu();
    const fx = makeFixture({ arch: 'llama', dtype: 'F32', seed: 11 }, await stories260KTokenizer());
    const weights = await uploadModelWeights(ctx, fx.config, fx.host, 'f32');
    const adapter = await createAdapter(ctx, fx.config, adapterConfig, 9);
    const loopOptions: TrainerOptions = { maxTokens: 24, beta: 0.5, schedule: { kind: 'linear', baseLr: 5e-3, warmupSteps: 2, totalSteps: 7 } };
    const gpu = new DpoTrainer(ctx, weights, adapter, loopOptions);
    const cpu = new ReferenceTrainer(fx.config, fx.host, adapterConfig, 9, loopOptions);
    try {
      expect(await readF32(ctx, adapter.params, adapter.layout.n)).toEqual(initAdapterRef(cpu.layout, 9));
      const pairs: TokenPair[] = [pair, { prompt: [1, 40, 9], chosen: [77, 12, 300, 5], rejected: [6, 6, 410, 2, 19] }];
      const a = await trainDpo({ trainer: gpu, pairs, evalPairs: pairs, steps: 4, seed: 3 });
      const b = await trainDpo({ trainer: cpu, pairs, evalPairs: pairs, steps: 4, seed: 3 });
      expect(a.steps.map((m) => m.learning_rate)).toEqual(b.steps.map((m) => m.learning_rate));
      a.steps.forEach((m, i) => {
        expect(m.loss, `step ${i + 1} loss`).toBeCloseTo(b.steps[i].loss, 4);
        expect(Math.abs(m.grad_norm - b.steps[i].grad_norm), `step ${i + 1} grad_norm`).toBeLessThan(1e-3 * b.steps[i].grad_norm);
      });
      expect(b.steps.at(-1)!.loss).toBeLessThan(b.steps[0].loss); // it learns
      const params = await readF32(ctx, adapter.params, adapter.layout.n);
      expect(relError(params, cpu.optimizerState.params)).toBeLessThan(1e-4);
      expect(a.after!.loss).toBeCloseTo(b.after!.loss, 4);
      // Then 2 steps of batches of 2 (mean loss, gradients accumulated on the GPU, one AdamW unit).
      const c = await trainDpo({ trainer: gpu, pairs, steps: 2, batchSize: 2, seed: 4 });
      const d = await trainDpo({ trainer: cpu, pairs, steps: 2, batchSize: 2, seed: 4 });
      c.steps.forEach((m, i) => {
        expect(m.step).toBe(5 + i);
        expect(m.loss, `batch ${i + 1} loss`).toBeCloseTo(d.steps[i].loss, 4);
        expect(Math.abs(m.grad_norm - d.steps[i].grad_norm), `batch ${i + 1} grad_norm`).toBeLessThan(1e-3 * d.steps[i].grad_norm);
      });
      expect(relError(await readF32(ctx, adapter.params, adapter.layout.n), cpu.optimizerState.params)).toBeLessThan(1e-4);
      expect(await readF32(ctx, adapter.grads, adapter.layout.n)).toEqual(new Float32Array(adapter.layout.n)); // consumed by AdamW
    } finally {
      gpu.destroy();
      adapter.destroy();
      weights.destroy();
    }
  });
});
