/**
 * The DPO trainer learns, on the real stories260K model (f32 weights, rank-8 LoRA on every
 * module): repeated steps on one synthetic pair lower its DPO loss and raise rewards/margins; a NaN
 * injected into a gradient makes that step skipped and counted, with the adapter (and the AdamW
 * moments) bit-for-bit unchanged, and the next step trains normally. Also logs time per step.
 */
import { describe, expect, it } from 'vitest';
import { readBuffer } from '../../src/gpu/buffers.ts';
import { createAdapter } from '../../src/learn/adapter.ts';
import type { TokenPair } from '../../src/learn/reference.ts';
import { DpoTrainer, submitUnits, type StepMetrics, type WorkUnit } from '../../src/learn/trainer.ts';
import { parseModelConfig } from '../../src/model/config.ts';
import { uploadModelWeights } from '../../src/model/gpu-weights.ts';
import { hostWeightsFromSafetensors } from '../../src/model/reference.ts';
import { LINEAR_MODULES } from '../../src/model/tensors.ts';
import { testGpu } from './gpu.ts';

const base = '/models/stories260K/';
// A 6-token prompt, a 10-token chosen and an 8-token rejected response (ids < 512, stories260K's vocabulary).
const pair: TokenPair = { prompt: [1, 403, 407, 261, 378, 410], chosen: [370, 281, 263, 302, 290, 372, 269, 290, 321, 2], rejected: [263, 400, 281, 311, 405, 270, 267, 2] };

async function setup() {
  const ctx = await testGpu();
  const [cfg, st] = await Promise.all([fetch(base + 'config.json').then((r) => r.text()), fetch(base + 'model.safetensors').then((r) => r.arrayBuffer())]);
  const config = parseModelConfig(cfg);
  const weights = await uploadModelWeights(ctx, config, hostWeightsFromSafetensors(config, new Uint8Array(st)), 'f32');
  const adapter = await createAdapter(ctx, config, { r: 8, loraAlpha: 16, useRslora: false, targetModules: [...LINEAR_MODULES], baseModelNameOrPath: 'stories260K' }, 3);
  const trainer = new DpoTrainer(ctx, weights, adapter, {
    maxTokens: 32,
    beta: 0.1,
    schedule: { kind: 'constant', baseLr: 2e-3, warmupSteps: 2, totalSteps: 20 },
    adamw: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 },
  });
  return { ctx, weights, adapter, trainer, destroy: () => (trainer.destroy(), adapter.destroy(), weights.destroy()) };
}

describe('DPO training on stories260K', () => {
  it('lowers the loss and raises the reward margin of a pair; a NaN gradient skips the step and leaves the adapter unchanged', async () => {
    const { ctx, adapter, trainer, destroy } = await setup();
    ctx.device.pushErrorScope('validation');
    const ref = await trainer.referenceLogprobs(pair);
    const log: StepMetrics[] = [];
    const times: number[] = [];
    for (let i = 0; i < 8; i++) {
      const t0 = performance.now();
      log.push(await trainer.runStep(pair, ref));
      times.push(performance.now() - t0);
    }
    for (const m of log) console.log(`[trainer] step ${m.step} loss ${m.loss.toFixed(5)} margin ${m['rewards/margins'].toFixed(4)} acc ${m['rewards/accuracies']} grad_norm ${m.grad_norm.toFixed(4)} lr ${m.learning_rate}`);
    const warm = times.slice(2);
    console.log(`[trainer] stories260K (5 layers, T = ${pair.prompt.length + pair.chosen.length}/${pair.prompt.length + pair.rejected.length}, r = 8, SwiftShader): first step ${times[0].toFixed(0)} ms (pipelines), then ${(warm.reduce((a, b) => a + b, 0) / warm.length).toFixed(0)} ms/step mean, min ${Math.min(...warm).toFixed(0)} ms`);

    // B = 0 at init: the policy is the reference exactly, z = 0, loss = ln 2; warmup: lr 0 then lr/2.
    expect(log[0].loss).toBeCloseTo(Math.LN2, 6);
    expect(log[0]['rewards/margins']).toBe(0);
    expect(log[0].learning_rate).toBe(0);
    expect(log[1].learning_rate).toBeCloseTo(1e-3, 9);
    expect(log[2].learning_rate).toBeCloseTo(2e-3, 9);
    expect(log[1].loss).toBe(log[0].loss); // lr 0 changed nothing (weight decay is scaled by lr too)
    for (const m of log) {
      expect(m.skipped).toBe(false);
      expect(Number.isFinite(m.grad_norm) && m.grad_norm > 0).toBe(true);
    }
    const last = log[log.length - 1];
    expect(last.loss).toBeLessThan(log[0].loss - 0.1);
    expect(last['rewards/margins']).toBeGreaterThan(0.5);
    expect(last['rewards/accuracies']).toBe(1);
    expect(last['rewards/chosen']).toBeGreaterThan(last['rewards/rejected']);
    expect(last.skipped_steps).toBe(0);
    expect(last.step).toBe(8);

    // NaN in one gradient element between the backward and the optimizer unit.
    const before = await Promise.all([adapter.params, adapter.m, adapter.v].map((b) => readBuffer(ctx, b)));
    // This step submits and waits for one unit at a time, to log what each kind of unit costs.
    const perKind = new Map<string, number[]>();
    const timed = async (units: readonly WorkUnit[]) => {
      for (const u of units) {
        const t0 = performance.now();
        submitUnits(ctx, [u]);
        await ctx.device.queue.onSubmittedWorkDone();
        perKind.set(u.kind, [...(perKind.get(u.kind) ?? []), performance.now() - t0]);
      }
    };
    const plan = trainer.plan(pair);
    await timed(plan.forward);
    const loss = await trainer.loss(plan, ref);
    await timed(plan.backward.filter((u) => u.kind !== 'optimizer'));
    console.log(`[trainer] unit times (ms, mean over units of the kind): ${[...perKind].map(([k, v]) => `${k} ${(v.reduce((a, b) => a + b, 0) / v.length).toFixed(0)} (x${v.length})`).join(', ')}`);
    ctx.device.queue.writeBuffer(adapter.grads, adapter.slice(2, 'o_proj')!.bOffset * 4 + 8, Float32Array.of(NaN));
    submitUnits(ctx, plan.backward.filter((u) => u.kind === 'optimizer'));
    const bad = await trainer.finish(loss);
    expect(bad.skipped).toBe(true);
    expect(bad.skipped_steps).toBe(1);
    expect(Number.isNaN(bad.grad_norm)).toBe(true);
    const after = await Promise.all([adapter.params, adapter.m, adapter.v].map((b) => readBuffer(ctx, b)));
    for (let i = 0; i < 3; i++) expect(new Uint8Array(after[i]), ['params', 'm', 'v'][i]).toEqual(new Uint8Array(before[i]));

    // The poisoned gradient was consumed (zeroed): the next step is a normal one.
    const next = await trainer.runStep(pair, ref);
    expect(next.skipped).toBe(false);
    expect(next.skipped_steps).toBe(1);
    expect(next.step).toBe(10);
    expect(Number.isFinite(next.grad_norm)).toBe(true);
    expect(next.loss).toBeLessThan(log[0].loss);
    const err = await ctx.device.popErrorScope();
    expect(err?.message).toBeUndefined();
    destroy();
  });
});
