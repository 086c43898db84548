/**
 * Learning inside the serving engine (stories260K on SwiftShader): preference pairs become DPO
 * steps interleaved with chat iterations by the MACE scheduler; the learnt adapter is served by
 * name from the next iteration on; base-model requests are untouched by the training beside them;
 * a failing step is skipped and serving goes on; over-budget iterations are sliced.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createEngine, type Engine } from '../../src/engine/openai.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import { readAdapter } from '../../src/learn/adapter.ts';
import type { FinetuneStats, IterationStats, RequestStats, StatsRecord } from '../../src/scheduler/stats.ts';
import { loadStories, SMALL_KV, type Loaded } from './engine-helpers.ts';
import { testGpu } from './gpu.ts';

let ctx: GpuContext;
let loaded: Loaded;

beforeAll(async () => {
  ctx = await testGpu();
  loaded = await loadStories(ctx);
});

// minFinetuneSamples 0: fine-tune units may join decodes from the start (the default waits for measured costs);
// decodeStretch Infinity: as many as the budget leaves (the stretch has its own test below).
const make = (budgetMs = 0, policy: 'mace' | 'sync' = 'mace') =>
  createEngine(ctx, loaded.model, { kvBudgetBytes: SMALL_KV, maxTokensPerIteration: 64, maxSeqs: 4, modelName: 'stories260K', adapters: { slots: 2, maxRank: 4 }, scheduler: { budgetMs, policy, tuning: { minFinetuneSamples: 0, decodeStretch: Infinity } } });

const PAIRS = [
  { prompt: 'Once upon a time', chosen: ' there was a girl who liked to play.', rejected: ' the dog was sad and did not play.' },
  { prompt: 'The cat', chosen: ' wanted to play with the ball.', rejected: ' was sleeping all day.' },
];

async function greedy(e: Engine, prompt: string, max_tokens: number, adapter?: string): Promise<number[]> {
  const r = await e.completions.create({ prompt, max_tokens, temperature: 0, return_token_ids: true, adapter, ignore_eos: true });
  return r.choices[0].token_ids!;
}

async function until(cond: () => boolean, ms = 60_000): Promise<void> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > ms) throw new Error('timed out waiting for the engine');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('engine learning', () => {
  it('trains on added pairs between chat iterations, leaves base requests exact, and serves the learnt adapter', async () => {
    const engine = make();
    const records: StatsRecord[] = [];
    engine.core.onStats((r) => records.push(r));
    const solo = await greedy(engine, 'Lily and Ben', 24);
    const status0 = await engine.learning.enable({ rank: 4, lr: 5e-3, epochs: 2, maxTokens: 32 });
    expect(status0).toMatchObject({ enabled: true, adapter: 'learnt', version: 0, steps: 0, pendingPairs: 0 });
    for (const p of PAIRS) await engine.preferences.add(p);
    expect(engine.learning.status()!.pendingPairs).toBe(2);
    // A base-model request running beside the training gets exactly its solo tokens.
    const beside = await greedy(engine, 'Lily and Ben', 24);
    expect(beside).toEqual(solo);
    // The 4th step's record: the trainer counts a step before its last read-back, the version after it.
    await until(() => records.filter((r) => r.type === 'finetune').length >= 4);
    const st = engine.learning.status()!;
    expect(st.steps).toBe(4);
    expect(st.version).toBe(4);
    expect(st.pendingPairs).toBe(0);
    const steps = records.filter((r): r is FinetuneStats => r.type === 'finetune');
    expect(steps.map((s) => s.adapterVersion)).toEqual([1, 2, 3, 4]);
    expect(steps.every((s) => Number.isFinite(s.loss) && s.durationMs > 0 && !s.skipped)).toBe(true);
    const mixed = records.filter((r): r is IterationStats => r.type === 'iteration' && r.finetuneUnits > 0 && r.decodeRows > 0);
    expect(mixed.length).toBeGreaterThan(0); // fine-tune units shared iterations with decodes
    const req = records.filter((r): r is RequestStats => r.type === 'request');
    expect(req.length).toBe(2);
    expect(req[1].tbtMs.length).toBe(23);

    // The bank serves exactly the trained weights: the same adapter loaded into a fresh engine gives the same tokens.
    const learnt = await greedy(engine, 'Once upon a time', 20, 'learnt');
    const fresh = make();
    await fresh.adapters.load('copy', await readAdapter(ctx, engine.core.learnerState!.adapter));
    expect(await greedy(fresh, 'Once upon a time', 20, 'copy')).toEqual(learnt);
    expect(engine.adapters.list().find((a) => a.name === 'learnt')).toBeTruthy();
    fresh.destroy();
    engine.destroy();
  });

  it('a failing step (non-finite log-probs) is dropped, the adapter is unchanged, serving and learning go on', async () => {
    const engine = make();
    await engine.learning.enable({ rank: 4, epochs: 1, maxTokens: 32 });
    const before = await readAdapter(ctx, engine.core.learnerState!.adapter);
    expect(engine.core.learnTokens('nan', { prompt: [1, 5, 9], chosen: [20, 21], rejected: [30, 31] }, { chosen: Number.NaN, rejected: Number.NaN })).toBe(true);
    const out = await greedy(engine, 'The cat', 8);
    expect(out.length).toBe(8);
    await until(() => engine.learning.status()!.failedSteps >= 1);
    expect(engine.learning.status()).toMatchObject({ version: 0, pendingPairs: 0, failedSteps: 1 });
    const after = await readAdapter(ctx, engine.core.learnerState!.adapter);
    expect(after.tensors.map((t) => Array.from(t.B))).toEqual(before.tensors.map((t) => Array.from(t.B)));
    await engine.preferences.add(PAIRS[1]); // the next pair trains normally
    await until(() => engine.learning.status()!.version >= 1);
    expect(engine.learning.status()!.last?.skipped).toBe(false);
    engine.destroy();
  });

  it('slices iterations over the budget into layer ranges with the same tokens', async () => {
    const unbounded = make(0);
    const want = await greedy(unbounded, 'One day, a big dog', 16);
    unbounded.destroy();
    const tight = make(0.01); // every pass is over budget: each is split into per-layer submissions
    expect(await greedy(tight, 'One day, a big dog', 16)).toEqual(want);
    expect(tight.stats().slicedIterations).toBeGreaterThan(0);
    tight.destroy();
  });

  it('packs sub-layer fine-tune units beside decodes in one submission once their cost is measured (gate on)', async () => {
    // The default gate: fine-tune units join inference rows only after 3 measured fine-tune iterations.
    // decodeStretch 1 (a unit may double a decode step): this test is about the gate, not how much is packed.
    const engine = createEngine(ctx, loaded.model, { kvBudgetBytes: SMALL_KV, maxTokensPerIteration: 64, maxSeqs: 4, modelName: 'stories260K', adapters: { slots: 2, maxRank: 4 }, scheduler: { budgetMs: 40, tuning: { decodeStretch: 1 } } });
    const records: StatsRecord[] = [];
    engine.core.onStats((r) => records.push(r));
    await engine.learning.enable({ rank: 4, epochs: 50, maxTokens: 32 });
    await engine.preferences.add(PAIRS[0]);
    // Alone (inference idle) the units run and are measured, per kind, on the GPU.
    await until(() => engine.core.cost.finetuneSamples >= 3);
    const out = await greedy(engine, 'Lily and Ben', 24);
    expect(out.length).toBe(24);
    const its = records.filter((r): r is IterationStats => r.type === 'iteration');
    const shared = its.filter((r) => r.decodeRows > 0 && r.finetuneUnits > 0 && r.slices === 1);
    expect(shared.length).toBeGreaterThan(0); // a decode and fine-tune units in ONE submission
    for (const r of shared) {
      expect(r.budgetMs).toBe(40);
      if (ctx.features.timestampQuery) {
        expect(r.timing).toBe('timestamp');
        expect(r.gpuMs!.inference).toBeGreaterThan(0);
        expect(r.gpuMs!.finetune).toBeGreaterThan(0);
      }
    }
    // Sub-layer units: no fine-tune unit list is a whole layer, so one iteration can hold a few.
    const units = engine.core.learnerState!.trainer.forwardUnits('chosen', 16, true);
    const fwd = units.filter((u) => u.kind === 'forward');
    const targets = engine.core.learnerState!.adapter.config.targetModules.length;
    expect(fwd.filter((u) => !u.part!.endsWith('.lora')).length).toBe(8 * loaded.model.config.nLayers); // 7 frozen matmuls + attention
    expect(fwd.filter((u) => u.part!.endsWith('.lora')).length).toBe(targets * loaded.model.config.nLayers); // a LoRA path per target
    expect(units.filter((u) => u.kind === 'head').map((u) => u.part)).toEqual(['head@0', 'logprobs']);
    engine.destroy();
  });

  it('decodeStretch 0 keeps fine-tune units away from decodes, unless the work has starved for finetuneStarveMs', async () => {
    const mixedIterations = async (tuning: { decodeStretch: number; finetuneStarveMs: number }) => {
      const engine = createEngine(ctx, loaded.model, { kvBudgetBytes: SMALL_KV, maxTokensPerIteration: 64, maxSeqs: 4, modelName: 'stories260K', adapters: { slots: 2, maxRank: 4 }, scheduler: { budgetMs: 40, tuning: { minFinetuneSamples: 0, ...tuning } } });
      const records: StatsRecord[] = [];
      engine.core.onStats((r) => records.push(r));
      await engine.learning.enable({ rank: 4, epochs: 50, maxTokens: 32 });
      await engine.preferences.add(PAIRS[0]);
      expect((await greedy(engine, 'Lily and Ben', 16)).length).toBe(16);
      const its = records.filter((r): r is IterationStats => r.type === 'iteration');
      engine.destroy();
      return { decodes: its.filter((r) => r.decodeRows > 0).length, mixed: its.filter((r) => r.decodeRows > 0 && r.finetuneUnits > 0).length };
    };
    const held = await mixedIterations({ decodeStretch: 0, finetuneStarveMs: Infinity });
    expect(held.decodes).toBeGreaterThan(0);
    expect(held.mixed).toBe(0);
    // Starved from the first iteration on: the stretch never holds, every decode iteration may take units.
    expect((await mixedIterations({ decodeStretch: 0, finetuneStarveMs: 0 })).mixed).toBeGreaterThan(0);
  });

  it('a whole-layer granularity (the ablation) trains to the same adapter as sub-layer units', async () => {
    const run = async (unitGranularity: 'matmul' | 'layer') => {
      const engine = make();
      await engine.learning.enable({ rank: 4, epochs: 1, maxTokens: 32, unitGranularity });
      await engine.preferences.add(PAIRS[1]);
      await until(() => engine.learning.status()!.steps >= 1);
      const host = await readAdapter(ctx, engine.core.learnerState!.adapter);
      engine.destroy();
      return host.tensors.map((t) => [Array.from(t.A), Array.from(t.B)]);
    };
    expect(await run('matmul')).toEqual(await run('layer')); // the same dispatches in the same order, grouped differently
  });

  it('sync policy runs pending fine-tuning before any decode', async () => {
    const engine = make(0, 'sync');
    const records: StatsRecord[] = [];
    engine.core.onStats((r) => records.push(r));
    await engine.learning.enable({ rank: 4, epochs: 1, maxTokens: 32 });
    await engine.preferences.add(PAIRS[0]);
    await greedy(engine, 'The sun', 6);
    const its = records.filter((r): r is IterationStats => r.type === 'iteration');
    const firstInference = its.findIndex((r) => r.decodeRows + r.prefillTokens > 0);
    expect(its.slice(0, firstInference).every((r) => r.finetuneUnits > 0)).toBe(true);
    expect(its.slice(firstInference).every((r) => r.finetuneUnits === 0)).toBe(true);
    expect(engine.learning.status()!.steps).toBe(1);
    engine.destroy();
  });

  it('one conversation cannot flood the queue: a cap per conversation, and one job per conversation shown to the scheduler', async () => {
    const engine = make(0, 'mace');
    await engine.learning.enable({ rank: 4, lr: 5e-3, epochs: 1, maxTokens: 32, maxPairsPerConversation: 3 });
    const core = engine.core;
    const burst = Array.from({ length: 6 }, (_, i) => core.learnPair(`flood-${i}`, { prompt: 'The cat', chosen: ` played ${i}.`, rejected: ` slept ${i}.` }));
    expect(burst).toEqual([true, true, true, false, false, false]);
    expect(core.learnPair('other', { prompt: 'Once upon a time', chosen: ' a girl played.', rejected: ' a dog slept.' })).toBe(true);
    const learner = core.learnerState!;
    expect(learner.pendingPairs).toBe(4);
    expect(learner.views().length).toBe(2); // one per conversation
    expect(engine.learning.status()).toMatchObject({ rateLimitedPairs: 3 });
    await until(() => engine.learning.status()!.pendingPairs === 0);
    expect(engine.learning.status()!.steps).toBe(4);
    // Trained: the conversation has room again.
    expect(core.learnPair('flood-late', { prompt: 'The cat', chosen: ' ran.', rejected: ' sat.' })).toBe(true);
    await expect(engine.learning.enable({ maxPairsPerConversation: 0 })).resolves.toBeDefined(); // idempotent: options of a running learner are not re-read
    engine.destroy();
  });
});
