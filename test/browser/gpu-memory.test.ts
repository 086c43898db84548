/**
 * GPU memory is returned (issue 17): with the device's tally (src/gpu/tally.ts), every owner —
 * model weights, engine, trainer, adapters, a worker's model switch — leaves the live-buffer count
 * and bytes where they started after destroy(), also when its construction fails part-way.
 */
import { describe, expect, it } from 'vitest';
import { createEngine } from '../../src/engine/openai.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import { createStorage } from '../../src/gpu/buffers.ts';
import { labelPrefix, ownerOfLabel, tallyDiff, type TallySnapshot } from '../../src/gpu/tally.ts';
import { createAdapter, type AdapterConfig } from '../../src/learn/adapter.ts';
import { DpoTrainer } from '../../src/learn/trainer.ts';
import { uploadModelWeights } from '../../src/model/gpu-weights.ts';
import { LINEAR_MODULES } from '../../src/model/tensors.ts';
import { createWorkerEngine } from '../../src/engine/client.ts';
import { loadStories, SMALL_KV, type Loaded } from './engine-helpers.ts';
import { testGpu } from './gpu.ts';

/** The tally now, for comparing two moments: totals and per-prefix counts. */
const count = (ctx: GpuContext): TallySnapshot => ctx.tally.snapshot();

/** Let submitted work and pending read-backs finish. */
async function settle(ctx: GpuContext): Promise<void> {
  await ctx.device.queue.onSubmittedWorkDone();
  await new Promise((r) => setTimeout(r, 50));
}

function expectSame(before: TallySnapshot, after: TallySnapshot, what: string): void {
  expect(tallyDiff(before, after), `${what}: live buffers by prefix changed`).toEqual({});
  expect(after.buffers, what).toBe(before.buffers);
  expect(after.bytes, what).toBe(before.bytes);
  expect(after.querySets, what).toBe(before.querySets);
}

async function generate(ctx: GpuContext, loaded: Loaded, weights = loaded.model.weights): Promise<number[]> {
  const engine = createEngine(ctx, { ...loaded.model, weights }, { kvBudgetBytes: SMALL_KV, maxSeqs: 2, modelName: 'stories260K' });
  try {
    const r = await engine.completions.create({ prompt: 'Once upon a time', temperature: 0, max_tokens: 6, return_token_ids: true, ignore_eos: true });
    return r.choices[0].token_ids!;
  } finally {
    engine.destroy();
  }
}

describe('the GPU tally', () => {
  it('counts live buffers and bytes by label prefix and owner; destroy() takes them out', async () => {
    const ctx = await testGpu();
    const start = count(ctx);
    const a = createStorage(ctx, 1000, 'test.a');
    const b = createStorage(ctx, 64, 'kv.k[0]');
    const q = ctx.device.createQuerySet({ type: 'occlusion', count: 2 });
    const mid = count(ctx);
    expect(tallyDiff(start, mid)).toEqual({ test: { buffers: 1, bytes: 1000 }, kv: { buffers: 1, bytes: 64 } });
    expect(mid.querySets - start.querySets).toBe(1);
    expect(mid.byOwner['kv-cache'].bytes - (start.byOwner['kv-cache']?.bytes ?? 0)).toBe(64);
    a.destroy();
    a.destroy(); // twice is harmless
    b.destroy();
    q.destroy();
    expectSame(start, count(ctx), 'after destroy');
    expect([labelPrefix('fwd.x'), labelPrefix('kv.k[3]'), labelPrefix('gemv_f32_wg64.params'), labelPrefix('')]).toEqual(['fwd', 'kv', 'params', '(unlabelled)']);
    expect([ownerOfLabel('model.layers.0.mlp.up_proj.weight.data'), ownerOfLabel('train.chosen.xFinal'), ownerOfLabel('adamw.stats'), ownerOfLabel('lora.bank'), ownerOfLabel('linear_f32.params'), ownerOfLabel('mystery')]).toEqual(['weights', 'trainer', 'trainer', 'adapters', 'uniforms', 'other']);
  });
});

