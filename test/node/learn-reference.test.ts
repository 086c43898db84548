/**
 * The training reference (whole model + LoRA, manual backward, DPO) against finite differences of
 * its own forward, and its forward against the serving reference when the adapter is a no-op.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { HostAdapter } from '../../src/learn/adapter.ts';
import { loraKey, TrainingReference, type TokenPair } from '../../src/learn/reference.ts';
import { ReferenceModel } from '../../src/model/reference.ts';
import { LINEAR_MODULES, linearShape } from '../../src/model/tensors.ts';
import { makeFixture, type FixtureArch } from '../util/fixtures.ts';
import { mulberry32, randomF32 } from '../util/random.ts';

const dir = new URL('../../public/models/stories260K/', import.meta.url);
const tokenizer = { tokenizerJson: readFileSync(new URL('tokenizer.json', dir), 'utf8'), tokenizerConfig: readFileSync(new URL('tokenizer_config.json', dir), 'utf8') };

function randomAdapter(fx: ReturnType<typeof makeFixture>, r: number, seed: number, bScale: number): HostAdapter {
  const tensors = [];
  let s = seed;
  for (let layer = 0; layer < fx.config.nLayers; layer++) {
    for (const module of LINEAR_MODULES) {
      const [out, inp] = linearShape(fx.config, module);
      tensors.push({ layer, module, A: randomF32(r * inp, s++, 0.3), B: randomF32(out * r, s++, bScale) });
    }
  }
  return { config: { r, loraAlpha: 2 * r, useRslora: false, targetModules: [...LINEAR_MODULES], baseModelNameOrPath: 'fixture' }, tensors };
}

const pair: TokenPair = { prompt: [1, 57, 300, 12], chosen: [88, 401, 7, 260], rejected: [89, 33, 500] };

// The mistral case has a sliding window (3) shorter than the pair's sequences (8 and 7 tokens).
const CASES: [FixtureArch, number | null][] = [['llama', null], ['qwen2', null], ['llama-tied', null], ['mistral', 3]];
for (const [arch, slidingWindow] of CASES) {
  describe(`training reference, ${arch} fixture${slidingWindow ? `, sliding window ${slidingWindow}` : ''}`, () => {
    const base = makeFixture({ arch, dtype: 'F32', seed: 11 }, tokenizer);
    const fx = slidingWindow ? { ...base, config: { ...base.config, slidingWindow } } : base;

    it('with B = 0 its forward equals the serving reference (the adapter is a no-op)', () => {
      const train = new TrainingReference(fx.config, fx.host, randomAdapter(fx, 4, 100, 0));
      const tokens = [...pair.prompt, ...pair.chosen];
      const got = train.forward(tokens).logits;
      const serve = new ReferenceModel(fx.config, fx.host);
      const want = serve.forward(tokens, serve.newCache(16));
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
      expect(worst).toBeLessThan(1e-5);
    });

    it('DPO gradients of every module match central finite differences', () => {
      const adapter = randomAdapter(fx, 4, 200, 0.3);
      // Reference log-probs = the policy's own: z = 0, where the sigmoid's slope is largest, so the
      // gradients are O(1) (with far-off references the loss saturates and every gradient is ~0).
      const policy = new TrainingReference(fx.config, fx.host, adapter);
      const refLp = { chosen: policy.responseLogprob(policy.forward([...pair.prompt, ...pair.chosen]), pair.prompt.length), rejected: policy.responseLogprob(policy.forward([...pair.prompt, ...pair.rejected]), pair.prompt.length) };
      const beta = 1;
      const { grads, result } = new TrainingReference(fx.config, fx.host, adapter).dpo(pair, refLp, beta);
      expect(Number.isFinite(result.loss)).toBe(true);
      const lossWith = (adj: HostAdapter) => new TrainingReference(fx.config, fx.host, adj).dpo(pair, refLp, beta).result.loss;
      const rnd = mulberry32(arch.length);
      const h = 3e-3;
      let checked = 0;
      let large = 0;
      // Two entries of A and two of B in a spread of (layer, module): wiring errors show as O(1) mismatches.
      for (const t of adapter.tensors.filter((_, i) => i % 3 === 0)) {
        const g = grads.get(loraKey(t.layer, t.module))!;
        for (const [which, arr, grad] of [['A', t.A, g.dA], ['B', t.B, g.dB]] as const) {
          for (let rep = 0; rep < 2; rep++) {
            const i = Math.floor(rnd() * arr.length);
            const keep = arr[i];
            arr[i] = keep + h;
            const up = lossWith(adapter);
            arr[i] = keep - h;
            const down = lossWith(adapter);
            arr[i] = keep;
            const numeric = (up - down) / (2 * h);
            // f32 forward: the loss carries ~1e-7 relative noise, so compare with an absolute floor.
            expect(Math.abs(grad[i] - numeric), `${t.layer}.${t.module}.${which}[${i}] analytic ${grad[i]} numeric ${numeric}`).toBeLessThan(2e-3 + 2e-2 * Math.abs(numeric));
            checked++;
            if (Math.abs(numeric) > 1e-2) large++;
          }
        }
      }
      expect(checked).toBeGreaterThanOrEqual(16);
      expect(large, 'most sampled gradients must be far above the tolerance floor').toBeGreaterThanOrEqual(checked / 2);
    });
  });
}
