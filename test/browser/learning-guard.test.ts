/**
 * The poisoning guard (issue 14) on stories260K (SwiftShader): with anchors held out from the user's
 * early pairs, a burst of contradictory pairs trains candidates whose anchor accuracy falls; they are
 * rolled back and never served — the served bank slot always holds a promoted version's weights —
 * while chat requests keep being answered.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createEngine } from '../../src/engine/openai.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import { loadStories, SMALL_KV, type Loaded } from './engine-helpers.ts';
import { testGpu } from './gpu.ts';

let ctx: GpuContext;
let loaded: Loaded;

beforeAll(async () => {
  ctx = await testGpu();
  loaded = await loadStories(ctx);
});

const OPENINGS = ['Once upon a time', 'The cat', 'Lily and Ben', 'One day, a big dog', 'Tom had a red ball', 'She was sad', 'The sun', 'Mom said', 'A little bird', 'The boy', 'In the park', 'Sam and Max'];
const good = (i: number) => ({ prompt: OPENINGS[i % OPENINGS.length] + (i >= OPENINGS.length ? ` ${i}` : ''), chosen: ' and they played with the ball all day.', rejected: ' and it was sad and cried.' });
const flipped = (i: number) => ({ ...good(i), chosen: good(i).rejected, rejected: good(i).chosen });

async function until(cond: () => boolean, ms = 120_000): Promise<void> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > ms) throw new Error('timed out waiting for the engine');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('learning guard', () => {
  it('rolls back candidates a contradictory burst makes worse on the anchors; the served slot only ever holds promoted weights', async () => {
    const engine = createEngine(ctx, loaded.model, { kvBudgetBytes: SMALL_KV, maxTokensPerIteration: 64, maxSeqs: 4, adapters: { slots: 2, maxRank: 4 }, scheduler: { budgetMs: 0, tuning: { minFinetuneSamples: 0 } } });
    try {
      await engine.learning.enable({ rank: 4, lr: 3e-2, epochs: 1, maxTokens: 32, guard: { anchorEvery: 2, setSize: 4, threshold: 0.1 } });
      const core = engine.core;
      const learner = core.learnerState!;
      // The user's early pairs: 8 → 4 anchors held out, 4 trained.
      for (let i = 0; i < 8; i++) expect(core.learnPair(`good-${i}`, good(i))).toBe(true);
      await until(() => learner.pendingPairs === 0);
      const early = engine.learning.status()!;
      expect(early.guard).toMatchObject({ anchors: 4, rolledBack: 0 });
      expect(early.guard!.serving).not.toBeNull(); // the early versions were promoted
      // A contradictory burst (within the per-conversation cap), while chats are answered.
      const answers: Promise<unknown>[] = [];
      for (let i = 100; i < 124; i++) {
        core.learnPair(`bad-${i}`, flipped(i));
        if (i % 6 === 0) answers.push(engine.completions.create({ prompt: 'Once upon a time', max_tokens: 8, temperature: 0 }));
      }
      await until(() => learner.pendingPairs === 0);
      const done = await Promise.all(answers);
      expect(done).toHaveLength(4);
      const st = engine.learning.status()!;
      const g = st.guard!;
      // Judged against the early anchors (a burst cannot refresh the set: refreshAfterMs), every
      // burst candidate was dropped: the version serving is still the last early one.
      expect(g.rolledBack).toBe(st.version - early.version);
      expect(g.serving).toBe(early.guard!.serving);
      // Every promotion kept the rule: judged accuracy within threshold of the reference.
      const decisions = learner['promotion']!.guard.history.filter((r) => r.kind === 'decision');
      for (const d of decisions) if (d.kind === 'decision' && d.decision === 'promote' && d.reason === 'within-threshold') expect(d.accuracy!).toBeGreaterThanOrEqual(d.reference! - 0.1 - 1e-9);
      // The served slot holds the promoted weights (never a rolled-back candidate): the same tokens
      // as the promoted host loaded into another slot.
      const promoted = learner['promotion']!.promoted;
      await engine.adapters.load('check', promoted);
      const tokens = async (adapter: string) => (await engine.completions.create({ prompt: 'The cat', max_tokens: 16, temperature: 0, ignore_eos: true, return_token_ids: true, adapter })).choices[0].token_ids!;
      expect(await tokens('learnt')).toEqual(await tokens('check'));
      console.log(`guard: ${decisions.length} decisions, ${g.rolledBack} rolled back; serving v${g.serving} of ${st.version}; last ${JSON.stringify(g.last)}`);
    } finally {
      engine.destroy();
    }
  }, 300_000);
});