describe('GPU memory is returned', () => {
  it('load → generate → destroy, ten times in one context: the live buffers and bytes end where they started', async () => {
    const ctx = await testGpu();
    const loaded = await loadStories(ctx);
    const want = await generate(ctx, loaded); // first run: pipelines compiled (they hold no buffers)
    const start = count(ctx);
    for (let i = 0; i < 10; i++) {
      const weights = await uploadModelWeights(ctx, loaded.model.config, loaded.host, 'f32');
      expect(await generate(ctx, loaded, weights)).toEqual(want);
      weights.destroy();
      expectSame(start, count(ctx), `run ${i + 1}`);
    }
    loaded.model.weights.destroy();
  });

  it('a failed engine creation frees what it made (the model stays the caller\'s)', async () => {
    // A 1 MiB buffer limit: the KV cache fits, the forward arena for 4096 tokens does not (its
    // gate activations are 4096 × 172 × 4 bytes), so creation fails after the KV cache was made.
    const ctx = await testGpu({ limitsCap: { maxBufferSize: 2 ** 20 } });
    const loaded = await loadStories(ctx);
    expect((await generate(ctx, loaded)).length).toBe(6); // the model's own first-use copies (fused q/k/v) exist now
    const start = count(ctx);
    expect(() => createEngine(ctx, loaded.model, { kvBudgetBytes: SMALL_KV, maxSeqs: 2, maxTokensPerIteration: 4096, adapters: { slots: 2, maxRank: 4 } })).toThrow(/maxBufferSize/);
    // A bad option of a later part: every option is checked before any buffer is made.
    expect(() => createEngine(ctx, loaded.model, { kvBudgetBytes: SMALL_KV, scheduler: { timing: 'sometimes' as 'wall' } })).toThrow(/scheduler.timing/);
    expectSame(start, count(ctx), 'after the failed creations');
    expect((await generate(ctx, loaded)).length).toBe(6); // and a good one still works
    expectSame(start, count(ctx), 'after a good engine');
    loaded.model.weights.destroy();
  });

  it('a failed adapter load and a refused learning option leave nothing behind; a learning engine frees its trainer', async () => {
    const ctx = await testGpu();
    const loaded = await loadStories(ctx);
    const start = count(ctx);
    const engine = createEngine(ctx, loaded.model, { kvBudgetBytes: SMALL_KV, maxSeqs: 2, adapters: { slots: 2, maxRank: 4 } });
    const withEngine = count(ctx);
    const c = loaded.model.config;
    const bad = { config: { r: 4, loraAlpha: 8, useRslora: false, targetModules: ['q_proj'], baseModelNameOrPath: 'x' } as AdapterConfig, tensors: [{ layer: 0, module: 'q_proj' as const, A: new Float32Array(3), B: new Float32Array(c.hiddenSize * 4) }] };
    await expect(engine.adapters.load('bad', bad as never)).rejects.toThrow();
    await expect(engine.learning.enable({ rank: 99 })).rejects.toThrow(/learning.rank/);
    expectSame(withEngine, count(ctx), 'after the refused adapter and learning options');
    await engine.learning.enable({ rank: 4, epochs: 1, maxTokens: 32 });
    await engine.preferences.add({ prompt: 'The cat', chosen: ' sat on the mat.', rejected: ' ran away fast.' });
    const until = async (cond: () => boolean) => {
      for (let i = 0; i < 2000 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
    };
    await until(() => (engine.learning.status()?.steps ?? 0) >= 1);
    expect(engine.learning.status()!.steps).toBe(1);
    engine.destroy();
    await settle(ctx); // a read-back the learner had in flight finishes (and frees its staging)
    expectSame(start, count(ctx), 'after the learning engine');
    loaded.model.weights.destroy();
  });

  it('a trainer created, stepped and destroyed (with its adapter) returns every buffer', async () => {
    const ctx = await testGpu();
    const loaded = await loadStories(ctx);
    const start = count(ctx);
    const config: AdapterConfig = { r: 4, loraAlpha: 8, useRslora: false, targetModules: [...LINEAR_MODULES], baseModelNameOrPath: 'stories260K' };
    for (let i = 0; i < 3; i++) {
      const adapter = await createAdapter(ctx, loaded.model.config, config, 1 + i);
      const trainer = new DpoTrainer(ctx, loaded.model.weights, adapter, { maxTokens: 48, beta: 0.5, schedule: { kind: 'constant', baseLr: 1e-3, warmupSteps: 0, totalSteps: 0 } });
      const pair = { prompt: [1, 60, 70], chosen: [80, 90, 100, 110], rejected: [81, 91, 2] };
      const ref = await trainer.referenceLogprobs(pair);
      const m = await trainer.runStep(pair, ref);
      expect(Number.isFinite(m.loss)).toBe(true);
      // A failed construction (maxTokens past the model's context is refused before the arena).
      expect(() => new DpoTrainer(ctx, loaded.model.weights, adapter, { maxTokens: 1, beta: 0.5, schedule: { kind: 'constant', baseLr: 1e-3, warmupSteps: 0, totalSteps: 0 } })).toThrow(/maxTokens/);
      trainer.destroy();
      adapter.destroy();
      expectSame(start, count(ctx), `trainer ${i + 1}`);
    }
    loaded.model.weights.destroy();
  });

  it('a model switch through the worker API leaves the worker device where the first load left it', async () => {
    const client = createWorkerEngine({ frames: false });
    try {
      const stories = (format: 'f32' | 'f16') => ({ source: { kind: 'url' as const, base: '/models/stories260K/' }, format, cache: false, learning: false as const });
      // The same load and chat (the same batch shapes) before and after the switches.
      const loadAndChat = async (format: 'f32' | 'f16') => {
        await client.load(stories(format));
        await client.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3, temperature: 0 });
      };
      await loadAndChat('f32');
      const first = (await client.gpuMemory())!;
      expect(first.byOwner.weights.buffers).toBeGreaterThan(0);
      expect(first.byOwner['kv-cache'].buffers).toBeGreaterThan(0);
      for (const format of ['f16', 'f32', 'f16'] as const) await loadAndChat(format);
      await loadAndChat('f32');
      expectSame(first, (await client.gpuMemory())!, 'after four model switches');
      await client.unload();
      const empty = (await client.gpuMemory())!;
      expect(empty.byOwner.weights ?? { buffers: 0 }).toMatchObject({ buffers: 0 });
      expect(empty.byOwner.engine ?? { buffers: 0 }).toMatchObject({ buffers: 0 });
      expect(empty.buffers).toBe(0);
    } finally {
      client.terminate();
    }
  });
});
