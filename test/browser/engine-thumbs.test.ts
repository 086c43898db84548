/**
 * Every thumb teaches (issue 14): in the serving engine, a single thumbs-up or thumbs-down on an
 * answer — no regenerate, no pair — becomes a KTO step on the learnt adapter, scheduled like DPO's
 * work units; the adapter it reaches equals the GPU trainer's own KTO steps on the same examples
 * (the trainer is itself checked against the CPU reference, trainer-kto.test.ts); an answer whose
 * context later gets the opposite rating trains in a DPO pair instead (the mixing rule).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createEngine, type Engine } from '../../src/engine/openai.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import { createAdapter, readAdapter } from '../../src/learn/adapter.ts';
import { tokenizeThumb, truncateThumb } from '../../src/learn/pair-tokens.ts';
import { DpoTrainer } from '../../src/learn/trainer.ts';
import type { FinetuneStats, StatsRecord } from '../../src/scheduler/stats.ts';
import { loadStories, SMALL_KV, type Loaded } from './engine-helpers.ts';
import { testGpu } from './gpu.ts';

let ctx: GpuContext;
let loaded: Loaded;

beforeAll(async () => {
  ctx = await testGpu();
  loaded = await loadStories(ctx);
});

const make = () =>
  createEngine(ctx, loaded.model, { kvBudgetBytes: SMALL_KV, maxTokensPerIteration: 64, maxSeqs: 4, modelName: 'stories260K', adapters: { slots: 2, maxRank: 4 }, scheduler: { budgetMs: 0, policy: 'mace', tuning: { minFinetuneSamples: 0 } } });

const LEARNING = { rank: 4, lr: 5e-3, beta: 0.5, epochs: 1, maxTokens: 32 };

async function until(cond: () => boolean, ms = 90_000): Promise<void> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > ms) throw new Error('timed out waiting for the engine');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function answer(e: Engine, prompt: string, seed: number) {
  const r = await e.completions.create({ prompt, max_tokens: 10, temperature: 1, seed });
  return { id: r.id, prompt, text: r.choices[0].text };
}

describe('unpaired thumbs in the engine', () => {
  it('a thumbs-up and a thumbs-down on different answers each run a KTO step; the adapter equals the trainer on the same examples', async () => {
    const engine = make();
    const records: StatsRecord[] = [];
    engine.core.onStats((r) => records.push(r));
    await engine.learning.enable(LEARNING);
    const a = await answer(engine, 'Once upon a time', 1);
    const b = await answer(engine, 'The little bird', 2);
    const ra = await engine.feedback({ completionId: a.id, rating: 'up' });
    expect(ra.added).toEqual([]);
    expect(ra.thumbsAdded).toHaveLength(1);
    await until(() => engine.learning.status()!.steps >= 1);
    await engine.feedback({ completionId: b.id, rating: 'down' });
    // The trainer counts a step before the learner dequeues its job: wait for both.
    await until(() => engine.learning.status()!.steps >= 2 && engine.learning.status()!.pendingPairs === 0);
    const st = engine.learning.status()!;
    expect(st).toMatchObject({ version: 2, thumbs: 2, pairs: 0, pendingPairs: 0, pendingThumbs: 0, failedSteps: 0 });
    const finetunes = () => records.filter((r): r is FinetuneStats => r.type === 'finetune');
    await until(() => finetunes().length >= 2); // the stats stream may lag the status
    const steps = finetunes();
    expect(steps.map((s) => [s.method, s.adapterVersion])).toEqual([['kto', 1], ['kto', 2]]);
    expect(steps.every((s) => Number.isFinite(s.loss) && !s.skipped)).toBe(true);
    expect(Number.isFinite(steps[0]['rewards/chosen']) && Number.isNaN(steps[0]['rewards/rejected'])).toBe(true); // a desirable example
    expect(Number.isNaN(steps[1]['rewards/chosen']) && Number.isFinite(steps[1]['rewards/rejected'])).toBe(true);

    // The same two KTO steps on the trainer alone: a's KL slot is its own completion (no partner yet,
    // z0 = 0), b's is a's completion (the last other conversation's answer).
    const tok = loaded.model.tokenizer;
    const ta = truncateThumb(tokenizeThumb(tok, { prompt: a.prompt, completion: a.text, label: true }, { eos: null }), 32)!;
    const tb = truncateThumb(tokenizeThumb(tok, { prompt: b.prompt, completion: b.text, label: false }, { eos: null }), 32)!;
    const learner = engine.core.learnerState!;
    const adapter = await createAdapter(ctx, loaded.model.config, learner.adapter.config, 1);
    const trainer = new DpoTrainer(ctx, loaded.model.weights, adapter, learner.trainer.options);
    try {
      const ea = { ...ta, kl: ta.completion };
      const eb = { ...tb, kl: ta.completion.slice(0, 32 - tb.prompt.length) };
      await trainer.runKtoStep(ea, await trainer.ktoReferenceLogprobs(ea));
      await trainer.runKtoStep(eb, await trainer.ktoReferenceLogprobs(eb));
      const want = await readAdapter(ctx, adapter);
      const got = await readAdapter(ctx, learner.adapter);
      let worst = 0;
      want.tensors.forEach((t, i) => {
        for (const k of ['A', 'B'] as const) for (let j = 0; j < t[k].length; j++) worst = Math.max(worst, Math.abs(t[k][j] - got.tensors[i][k][j]));
      });
      expect(worst).toBeLessThan(1e-5);
      expect(want.tensors.some((t) => t.B.some((v) => v !== 0))).toBe(true); // the steps moved the adapter
    } finally {
      trainer.destroy();
      adapter.destroy();
      engine.destroy();
    }
  });

  it('an answer rated before learning starts is replayed as a thumb; the opposite rating in its context makes a DPO pair instead', async () => {
    const engine = make();
    const a = await answer(engine, 'Once upon a time', 3);
    let b = await answer(engine, 'Once upon a time', 4);
    for (let seed = 5; b.text.trim() === a.text.trim(); seed++) b = await answer(engine, 'Once upon a time', seed); // equal answers never pair
    const c = await answer(engine, 'Tom went to the park', 5);
    await engine.feedback({ completionId: a.id, rating: 'down' });
    await engine.feedback({ completionId: c.id, rating: 'up' });
    const paired = await engine.feedback({ completionId: b.id, rating: 'up' });
    expect(paired.added).toHaveLength(1);
    expect(paired.thumbsRemoved.map((t) => t.completionId)).toEqual([a.id]);
    const records: StatsRecord[] = [];
    engine.core.onStats((r) => records.push(r));
    const st = await engine.learning.enable(LEARNING);
    expect(st).toMatchObject({ pairs: 1, thumbs: 1, pendingPairs: 2, pendingThumbs: 1 });
    const finetunes = () => records.filter((r): r is FinetuneStats => r.type === 'finetune');
    await until(() => finetunes().length >= 2);
    const methods = finetunes().map((s) => s.method).sort();
    expect(methods).toEqual(['dpo', 'kto']);
    engine.destroy();
  });
});
