/**
 * KV pruning in the engine (issue 13) on stories260K (SwiftShader): a request with kv_window
 * (attention sinks + recent window) produces exactly the CPU reference's greedy tokens under the same
 * mask, frees the blocks no later query can reach while it runs (the pool holds about sinks + window,
 * not the whole sequence), mixes with full-attention requests in one batch, keeps its own prefix-cache
 * entries, and bad settings are typed errors naming the field.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { EngineOptionsError, InvalidRequestError } from '../../src/engine/errors.ts';
import { createEngine, type Engine } from '../../src/engine/openai.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import { UNBOUNDED_WINDOW } from '../../src/kernels/attention.ts';
import { ReferenceModel } from '../../src/model/reference.ts';
import type { StatsRecord } from '../../src/scheduler/stats.ts';
import { loadStories, SMALL_KV, type Loaded } from './engine-helpers.ts';
import { testGpu } from './gpu.ts';

let ctx: GpuContext;
let loaded: Loaded;
let engine: Engine;
let prompt: number[];

beforeAll(async () => {
  ctx = await testGpu();
  loaded = await loadStories(ctx);
  engine = createEngine(ctx, loaded.model, { kvBudgetBytes: SMALL_KV, maxTokensPerIteration: 64, maxSeqs: 4, scheduler: { budgetMs: 0 } });
  prompt = [1, ...loaded.reference.output_ids_after_bos.slice(0, 19)];
});

/** Greedy tokens of the CPU reference with a key window (the kernels' mask). */
function referenceGreedy(tokens: number[], steps: number, window: { sinks: number; window: number }): number[] {
  const ref = new ReferenceModel(loaded.model.config, loaded.host);
  const cache = ref.newCache(tokens.length + steps);
  const V = loaded.model.config.vocabSize;
  let logits = ref.forward(tokens, cache, window);
  let row = logits.subarray(logits.length - V);
  const out: number[] = [];
  for (let s = 0; s < steps; s++) {
    let best = 0;
    for (let i = 1; i < V; i++) if (row[i] > row[best]) best = i;
    out.push(best);
    if (s === steps - 1) break;
    logits = ref.forward([best], cache, window);
    row = logits;
  }
  return out;
}

async function greedy(e: Engine, p: number[], max_tokens: number, kv_window?: { sinks?: number; window: number }) {
  const r = await e.completions.create({ prompt: p, temperature: 0, max_tokens, ignore_eos: true, return_token_ids: true, kv_window });
  return { ids: r.choices[0].token_ids!, cached: r.usage!.prompt_tokens_details.cached_tokens };
}

describe('kv_window in the engine', () => {
  const W = { sinks: 4, window: 24 };

  it('greedy tokens equal the CPU reference under the same mask, and differ from the full cache', async () => {
    const want = referenceGreedy(prompt, 80, W);
    const got = await greedy(engine, prompt, 80, W);
    expect(got.ids).toEqual(want);
    expect(got.ids).not.toEqual(referenceGreedy(prompt, 80, { sinks: 0, window: UNBOUNDED_WINDOW }));
  });

  it('holds about sinks + window of KV while it runs, not the whole sequence', async () => {
    let most = 0;
    const off = engine.core.onStats((r: StatsRecord) => {
      if (r.type === 'iteration') most = Math.max(most, r.kvBlocksUsed);
    });
    const before = engine.stats().prunedBlocks;
    try {
      await greedy(engine, [...prompt, 7], 120, W);
    } finally {
      off();
    }
    // 140 positions = 9 blocks in full; the window keeps the sink block, the blocks the last 24
    // positions span (at most 3) and the block being written.
    expect(most).toBeLessThanOrEqual(4);
    expect(engine.stats().prunedBlocks - before).toBeGreaterThanOrEqual(5);
    expect(engine.stats().freeBlocks).toBe(engine.stats().totalBlocks);
  });

  it('mixes with full-attention requests in one batch: each gets its solo tokens', async () => {
    const jobs = [
      { p: prompt, w: W },
      { p: prompt, w: undefined },
      { p: prompt.slice(0, 11), w: { window: 9 } },
    ];
    const alone = [];
    for (const j of jobs) alone.push((await greedy(engine, j.p, 48, j.w)).ids);
    const together = await Promise.all(jobs.map((j) => greedy(engine, j.p, 48, j.w)));
    expect(together.map((t) => t.ids)).toEqual(alone);
    expect(alone[1]).toEqual(referenceGreedy(prompt, 48, { sinks: 0, window: UNBOUNDED_WINDOW }));
    expect(alone[2]).toEqual(referenceGreedy(prompt.slice(0, 11), 48, { sinks: 0, window: 9 }));
  });

  it('keeps its own prefix-cache entries: a windowed request never reuses full-attention K/V', async () => {
    const long = [1, ...loaded.reference.output_ids_after_bos.slice(40, 110)];
    await greedy(engine, long, 2); // full attention caches the prompt
    const w = { sinks: 2, window: 20 };
    const first = await greedy(engine, long, 30, w);
    expect(first.cached).toBe(0);
    expect(first.ids).toEqual(referenceGreedy(long, 30, w));
    const again = await greedy(engine, long, 30, w);
    expect(again.ids).toEqual(first.ids);
    expect(again.cached).toBeGreaterThan(0); // its own blocks, registered before they were pruned
  });

  it('the engine option applies to requests without kv_window; bad settings name the field', async () => {
    const windowed = createEngine(ctx, loaded.model, { kvBudgetBytes: SMALL_KV, maxSeqs: 2, scheduler: { budgetMs: 0 }, kvWindow: { sinks: 4, window: 24 } });
    try {
      expect((await greedy(windowed, prompt, 40)).ids).toEqual(referenceGreedy(prompt, 40, W));
    } finally {
      windowed.destroy();
    }
    expect(() => createEngine(ctx, loaded.model, { kvWindow: { window: 0 } })).toThrow(EngineOptionsError);
    await expect(greedy(engine, prompt, 4, { window: 0 })).rejects.toMatchObject({ code: 'invalid-request', param: 'kv_window.window' });
    await expect(greedy(engine, prompt, 4, { sinks: -1, window: 8 })).rejects.toBeInstanceOf(InvalidRequestError);
    await expect(engine.completions.create({ prompt, kv_window: { window: 8, size: 3 } as never })).rejects.toMatchObject({ param: 'kv_window.size' });
    expect((await greedy(engine, prompt, 4)).ids.length).toBe(4); // still serving
  });
});
