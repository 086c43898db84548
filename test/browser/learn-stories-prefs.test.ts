/**
 * The stories-domain pair generator on the real engine (stories260K on SwiftShader): a handful of
 * seeded samples judged by the default rule become pairs whose chosen satisfies it and whose
 * rejected does not, the same seed gives the same text again, and the pairs go into a PreferenceSet.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createEngine, type Engine } from '../../src/engine/openai.ts';
import { PreferenceSet } from '../../src/learn/pairs.ts';
import { DEFAULT_STORY_RULE, makeStoryPairs, ruleScore } from '../../src/learn/stories-prefs.ts';
import { loadStories, SMALL_KV } from './engine-helpers.ts';
import { testGpu } from './gpu.ts';

let engine: Engine;

beforeAll(async () => {
  const ctx = await testGpu();
  const loaded = await loadStories(ctx);
  engine = createEngine(ctx, loaded.model, { kvBudgetBytes: SMALL_KV, maxTokensPerIteration: 256, maxSeqs: 8, modelName: 'stories260K' });
});

const complete = async (prompt: string, seed: number) => (await engine.completions.create({ prompt, temperature: 1, max_tokens: 32, seed })).choices[0].text;

describe('makeStoryPairs on stories260K', () => {
  it('3 prompts x 6 samples → pairs that follow the default rule, split by prompt, reproducible by seed', async () => {
    const prompts = ['Once upon a time', 'Once upon a time, there was a', 'Sam and his mom'];
    const r = await makeStoryPairs({ complete, prompts, samplesPerPrompt: 6, heldOutFraction: 0.34, seed: 42 });
    console.log(`stories pairs: ${JSON.stringify(r.totals)}; train ${r.train.length}, held-out ${r.heldOut.length}; per prompt ${JSON.stringify(r.perPrompt.map((p) => [p.prompt, p.preferred, p.dispreferred, p.pairs]))}`);
    expect(r.rule.name).toBe(DEFAULT_STORY_RULE.name);
    expect(r.totals.samples).toBe(18);
    expect(r.totals.preferred + r.totals.dispreferred).toBe(18); // a mention rule has no neutral outcome
    expect(r.heldOutPrompts).toHaveLength(1);
    const all = [...r.train, ...r.heldOut];
    expect(all.length).toBeGreaterThan(0);
    expect(all.length).toBe(r.perPrompt.reduce((s, p) => s + Math.min(p.preferred, p.dispreferred), 0));
    for (const p of all) {
      expect(ruleScore(p.chosen)).toBe(1);
      expect(ruleScore(p.rejected)).toBe(0);
      expect(p.chosen.trim().length).toBeGreaterThan(0);
      expect(p.rejected.trim().length).toBeGreaterThan(0);
    }
    expect(r.heldOut.every((p) => p.prompt === r.heldOutPrompts[0])).toBe(true);
    // Seeded sampling: the same (prompt, seed) gives the same continuation again.
    expect(await complete(all[0].prompt, all[0].chosenSeed)).toBe(all[0].chosen);
    expect(await complete(all[0].prompt, all[0].rejectedSeed)).toBe(all[0].rejected);

    const set = new PreferenceSet();
    for (const p of r.train) expect(set.add({ prompt: p.prompt, chosen: p.chosen, rejected: p.rejected }).added).toBe(true);
    expect(set.size).toBe(r.train.length);
  });
});
