/**
 * `mace bench drift` end to end on a tiny trace (stories260K on SwiftShader): two phases, a few
 * requests per policy, the simulated user's thumbs through engine.feedback, snapshots evaluated
 * offline. Checks the shape of what the experiment reports (series per policy, the drift, the
 * figures and charts), not the values: on a trace this short nothing has to be learnt.
 */
import { describe, expect, it } from 'vitest';
import { runDriftBench, type DriftBenchOptions } from '../../bench/drift/run.ts';
import { sourceFromUrl } from '../../src/model/source.ts';
import { testGpu } from './gpu.ts';

const tiny: DriftBenchOptions = {
  policies: ['mace', 'inference-only'],
  durationS: 6,
  ratePerS: 1.5,
  answerTokens: 8,
  evalEveryS: 3,
  feedbackRate: 1,
  noise: 0,
  maxRegenerations: 2,
  anchorEvery: 5,
  pairsPerRating: 2,
  maxAnchors: 16,
  returnToFirst: false,
  seedsPerPrompt: 1,
  pairSamplesPerPrompt: 4,
  budgetTbtMultiple: 1.5,
  maxSeqs: 4,
  rank: 4,
  lr: 2e-3,
  beta: 0.5,
  epochs: 1,
  seed: 3,
  env: 'chromium',
};

describe('mace bench drift (tiny trace)', () => {
  it('serves, collects thumbs, snapshots and evaluates every policy over two phases', async () => {
    const ctx = await testGpu();
    const r = await runDriftBench(ctx, sourceFromUrl('/models/stories260K/', { cache: false }), tiny);
    expect(r.schedule.phases.map((p) => p.startS)).toEqual([0, 3]);
    expect(r.heldOutPrompts.length + r.trainPrompts.length).toBe(32);
    expect(r.heldOutPrompts.some((p) => r.trainPrompts.includes(p))).toBe(false);
    expect(r.policies.map((p) => p.policy)).toEqual(['mace', 'inference-only']);
    for (const p of r.policies) {
      // A snapshot at 0, 3 and 6 s: the series spans both phases.
      expect(p.series.map((s) => s.phase)).toEqual(['mentions play', 'mentions a cat, dog or ball', 'mentions a cat, dog or ball']);
      for (const s of p.series) {
        expect(s.winRate).toBeGreaterThanOrEqual(0);
        expect(s.winRate).toBeLessThanOrEqual(1);
        expect(Number.isFinite(s.clpd)).toBe(true);
        expect(s.distinctBigrams).toBeGreaterThanOrEqual(0);
      }
      expect(p.answers).toBeGreaterThan(0);
      expect(p.rated).toBe(p.answers); // feedback rate 1
      expect(p.ttftMs.count).toBeGreaterThan(0);
      expect(p.timeToAdaptS).toHaveLength(1);
    }
    const inf = r.policies[1];
    expect(inf.finetuneSteps).toBe(0);
    // The base model serves throughout: every point is the base against itself.
    expect(inf.series.every((s) => s.servedVersion === 0 && s.winRate === 0.5 && s.clpd === 0)).toBe(true);
    expect(Object.keys(r.plots).sort()).toEqual(['drift-clpd.svg', 'drift-distinct-bigrams.svg', 'drift-reward-accuracy.svg', 'drift-tbt-cdf.svg', 'drift-win-rate.svg']);
    for (const svg of Object.values(r.plots)) expect(svg.startsWith('<svg')).toBe(true);
    expect(r.markdown).toContain('| mace |');
    expect(r.markdown).toContain('| inference-only |');
  });
});
