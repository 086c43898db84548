/**
 * The prefix cache in the engine on stories260K (SwiftShader): a request whose prompt starts with a
 * cached prefix (a previous turn, a shared header, the same prompt again) produces exactly the greedy
 * tokens of an engine without the cache, for the base model and under a LoRA adapter, after the
 * adapter's weights change, and after the pool evicted part of the prefix; and it computes fewer
 * prompt tokens (usage.prompt_tokens_details.cached_tokens, the iteration records' prefill tokens).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createEngine, type Engine } from '../../src/engine/openai.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import type { AdapterConfig, HostAdapter } from '../../src/learn/adapter.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { LINEAR_MODULES, linearShape } from '../../src/model/tensors.ts';
import type { StatsRecord } from '../../src/scheduler/stats.ts';
import { loadStories, SMALL_KV, type Loaded } from './engine-helpers.ts';
import { randomF32, testGpu } from './gpu.ts';

let ctx: GpuContext;
let loaded: Loaded;
/** Real text's token ids (the golden output), as prompt material. */
let text: number[];

beforeAll(async () => {
  ctx = await testGpu();
  loaded = await loadStories(ctx);
  text = [1, ...loaded.reference.output_ids_after_bos];
});

function adapter(model: ModelConfig, seed: number): HostAdapter {
  const config: AdapterConfig = { r: 4, loraAlpha: 8, useRslora: false, targetModules: [...LINEAR_MODULES], baseModelNameOrPath: 'stories260K' };
  const tensors = [];
  let s = seed;
  for (let layer = 0; layer < model.nLayers; layer++) {
    for (const module of LINEAR_MODULES) {
      const [outDim, inDim] = linearShape(model, module);
      tensors.push({ layer, module, A: randomF32(4 * inDim, s++, 1 / Math.sqrt(inDim)), B: randomF32(outDim * 4, s++, 0.2) });
    }
  }
  return { config, tensors };
}

interface Run {
  ids: number[];
  cached: number;
}

async function greedy(e: Engine, prompt: number[], max_tokens: number, adapterName?: string): Promise<Run> {
  const r = await e.completions.create({ prompt, adapter: adapterName, temperature: 0, max_tokens, return_token_ids: true, ignore_eos: true });
  return { ids: r.choices[0].token_ids!, cached: r.usage!.prompt_tokens_details.cached_tokens };
}

/** Prefill tokens the engine computed while `work` ran (from its iteration records). */
async function prefillTokensOf<T>(e: Engine, work: () => Promise<T>): Promise<{ result: T; prefill: number }> {
  let prefill = 0;
  const off = e.core.onStats((r: StatsRecord) => {
    if (r.type === 'iteration') prefill += r.prefillTokens;
  });
  try {
    return { result: await work(), prefill };
  } finally {
    off();
  }
}

const OPTIONS = { kvBudgetBytes: SMALL_KV, maxTokensPerIteration: 64, maxSeqs: 8, adapters: { slots: 2, maxRank: 4 }, scheduler: { budgetMs: 0 } };

