/**
 * The CPU ReferenceTrainer (the spec of DpoTrainer over many steps; GPU agreement is in
 * test/browser/trainer.test.ts): PEFT-style init, a batch is one step on the mean loss, and the
 * training loop drives it to fit its pairs.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { AdapterConfig } from '../../src/learn/adapter.ts';
import { dpoPair } from '../../src/learn/dpo.ts';
import type { TokenPair } from '../../src/learn/reference.ts';
import { initAdapterRef, ReferenceTrainer, type ReferenceTrainerOptions } from '../../src/learn/reference-trainer.ts';
import { trainDpo } from '../../src/learn/train-loop.ts';
import { LINEAR_MODULES, linearShape } from '../../src/model/tensors.ts';
import { makeFixture } from '../util/fixtures.ts';

const dir = new URL('../../public/models/stories260K/', import.meta.url);
const tokenizer = { tokenizerJson: readFileSync(new URL('tokenizer.json', dir), 'utf8'), tokenizerConfig: readFileSync(new URL('tokenizer_config.json', dir), 'utf8') };
const fx = makeFixture({ arch: 'llama', dtype: 'F32', seed: 11 }, tokenizer);
const adapterConfig: AdapterConfig = { r: 4, loraAlpha: 8, useRslora: false, targetModules: [...LINEAR_MODULES], baseModelNameOrPath: 'fixture' };
const options: ReferenceTrainerOptions = { maxTokens: 16, beta: 0.5, schedule: { kind: 'constant', baseLr: 5e-3, warmupSteps: 0, totalSteps: 100 } };
const p: TokenPair = { prompt: [1, 57, 300, 12], chosen: [88, 401, 7, 260], rejected: [89, 33, 500] };
const q: TokenPair = { prompt: [1, 40, 9], chosen: [77, 12, 300, 5], rejected: [6, 6, 410, 2, 19] };

describe('ReferenceTrainer', () => {
  it('starts as PEFT does: every A uniform in ±1/sqrt(in), every B zero, the same for the same seed', () => {
    const t = new ReferenceTrainer(fx.config, fx.host, adapterConfig, 3, options);
    const a = t.adapter();
    expect(a.tensors).toHaveLength(fx.config.nLayers * LINEAR_MODULES.length);
    for (const { module, A, B } of a.tensors) {
      const [out, inp] = linearShape(fx.config, module);
      expect([A.length, B.length]).toEqual([4 * inp, out * 4]);
      expect(Math.max(...A.map(Math.abs))).toBeLessThanOrEqual(1 / Math.sqrt(inp));
      expect(new Set(A).size).toBeGreaterThan(A.length / 2);
      expect(B.every((x) => x === 0)).toBe(true);
    }
    expect(initAdapterRef(t.layout, 3)).toEqual(t.optimizerState.params);
    expect(initAdapterRef(t.layout, 4)).not.toEqual(t.optimizerState.params);
  });

  it('a batch is one optimizer step on the mean loss: [p, p] steps exactly like p alone; [p, q] reports the mean loss', async () => {
    const one = new ReferenceTrainer(fx.config, fx.host, adapterConfig, 3, options);
    const two = new ReferenceTrainer(fx.config, fx.host, adapterConfig, 3, options);
    const ref = await one.referenceLogprobs(p);
    const a = await one.runStep(p, { chosen: ref.chosen + 0.3, rejected: ref.rejected - 0.2 });
    const b = await two.runBatch([p, p], [{ chosen: ref.chosen + 0.3, rejected: ref.rejected - 0.2 }, { chosen: ref.chosen + 0.3, rejected: ref.rejected - 0.2 }]);
    expect(b.loss).toBeCloseTo(a.loss, 12);
    expect(two.optimizerState.params).toEqual(one.optimizerState.params);
    expect(b.step).toBe(1);

    const t = new ReferenceTrainer(fx.config, fx.host, adapterConfig, 3, options);
    const refs = [await t.referenceLogprobs(p), await t.referenceLogprobs(q)];
    refs[0].chosen += 1; // z ≠ 0 for p
    const pol = [await t.logprobs(p, true), await t.logprobs(q, true)];
    const want = (dpoPair({ policyChosen: pol[0].chosen, policyRejected: pol[0].rejected, refChosen: refs[0].chosen, refRejected: refs[0].rejected }, 0.5).loss + Math.log(2)) / 2;
    const m = await t.runBatch([p, q], refs);
    expect(m.loss).toBeCloseTo(want, 10);
    expect(m['rewards/accuracies']).toBe(0); // p's reward is negative, q's is a tie
  });

  it('trainDpo drives it to fit two pairs: loss falls below 0.3 and both rank right', async () => {
    const t = new ReferenceTrainer(fx.config, fx.host, adapterConfig, 3, options);
    const r = await trainDpo({ trainer: t, pairs: [p, q], evalPairs: [p, q], steps: 16, seed: 1 });
    expect(r.before!.ties).toBe(2);
    expect(r.after!.loss).toBeLessThan(0.3);
    expect(r.after!['rewards/accuracies']).toBe(1);
    expect(r.steps.map((s) => s.step)).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
  });
});
