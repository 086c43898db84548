/**
 * The training loop's bookkeeping on the CPU, with a fake trainer whose "log-probs" are plain
 * arithmetic: pair checks (typed error naming the field; too-long pairs skipped and named),
 * deterministic per-epoch shuffles, reference log-probs computed once per pair, non-finite steps
 * counted, and held-out metrics (TRL's strict accuracy, ties, ties-as-half) against dpoBatch.
 */
import { describe, expect, it } from 'vitest';
import { dpoBatch } from '../../src/learn/dpo.ts';
import type { TokenPair } from '../../src/learn/reference.ts';
import { checkPairs, evaluateDpo, trainDpo, trainingOrder, TrainLoopError, type LoopTrainer, type NamedPair } from '../../src/learn/train-loop.ts';
import type { PairLogprobs, StepMetrics } from '../../src/learn/trainer.ts';

/** A trainer whose policy log-prob of a sequence is -(sum of ids)/100 + shift·(is chosen), shift growing per step. */
class FakeTrainer implements LoopTrainer {
  readonly options = { maxTokens: 8, beta: 0.5 };
  readonly weights = { config: { vocabSize: 50 } };
  refCalls: TokenPair[] = [];
  stepPairs: TokenPair[] = [];
  refsSeen: PairLogprobs[] = [];
  shift = 0;
  nanAt = new Set<number>();

  private base(ids: number[]): number {
    return -ids.reduce((a, b) => a + b, 0) / 100;
  }
  async logprobs(p: TokenPair, adapter: boolean): Promise<PairLogprobs> {
    const s = adapter ? this.shift : 0;
    return { chosen: this.base(p.chosen) + s, rejected: this.base(p.rejected) - s };
  }
  async referenceLogprobs(p: TokenPair): Promise<PairLogprobs> {
    this.refCalls.push(p);
    return this.logprobs(p, false);
  }
  async runStep(p: TokenPair, ref: PairLogprobs): Promise<StepMetrics> {
    this.stepPairs.push(p);
    this.refsSeen.push(ref);
    const step = this.stepPairs.length;
    const bad = this.nanAt.has(step);
    if (!bad) this.shift += 0.1;
    const pol = await this.logprobs(p, true);
    const { loss, metrics } = dpoBatch([{ policyChosen: pol.chosen, policyRejected: pol.rejected, refChosen: ref.chosen, refRejected: ref.rejected }], this.options.beta);
    return { loss, ...metrics, grad_norm: bad ? NaN : 1, learning_rate: 1e-3, skipped: bad, skipped_steps: 0, step };
  }
  batches: TokenPair[][] = [];
  async runBatch(ps: readonly TokenPair[], refs: readonly PairLogprobs[]): Promise<StepMetrics> {
    this.batches.push([...ps]);
    let m: StepMetrics | undefined;
    for (let i = 0; i < ps.length; i++) m = await this.runStep(ps[i], refs[i]);
    return { ...m!, step: this.batches.length };
  }
}

const pair = (prompt: number[], chosen: number[], rejected: number[], name?: string): NamedPair => ({ prompt, chosen, rejected, name });
const pairs = [pair([1, 2], [3, 4], [5]), pair([1], [6, 7, 8], [9, 10]), pair([1, 3], [11], [12, 13]), pair([2], [4], [7])];

describe('checkPairs', () => {
  it('throws a typed error naming the pair and field of a malformed pair', () => {
    const bad = (p: unknown) => () => checkPairs('pairs', [pairs[0], p as NamedPair], 8, 50);
    expect(bad({ prompt: [1], chosen: [], rejected: [2] })).toThrow(/^pairs\[1\]: chosen must be a non-empty array/);
    expect(bad({ prompt: [1], chosen: [2] })).toThrow(/pairs\[1\]: rejected must be a non-empty array/);
    expect(bad({ prompt: [1], chosen: [2], rejected: [3, 50], name: 'f.jsonl line 2' })).toThrow(/^f\.jsonl line 2: rejected\[1\] = 50 is not a token id < vocab 50/);
    expect(bad({ prompt: [1.5], chosen: [2], rejected: [3] })).toThrow(/prompt\[0\] = 1.5/);
    expect(bad(null)).toThrow(/pairs\[1\] must be a pair/);
    try {
      bad({ prompt: [], chosen: [1], rejected: [2] })();
    } catch (e) {
      expect(e).toBeInstanceOf(TrainLoopError);
      expect((e as TrainLoopError).code).toBe('bad-train-loop-input');
      expect((e as TrainLoopError).field).toBe('pairs[1]: prompt');
    }
  });

  it('skips pairs longer than maxTokens and names them', () => {
    const long = pair([1, 2, 3], [4, 5, 6, 7, 8, 9], [1], 'prefs.jsonl line 7');
    const r = checkPairs('pairs', [pairs[0], long, pair([1], [2], [3, 4, 5, 6, 7, 8, 9, 10])], 8, 50);
    expect(r.ok).toEqual([pairs[0]]);
    expect(r.skipped).toEqual([
      { name: 'prefs.jsonl line 7', index: 1, reason: 'prompt + response = 9 tokens exceeds maxTokens = 8' },
      { name: 'pairs[2]', index: 2, reason: 'prompt + response = 9 tokens exceeds maxTokens = 8' },
    ]);
  });
});