describe('prefix cache: cached and cold requests agree exactly', () => {
  let cold: Engine;
  let warm: Engine;

  beforeAll(() => {
    cold = createEngine(ctx, loaded.model, { ...OPTIONS, prefixCache: false });
    warm = createEngine(ctx, loaded.model, OPTIONS);
  });

  it('the same prompt again: 64 of its 70 tokens come from the cache, same tokens, 6 prompt tokens computed', async () => {
    const prompt = text.slice(0, 70);
    const want = await greedy(cold, prompt, 12);
    expect(want.cached).toBe(0);
    const first = await greedy(warm, prompt, 12);
    expect(first).toEqual({ ids: want.ids, cached: 0 });
    const again = await prefillTokensOf(warm, () => greedy(warm, prompt, 12));
    expect(again.result).toEqual({ ids: want.ids, cached: 64 });
    expect(again.prefill).toBe(6);
    expect(cold.stats().prefixCache).toBeNull();
  });

  it('multi-turn: the next turn (history + reply + new text) reuses the history, output unchanged', async () => {
    const turn1 = text.slice(0, 40);
    const r1 = await greedy(warm, turn1, 20);
    // The next request: the whole conversation so far (prompt + reply) and a new "user turn".
    const turn2 = [...turn1, ...r1.ids, ...text.slice(100, 130)];
    const want = await greedy(cold, turn2, 12);
    const got = await greedy(warm, turn2, 12);
    expect(got.ids).toEqual(want.ids);
    // The first turn's K/V cover 40 + 19 tokens (the last reply token was never run): 3 full blocks.
    expect(got.cached).toBe(48);
  });

  it('requests sharing a header share its blocks; each still gets its own continuation', async () => {
    const header = text.slice(0, 50); // 3 full blocks + 2 tokens
    const suffixes = [text.slice(120, 135), text.slice(140, 151), text.slice(160, 177)];
    const prompts = suffixes.map((s) => [...header, ...s]);
    const want = await Promise.all(prompts.map((p) => greedy(cold, p, 10)));
    await greedy(warm, [...header, 5], 1); // someone computed the header before
    const before = warm.stats().totalBlocks - warm.stats().freeBlocks;
    const got = await Promise.all(prompts.map((p) => greedy(warm, p, 10)));
    expect(got.map((g) => g.ids)).toEqual(want.map((w) => w.ids));
    expect(got.map((g) => g.cached)).toEqual([48, 48, 48]);
    expect(warm.stats().totalBlocks - warm.stats().freeBlocks).toBe(before); // all returned
  });

  it('under an adapter: its own entries, never the base model\'s, and none after its weights change', async () => {
    await cold.adapters.load('A', adapter(loaded.model.config, 7));
    await warm.adapters.load('A', adapter(loaded.model.config, 7));
    const prompt = text.slice(10, 60);
    // The base model cached this prompt's blocks; the adapter must not see them.
    await greedy(warm, prompt, 1);
    const want = await greedy(cold, prompt, 10, 'A');
    expect(await greedy(warm, prompt, 10, 'A')).toEqual({ ids: want.ids, cached: 0 });
    expect(await greedy(warm, prompt, 10, 'A')).toEqual({ ids: want.ids, cached: 48 });
    // The base model's tokens differ for this prompt (else the checks above prove nothing).
    expect((await greedy(cold, prompt, 10)).ids).not.toEqual(want.ids);
    // New weights under the same name: the old entries are stale.
    const invalidatedBefore = warm.stats().prefixCache!.invalidated;
    await cold.adapters.load('A', adapter(loaded.model.config, 99));
    await warm.adapters.load('A', adapter(loaded.model.config, 99));
    expect(warm.stats().prefixCache!.invalidated).toBeGreaterThan(invalidatedBefore);
    const want2 = await greedy(cold, prompt, 10, 'A');
    expect(want2.ids).not.toEqual(want.ids);
    expect(await greedy(warm, prompt, 10, 'A')).toEqual({ ids: want2.ids, cached: 0 });
    expect(await greedy(warm, prompt, 10, 'A')).toEqual({ ids: want2.ids, cached: 48 });
  });
});

describe('prefix cache under memory pressure', () => {
  it('after the pool reused part of a cached prefix: the rest still hits, tokens unchanged', async () => {
    // 12 blocks of 20 KiB (192 tokens): a 150-token prompt must reuse free cached blocks.
    const opts = { ...OPTIONS, kvBudgetBytes: 12 * 20 * 1024, adapters: undefined };
    const cold = createEngine(ctx, loaded.model, { ...opts, prefixCache: false });
    const warm = createEngine(ctx, loaded.model, opts);
    try {
      expect(warm.stats().totalBlocks).toBe(12);
      const p = text.slice(0, 70); // 5 blocks with its 10 generated tokens
      const q = [1, ...text.slice(60, 200)].slice(0, 150); // 10 blocks with its output
      const wantP = await greedy(cold, p, 10);
      const wantQ = await greedy(cold, q, 10);
      expect((await greedy(warm, p, 10)).ids).toEqual(wantP.ids);
      // P's blocks were freed tail first: Q takes the 7 never-used blocks, then P's last three.
      expect(await greedy(warm, q, 10)).toEqual({ ids: wantQ.ids, cached: 0 });
      expect(warm.stats().prefixCache!.evictions).toBeGreaterThan(0);
      // P's first two blocks are still cached.
      expect(await greedy(warm, p, 10)).toEqual({ ids: wantP.ids, cached: 32 });
      // And now P is fully cached again (it re-registered its blocks).
      expect(await greedy(warm, p, 10)).toEqual({ ids: wantP.ids, cached: 64 });
      expect(warm.stats().freeBlocks).toBe(12);
    } finally {
      cold.destroy();
      warm.destroy();
    }
  });

  it('preemption with shared blocks: every request finishes with its cold tokens', async () => {
    // 10 blocks; eight requests share a 32-token header and each generates past the pool's size, so
    // the newest are preempted (their shared blocks stay with the others) and recomputed from the cache.
    const opts = { ...OPTIONS, kvBudgetBytes: 10 * 20 * 1024, adapters: undefined };
    const cold = createEngine(ctx, loaded.model, { ...opts, prefixCache: false });
    const warm = createEngine(ctx, loaded.model, opts);
    try {
      const header = text.slice(0, 33);
      const prompts = Array.from({ length: 6 }, (_, i) => [...header, ...text.slice(40 + 7 * i, 44 + 7 * i)]);
      const want = [];
      for (const p of prompts) want.push((await greedy(cold, p, 24)).ids);
      await greedy(warm, header, 1);
      const got = await Promise.all(prompts.map((p) => greedy(warm, p, 24)));
      expect(got.map((g) => g.ids)).toEqual(want);
      expect(warm.stats().preemptions).toBeGreaterThan(0);
      expect(warm.stats().freeBlocks).toBe(10);
    } finally {
      cold.destroy();
      warm.destroy();
    }
  });
});
