/**
 * KTO on the GPU trainer against its spec, TrainingReference.kto (itself checked against finite
 * differences in test/node/learn-kto.test.ts), on the same work units as DPO:
 * - the plan: the completion in the 'chosen' slot and the mismatched KL sequence in the 'rejected'
 *   slot run the same forward units as a DPO pair; the backward is the completion's only (the KL
 *   sequence's weight is 0), then the optimizer unit — the same unit kinds the scheduler sees;
 * - GRADIENT CHECK: the LoRA A/B gradients of one example's KTO loss accumulated on the GPU vs
 *   TrainingReference.kto, llama fixture with base weights stored as f32, f16 and q4 (the reference
 *   built from the same rounded weights), z0 > 0 from the example's own KL sequence; per (layer,
 *   module) and A / B, ||g_gpu − g_ref|| / ||g_ref|| < 1e-3;
 * - the loop: a fresh adapter trained by trainKto on the GPU (single steps, then batches of 2 whose
 *   z0 is the mean of both KL sequences) agrees step by step with the CPU ReferenceTrainer.
 */
import { describe, expect, it } from 'vitest';
import { readF32 } from '../../src/gpu/buffers.ts';
import type { WeightFormat } from '../../src/kernels/weights.ts';
import { createAdapter, writeAdapter, type AdapterConfig } from '../../src/learn/adapter.ts';
import { trainKto, type NamedThumb } from '../../src/learn/kto-loop.ts';
import { TrainingReference, type TokenKto } from '../../src/learn/reference.ts';
import { ReferenceTrainer } from '../../src/learn/reference-trainer.ts';
import { DpoTrainer, submitUnits, TrainerInputError, type TrainerOptions } from '../../src/learn/trainer.ts';
import { uploadModelWeights } from '../../src/model/gpu-weights.ts';
import { LINEAR_MODULES } from '../../src/model/tensors.ts';
import { makeFixture } from '../util/fixtures.ts';
import { testGpu } from './gpu.ts';
import { stories260KTokenizer } from './loader-helpers.ts';
import { compareGrads, randomHostAdapter, relError, roundedHost, zeroGrads } from './trainer-helpers.ts';

// T = 12 and 9: not multiples of TOKEN_BUCKET (padded rows exercised).
const example: TokenKto = { prompt: [1, 57, 300, 12, 199], completion: [88, 401, 7, 260, 31, 45, 2], label: false, kl: [89, 33, 500, 2] };
const options: TrainerOptions = { maxTokens: 24, beta: 1, desirableWeight: 1, undesirableWeight: 1.5, schedule: { kind: 'constant', baseLr: 1e-3, warmupSteps: 0, totalSteps: 10 } };
const adapterConfig: AdapterConfig = { r: 4, loraAlpha: 8, useRslora: false, targetModules: [...LINEAR_MODULES], baseModelNameOrPath: 'fixture' };

async function setup(format: WeightFormat) {
  const ctx = await testGpu();
  const fx = makeFixture({ arch: 'llama', dtype: 'F32', seed: 11 }, await stories260KTokenizer());
  const weights = await uploadModelWeights(ctx, fx.config, fx.host, format);
  const adapter = await createAdapter(ctx, fx.config, adapterConfig, 5);
  const host = randomHostAdapter(fx.config, 4, 200, 0.3, 0.3);
  writeAdapter(ctx, adapter, host);
  const trainer = new DpoTrainer(ctx, weights, adapter, options);
  const reference = new TrainingReference(fx.config, roundedHost(fx.config, fx.host, format), host);
  const destroy = () => {
    trainer.destroy();
    adapter.destroy();
    weights.destroy();
  };
  return { ctx, fx, weights, adapter, trainer, reference, destroy };
}

describe('KTO work units', () => {
  it("run the DPO pair's forward units (completion, then KL sequence), the completion's backward and the optimizer", async () => {
    const { trainer, destroy } = await setup('f32');
    try {
      const kto = trainer.planKto(example);
      const dpo = trainer.plan({ prompt: example.prompt, chosen: example.completion, rejected: example.kl });
      expect(kto.forward).toEqual(dpo.forward);
      expect(kto.backward).toEqual([...dpo.backward.filter((u) => u.seq === 'chosen'), trainer.optimizerWorkUnit]);
      expect(new Set(kto.backward.map((u) => u.kind))).toEqual(new Set(dpo.backward.map((u) => u.kind)));
      expect(() => trainer.planKto({ ...example, label: 'up' as unknown as boolean })).toThrow(TrainerInputError);
      expect(() => trainer.planKto({ ...example, kl: [] })).toThrow(/example\.kl/);
      expect(() => trainer.planKto({ ...example, completion: Array(20).fill(5) })).toThrow(/exceeds maxTokens/);
    } finally {
      destroy();
    }
  });
});