describe('trainingOrder', () => {
  it('is a fresh permutation per epoch, the same for the same seed, different for another', () => {
    const o = trainingOrder(5, 12, 7);
    expect(o).toHaveLength(12);
    expect([...o.slice(0, 5)].sort()).toEqual([0, 1, 2, 3, 4]);
    expect([...o.slice(5, 10)].sort()).toEqual([0, 1, 2, 3, 4]);
    expect(trainingOrder(5, 12, 7)).toEqual(o);
    expect(trainingOrder(5, 12, 8)).not.toEqual(o);
    expect(o.slice(0, 5)).not.toEqual(o.slice(5, 10)); // reshuffled each epoch (true for this seed)
    expect(() => trainingOrder(0, 3, 1)).toThrow(TrainLoopError);
    expect(() => trainingOrder(3, -1, 1)).toThrow(/steps = -1/);
  });
});

describe('trainDpo', () => {
  it('caches reference log-probs once per pair, trains the seeded order, and evaluates before/after', async () => {
    const t = new FakeTrainer();
    const evalPairs = [pair([1], [2], [3]), pair([4], [5, 6], [7])];
    const logged: number[] = [];
    const r = await trainDpo({ trainer: t, pairs, evalPairs, epochs: 3, seed: 11, onMetrics: (m) => logged.push(m.step) });
    // Reference: every train and eval pair exactly once, although train pairs are stepped 3 times.
    expect(t.refCalls).toHaveLength(pairs.length + evalPairs.length);
    expect(new Set(t.refCalls).size).toBe(6);
    expect(r.steps).toHaveLength(12);
    expect(logged).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(t.stepPairs).toEqual(trainingOrder(4, 12, 11).map((i) => pairs[i]));
    t.stepPairs.forEach((p, i) => expect(t.refsSeen[i]).toEqual({ chosen: -p.chosen.reduce((a, b) => a + b, 0) / 100, rejected: -p.rejected.reduce((a, b) => a + b, 0) / 100 }));
    expect(r.nonFiniteSteps).toBe(0);
    expect(r.skippedPairs).toEqual([]);

    // Before: policy = reference, every reward 0: TRL's strict accuracy 0, all ties, 0.5 with ties as half.
    expect(r.before).toMatchObject({ pairs: 2, ties: 2, accuracy_ties_half: 0.5, 'rewards/accuracies': 0, 'rewards/margins': 0 });
    expect(r.before!.loss).toBeCloseTo(Math.LN2, 12);
    // After: shift 1.2 → each pair's margin is β·2·1.2 = 1.2.
    expect(r.after).toMatchObject({ pairs: 2, ties: 0, accuracy_ties_half: 1, 'rewards/accuracies': 1 });
    expect(r.after!['rewards/margins']).toBeCloseTo(1.2, 9);
    expect(r.after!.loss).toBeCloseTo(Math.log1p(Math.exp(-1.2)), 9);
  });

  it('counts non-finite steps, skips too-long pairs by name, and takes steps over epochs', async () => {
    const t = new FakeTrainer();
    t.nanAt = new Set([2, 4]);
    const long = pair([1, 2, 3, 4], [5, 6, 7, 8, 9], [1], 'file.jsonl line 3');
    const r = await trainDpo({ trainer: t, pairs: [...pairs, long], steps: 6, seed: 1 });
    expect(r.steps).toHaveLength(6);
    expect(r.nonFiniteSteps).toBe(2);
    expect(r.skippedPairs.map((s) => s.name)).toEqual(['file.jsonl line 3']);
    expect(t.stepPairs).not.toContain(long);
    expect(r.before).toBeUndefined();
    await expect(trainDpo({ trainer: t, pairs, steps: 2, epochs: 1 })).rejects.toThrow(/steps and epochs exclude each other/);
    await expect(trainDpo({ trainer: t, pairs: [long] })).rejects.toThrow(/has 0 usable pairs/);
  });

  it('batchSize: epochs x pairs visits in the same seeded order, batchSize pairs per optimizer step (the last one short)', async () => {
    const t = new FakeTrainer();
    const seen: number[] = [];
    const r = await trainDpo({ trainer: t, pairs, epochs: 3, batchSize: 5, seed: 11, onMetrics: (_m, ps) => seen.push(ps.length) });
    expect(seen).toEqual([5, 5, 2]);
    expect(r.steps.map((m) => m.step)).toEqual([1, 2, 3]);
    expect(t.batches.flat()).toEqual(trainingOrder(4, 12, 11).map((i) => pairs[i]));
    const s = new FakeTrainer();
    await trainDpo({ trainer: s, pairs, steps: 2, batchSize: 3, seed: 1 });
    expect(s.batches.map((b) => b.length)).toEqual([3, 3]);
    await expect(trainDpo({ trainer: s, pairs, batchSize: 0 })).rejects.toThrow(/batchSize = 0/);
  });

  it('evaluateDpo reuses cached references and matches dpoBatch', async () => {
    const t = new FakeTrainer();
    t.shift = -0.3; // the policy prefers the rejected answers: strict accuracy 0, no ties
    const cache = new Map();
    const e1 = await evaluateDpo(t, pairs, cache);
    const e2 = await evaluateDpo(t, pairs, cache);
    expect(t.refCalls).toHaveLength(pairs.length);
    expect(e2).toEqual(e1);
    const rows = await Promise.all(pairs.map(async (p) => ({ pol: await t.logprobs(p, true), ref: await t.logprobs(p, false) })));
    const want = dpoBatch(rows.map(({ pol, ref }) => ({ policyChosen: pol.chosen, policyRejected: pol.rejected, refChosen: ref.chosen, refRejected: ref.rejected })), 0.5);
    expect(e1).toEqual({ loss: want.loss, ...want.metrics, pairs: 4, ties: 0, accuracy_ties_half: 0 });
    await expect(evaluateDpo(t, [])).rejects.toThrow(TrainLoopError);
  });
});
