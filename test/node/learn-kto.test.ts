/**
 * KTO (src/learn/kto.ts) as TRL's KTOTrainer computes it: hand-computed values, the detached and
 * clamped KL reference point z0, numerical stability, the gradient w.r.t. each example's summed
 * log-prob vs central finite differences of the mean loss (z0 held fixed: it is detached), TRL's
 * metrics, the mismatched partners; then the whole-model KTO step of the CPU reference
 * (TrainingReference.kto) vs finite differences, on the llama and qwen2 fixtures, and the
 * ReferenceTrainer's KTO loop fitting a few unpaired examples.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { HostAdapter } from '../../src/learn/adapter.ts';
import { sigmoid } from '../../src/learn/dpo.ts';
import { checkThumbs, evaluateKto, trainKto, withPartners, type NamedThumb } from '../../src/learn/kto-loop.ts';
import { KtoInputError, ktoBatch, ktoExample, ktoPartners, ktoReferencePoint, type KtoExampleLogprobs } from '../../src/learn/kto.ts';
import { loraKey, TrainingReference, type TokenKto } from '../../src/learn/reference.ts';
import { ReferenceTrainer } from '../../src/learn/reference-trainer.ts';
import { TrainLoopError } from '../../src/learn/train-loop.ts';
import { LINEAR_MODULES, linearShape } from '../../src/model/tensors.ts';
import { mulberry32 as prng } from '../../src/util/prng.ts';
import { makeFixture, type FixtureArch } from '../util/fixtures.ts';
import { mulberry32, randomF32 } from '../util/random.ts';

const dir = new URL('../../public/models/stories260K/', import.meta.url);
const tokenizer = { tokenizerJson: readFileSync(new URL('tokenizer.json', dir), 'utf8'), tokenizerConfig: readFileSync(new URL('tokenizer_config.json', dir), 'utf8') };

describe('KTO loss (TRL conventions)', () => {
  it('hand-computed desirable and undesirable examples at z0 = 0.5', () => {
    const beta = 0.1;
    // ρ = −10 − (−12) = 2: u = 0.1·(2 − 0.5) = 0.15
    const d = ktoExample({ policy: -10, ref: -12, label: true }, 0.5, { beta });
    expect(d.loss).toBeCloseTo(1 - 1 / (1 + Math.exp(-0.15)), 14);
    const s = 1 / (1 + Math.exp(-0.15));
    expect(d.gradPolicy).toBeCloseTo(-beta * s * (1 - s), 14);
    expect(d.reward).toBeCloseTo(0.2, 14);
    // undesirable: loss = 1 − σ(β(z0 − ρ)) = 1 − σ(−0.15); weight 2
    const u = ktoExample({ policy: -10, ref: -12, label: false }, 0.5, { beta, undesirableWeight: 2 });
    expect(u.loss).toBeCloseTo(2 * (1 - 1 / (1 + Math.exp(0.15))), 14);
    expect(u.gradPolicy).toBeCloseTo(2 * beta * s * (1 - s), 14); // σ(−0.15)σ(0.15) = σ(0.15)σ(−0.15)
    // at init (ρ = 0, z0 = 0) both losses are w/2 and the gradients ∓wβ/4
    expect(ktoExample({ policy: -3, ref: -3, label: true }, 0, { beta: 1, desirableWeight: 1.5 })).toEqual({ loss: 0.75, gradPolicy: -0.375, reward: 0 });
    expect(ktoExample({ policy: -3, ref: -3, label: false }, 0, { beta: 1 })).toEqual({ loss: 0.5, gradPolicy: 0.25, reward: 0 });
  });

  it('z0 = max(0, mean of the mismatched log-ratios); a negative mean clamps to 0', () => {
    expect(ktoReferencePoint([{ policy: -5, ref: -6 }, { policy: -7, ref: -7.5 }])).toBeCloseTo(0.75, 14);
    expect(ktoReferencePoint([{ policy: -5, ref: -4 }, { policy: -7, ref: -7.5 }])).toBe(0);
    expect(() => ktoReferencePoint([])).toThrow(KtoInputError);
    const b = ktoBatch([{ policy: -10, ref: -12, label: true }], [{ policy: -5, ref: -6 }, { policy: -7, ref: -7.5 }], { beta: 0.1 });
    expect(b.z0).toBeCloseTo(0.75, 14);
    expect(b.metrics.kl).toBeCloseTo(0.75, 14);
    expect(b.loss).toBeCloseTo(ktoExample({ policy: -10, ref: -12, label: true }, 0.75, { beta: 0.1 }).loss, 14);
  });

  it('is stable for huge margins (no NaN, no Infinity)', () => {
    const good = ktoExample({ policy: 0, ref: -1e4, label: true }, 0, { beta: 1 });
    expect(good.loss).toBe(0);
    expect(good.gradPolicy === 0 || Object.is(good.gradPolicy, -0)).toBe(true);
    const bad = ktoExample({ policy: -1e4, ref: 0, label: true }, 0, { beta: 1 });
    expect(bad.loss).toBe(1);
    expect(Number.isFinite(bad.gradPolicy)).toBe(true);
    const tiny = ktoExample({ policy: 0, ref: -40, label: false }, 0, { beta: 1 }); // loss = σ(−40)·… tiny, not 0 by cancellation
    expect(tiny.loss).toBeCloseTo(1 - sigmoid(-40), 15);
    const far = ktoExample({ policy: -40, ref: 0, label: false }, 0, { beta: 1 });
    expect(far.loss).toBeGreaterThan(0);
    expect(far.loss).toBeCloseTo(Math.exp(-40), 30); // 1 − σ(40) computed as σ(−40), no cancellation
  });

  it('gradients match central finite differences of the mean batch loss (z0 held fixed: detached)', () => {
    const ex: KtoExampleLogprobs[] = [
      { policy: -20.5, ref: -21, label: true },
      { policy: -5, ref: -4, label: false },
      { policy: -40, ref: -40.7, label: true },
      { policy: -9, ref: -9.6, label: false },
    ];
    const kl = [{ policy: -30, ref: -30.4 }, { policy: -12, ref: -12.1 }];
    const o = { beta: 0.7, desirableWeight: 1.3, undesirableWeight: 0.8 };
    const res = ktoBatch(ex, kl, o);
    expect(res.z0).toBeCloseTo(0.25, 12);
    const h = 1e-5;
    const lossWith = (i: number, d: number) => ktoBatch(ex.map((e, j) => (j === i ? { ...e, policy: e.policy + d } : e)), kl, o).loss;
    for (let i = 0; i < ex.length; i++) {
      const numeric = (lossWith(i, h) - lossWith(i, -h)) / (2 * h);
      expect(Math.abs(numeric)).toBeGreaterThan(1e-3);
      expect(res.gradPolicy[i]).toBeCloseTo(numeric, 9);
    }
    // z0 moves the loss (it is a real input) but carries no gradient into the policy's log-probs.
    expect(ktoBatch(ex, [{ policy: -30, ref: -31 }], o).loss).not.toBeCloseTo(res.loss, 6);
  });

  it("batch metrics under TRL's names: per-label means, margins, counts, kl", () => {
    const ex: KtoExampleLogprobs[] = [
      { policy: -10, ref: -12, label: true }, // reward 0.2
      { policy: -8, ref: -7, label: false }, // −0.1
      { policy: -6, ref: -6.4, label: true }, // 0.04
    ];
    const m = ktoBatch(ex, [{ policy: -1, ref: -1 }], { beta: 0.1 }).metrics;
    expect(m['rewards/chosen']).toBeCloseTo(0.12, 12);
    expect(m['rewards/rejected']).toBeCloseTo(-0.1, 12);
    expect(m['rewards/margins']).toBeCloseTo(0.22, 12);
    expect(m['logps/chosen']).toBeCloseTo(-8, 12);
    expect(m['logps/rejected']).toBeCloseTo(-8, 12);
    expect([m['count/chosen'], m['count/rejected'], m.kl]).toEqual([2, 1, 0]);
    expect(Number.isNaN(ktoBatch([ex[0]], [{ policy: 0, ref: 0 }], { beta: 0.1 }).metrics['rewards/rejected'])).toBe(true);
  });

  it('rejects bad inputs with typed errors naming the field', () => {
    expect(() => ktoBatch([], [{ policy: 0, ref: 0 }], { beta: 1 })).toThrow(/examples is empty/);
    expect(() => ktoBatch([{ policy: NaN, ref: 0, label: true }], [{ policy: 0, ref: 0 }], { beta: 1 })).toThrow(/examples\[0\]\.policy/);
    expect(() => ktoExample({ policy: 0, ref: 0, label: true }, 0, { beta: 0 })).toThrow(/beta/);
    expect(() => ktoExample({ policy: 0, ref: 0, label: true }, 0, { beta: 1, undesirableWeight: -1 })).toThrow(/undesirableWeight/);
    expect(() => ktoExample({ policy: 0, ref: 0, label: 1 as unknown as boolean }, 0, { beta: 1 })).toThrow(/label/);
  });

  it('mismatched partners: a seeded rotation, never the example itself, each completion used once', () => {
    for (const n of [2, 3, 7, 20]) {
      const p = ktoPartners(n, prng(5));
      expect(p.every((j, i) => j !== i)).toBe(true);
      expect(new Set(p).size).toBe(n);
      expect(ktoPartners(n, prng(5))).toEqual(p);
    }
    expect(() => ktoPartners(1, prng(0))).toThrow(/at least 2/);
    // KL completions are cut to fit maxTokens after the example's prompt
    const ex: NamedThumb[] = [{ prompt: [1, 2, 3, 4, 5], completion: [6], label: true }, { prompt: [1], completion: [7, 8, 9, 10, 11], label: false }];
    const w = withPartners(ex, 6, 0);
    expect(w[0].kl).toEqual([7]);
    expect(w[1].kl).toEqual([6]);
  });
});

function randomAdapter(config: ReturnType<typeof makeFixture>['config'], r: number, seed: number): HostAdapter {
  const tensors = [];
  let s = seed;
  for (let layer = 0; layer < config.nLayers; layer++) {
    for (const module of LINEAR_MODULES) {
      const [out, inp] = linearShape(config, module);
      tensors.push({ layer, module, A: randomF32(r * inp, s++, 0.3), B: randomF32(out * r, s++, 0.3) });
    }
  }
  return { config: { r, loraAlpha: 2 * r, useRslora: false, targetModules: [...LINEAR_MODULES], baseModelNameOrPath: 'fixture' }, tensors };
}

const examples: TokenKto[] = [
  { prompt: [1, 57, 300, 12], completion: [88, 401, 7, 260], label: true, kl: [89, 33, 500] },
  { prompt: [1, 40, 9], completion: [89, 33, 500], label: false, kl: [88, 401, 7, 260] },
];

for (const arch of ['llama', 'qwen2'] as FixtureArch[]) {
  describe(`whole-model KTO step of the CPU reference, ${arch} fixture`, () => {
    const fx = makeFixture({ arch, dtype: 'F32', seed: 11 }, tokenizer);

    it('z0 is the clamped mean of the KL sequences under the policy; LoRA gradients of every module match central finite differences', () => {
      const adapter = randomAdapter(fx.config, 4, 300);
      const policy = new TrainingReference(fx.config, fx.host, adapter);
      const own = examples.map((e) => policy.ktoLogprobs(e));
      // Reference = the policy's own completion log-probs (ρ = 0, the sigmoid's steepest point) and KL refs 0.4 below (z0 = 0.4 > 0).
      const refs = own.map((l) => ({ completion: l.completion, kl: l.kl - 0.4 }));
      const beta = 1;
      const o = { beta, desirableWeight: 1, undesirableWeight: 1.5 };
      const { result, grads, policy: pol } = policy.kto(examples, refs, o);
      expect(result.z0).toBeCloseTo(0.4, 4);
      expect(pol.map((p) => p.kl)).toEqual(own.map((l) => l.kl));
      const z0 = result.z0;
      const lossWith = (adj: HostAdapter) => new TrainingReference(fx.config, fx.host, adj).kto(examples, refs, o, z0).result.loss;
      const rnd = mulberry32(arch.length + 7);
      const h = 3e-3;
      let checked = 0, large = 0;
      for (const t of adapter.tensors.filter((_, i) => i % 3 === 1)) {
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
            expect(Math.abs(grad[i] - numeric), `${t.layer}.${t.module}.${which}[${i}] analytic ${grad[i]} numeric ${numeric}`).toBeLessThan(1e-3 + 2e-2 * Math.abs(numeric));
            checked++;
            if (Math.abs(numeric) > 5e-3) large++;
          }
        }
      }
      expect(checked).toBeGreaterThanOrEqual(16);
      expect(large, 'most sampled gradients must be far above the tolerance floor').toBeGreaterThanOrEqual(checked / 2);
    });
  });
}

describe('ReferenceTrainer KTO', () => {
  const fx = makeFixture({ arch: 'llama', dtype: 'F32', seed: 11 }, tokenizer);
  const adapterConfig = { r: 4, loraAlpha: 8, useRslora: false, targetModules: [...LINEAR_MODULES], baseModelNameOrPath: 'fixture' };
  const options = { maxTokens: 16, beta: 0.5, schedule: { kind: 'constant' as const, baseLr: 1e-2, warmupSteps: 0, totalSteps: 100 } };

  it('a batch is one optimizer step on the mean loss with z0 from its KL sequences', async () => {
    const t = new ReferenceTrainer(fx.config, fx.host, adapterConfig, 3, options);
    const refs = [await t.ktoReferenceLogprobs(examples[0]), await t.ktoReferenceLogprobs(examples[1])];
    refs[0].kl -= 0.6; // z0 = mean(0.6, 0) = 0.3 at init (policy = reference)
    const m = await t.runKtoBatch(examples, refs);
    expect(m.kl).toBeCloseTo(0.3, 5);
    const want = (ktoExample({ policy: 0, ref: 0, label: true }, 0.3, options).loss + ktoExample({ policy: 0, ref: 0, label: false }, 0.3, options).loss) / 2;
    expect(m.loss).toBeCloseTo(want, 5);
    expect(m.step).toBe(1);
    expect([m['count/chosen'], m['count/rejected']]).toEqual([1, 1]);
  });

  it('trainKto lifts held-out reward accuracy of same-prompt examples from 0.5 (ties at init) to 1', async () => {
    const t = new ReferenceTrainer(fx.config, fx.host, adapterConfig, 3, options);
    const data: NamedThumb[] = [
      { prompt: [1, 57, 300], completion: [88, 401, 7], label: true },
      { prompt: [1, 57, 300], completion: [89, 33, 500], label: false },
      { prompt: [1, 40, 9], completion: [88, 401, 7], label: true },
      { prompt: [1, 40, 9], completion: [89, 33, 500], label: false },
    ];
    const r = await trainKto({ trainer: t, examples: data, evalExamples: data, epochs: 10, seed: 1 });
    expect(r.before!.reward_accuracy).toBe(0.5);
    expect(r.before!.reward_ties).toBe(2);
    expect(r.after!.reward_accuracy).toBe(1);
    expect(r.after!.loss).toBeLessThan(r.before!.loss);
    expect(r.steps).toHaveLength(40);
    expect(() => checkThumbs('x', [{ prompt: [1], completion: [2], label: 'yes' as unknown as boolean }], 16, 512)).toThrow(TrainLoopError);
    await expect(trainKto({ trainer: t, examples: data.slice(0, 1) })).rejects.toThrow(/at least 2/);
    await expect(evaluateKto(t, [])).rejects.toThrow(/evalExamples/);
  });
});