describe('KTO gradients on the GPU vs TrainingReference', () => {
  for (const format of ['f32', 'f16', 'q4'] as WeightFormat[]) {
    it(`llama fixture, ${format} base weights: every LoRA A/B gradient within 1e-3 relative (L2 per module)`, async () => {
      const { ctx, adapter, trainer, reference, destroy } = await setup(format);
      try {
        const own = reference.ktoLogprobs(example);
        // ρ = 0 (steepest point), KL refs 0.3 below the policy: z0 = 0.3 from this example's KL sequence.
        const ref = { completion: own.completion, kl: own.kl - 0.3 };
        const want = reference.kto([example], [ref], options);
        ctx.device.pushErrorScope('validation');
        const plan = trainer.planKto(example);
        submitUnits(ctx, plan.forward);
        const loss = await trainer.ktoLoss(plan, ref);
        submitUnits(ctx, plan.backward.filter((u) => u.kind !== 'optimizer'));
        const grads = await readF32(ctx, adapter.grads, adapter.layout.n);
        const err = await ctx.device.popErrorScope();
        if (err) throw new Error(`GPU validation error: ${err.message}`);
        zeroGrads(ctx, adapter);
        expect(Math.abs(loss.policy.completion - want.policy[0].completion)).toBeLessThan(1e-4 * Math.abs(want.policy[0].completion));
        expect(Math.abs(loss.policy.kl - want.policy[0].kl)).toBeLessThan(1e-4 * Math.abs(want.policy[0].kl));
        expect(Math.abs(loss.z0 - want.result.z0)).toBeLessThan(2e-4);
        expect(Math.abs(loss.result.loss - want.result.loss)).toBeLessThan(1e-4);
        const errors = compareGrads(adapter, grads, want.grads);
        const worst = errors.reduce((a, b) => (b.rel > a.rel ? b : a));
        console.log(`[kto grad check] llama ${format}: worst rel L2 error ${worst.rel.toExponential(2)} (${worst.key}.${worst.which}), z0 ${loss.z0.toFixed(5)}, loss ${loss.result.loss.toFixed(6)}`);
        expect(errors).toHaveLength(2 * 7 * 2);
        for (const e of errors) {
          expect(e.refNorm, `${e.key}.${e.which} reference gradient is not ~0`).toBeGreaterThan(1e-4);
          expect(e.rel, `${e.key}.${e.which}`).toBeLessThan(1e-3);
        }
      } finally {
        destroy();
      }
    });
  }
});

describe('KTO training loop: GPU trainer vs the CPU ReferenceTrainer', () => {
  it('4 single steps and 2 batches of 2 of trainKto agree step by step (loss, kl, grad_norm, adapter)', async () => {
    const ctx = await testGpu();
    const fx = makeFixture({ arch: 'llama', dtype: 'F32', seed: 11 }, await stories260KTokenizer());
    const weights = await uploadModelWeights(ctx, fx.config, fx.host, 'f32');
    const adapter = await createAdapter(ctx, fx.config, adapterConfig, 9);
    const loopOptions: TrainerOptions = { maxTokens: 24, beta: 0.5, schedule: { kind: 'linear', baseLr: 5e-3, warmupSteps: 1, totalSteps: 7 } };
    const gpu = new DpoTrainer(ctx, weights, adapter, loopOptions);
    const cpu = new ReferenceTrainer(fx.config, fx.host, adapterConfig, 9, loopOptions);
    try {
      const data: NamedThumb[] = [
        { prompt: [1, 57, 300], completion: [88, 401, 7, 2], label: true },
        { prompt: [1, 57, 300], completion: [89, 33, 500], label: false },
        { prompt: [1, 40, 9, 12], completion: [77, 12, 300, 5], label: true },
      ];
      const a = await trainKto({ trainer: gpu, examples: data, evalExamples: data, steps: 4, seed: 3 });
      const b = await trainKto({ trainer: cpu, examples: data, evalExamples: data, steps: 4, seed: 3 });
      a.steps.forEach((m, i) => {
        expect(m.loss, `step ${i + 1} loss`).toBeCloseTo(b.steps[i].loss, 4);
        expect(m.kl, `step ${i + 1} kl`).toBeCloseTo(b.steps[i].kl, 4);
        expect(Math.abs(m.grad_norm - b.steps[i].grad_norm), `step ${i + 1} grad_norm`).toBeLessThan(1e-3 * b.steps[i].grad_norm);
      });
      expect(b.steps.some((m) => m.kl > 0), 'some step has z0 > 0 (the KL path is exercised)').toBe(true);
      expect(relError(await readF32(ctx, adapter.params, adapter.layout.n), cpu.optimizerState.params)).toBeLessThan(1e-4);
      expect(a.after!.loss).toBeCloseTo(b.after!.loss, 4);
      expect(a.after!.reward_accuracy).toBe(b.after!.reward_accuracy);
      const c = await trainKto({ trainer: gpu, examples: data, steps: 2, batchSize: 2, seed: 4 });
      const d = await trainKto({ trainer: cpu, examples: data, steps: 2, batchSize: 2, seed: 4 });
      c.steps.forEach((m, i) => {
        expect(m.step).toBe(5 + i);
        expect(m.loss, `batch ${i + 1} loss`).toBeCloseTo(d.steps[i].loss, 4);
        expect(m.kl, `batch ${i + 1} kl`).toBeCloseTo(d.steps[i].kl, 4);
        expect(Math.abs(m.grad_norm - d.steps[i].grad_norm), `batch ${i + 1} grad_norm`).toBeLessThan(1e-3 * d.steps[i].grad_norm);
      });
      expect(relError(await readF32(ctx, adapter.params, adapter.layout.n), cpu.optimizerState.params)).toBeLessThan(1e-4);
      expect(await readF32(ctx, adapter.grads, adapter.layout.n)).toEqual(new Float32Array(adapter.layout.n));
    } finally {
      gpu.destroy();
      adapter.destroy();
      weights.destroy();
    }
  });
});
