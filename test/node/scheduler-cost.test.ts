import { describe, expect, it } from 'vitest';
import { CostModel, zeroFeatures, type WorkFeatures } from '../../src/scheduler/cost-model.ts';
import { FinetuneGate } from '../../src/scheduler/policy.ts';
import { mulberry32 } from '../../src/util/prng.ts';

describe('CostModel (online RLS)', () => {
  it('learns the true per-feature costs from mixed iterations it only sees the totals of', () => {
    const truth = { intercept: 2, tokens: 0.05, rows: 0.3, attn: 0.02, mixedTokens: 0.03, ftForward: 0.04, ftBackward: 0.09, ftHead: 0.15, ftOptimizer: 1.5, ftDispatches: 0.2, ftBytes: 0.5, ftUnits: 0.3 };
    const rnd = mulberry32(3);
    const m = new CostModel({ forgetting: 1 });
    const trueMs = (f: WorkFeatures) => truth.intercept + (Object.keys(f) as (keyof WorkFeatures)[]).reduce((s, k) => s + truth[k] * f[k], 0);
    for (let i = 0; i < 800; i++) {
      const f = zeroFeatures();
      f.tokens = Math.floor(rnd() * 64);
      f.rows = Math.floor(rnd() * 8);
      f.attn = (f.tokens * rnd() * 300) / 1000;
      f.mixedTokens = rnd() < 0.4 ? f.tokens : 0;
      if (rnd() < 0.5) {
        f.ftDispatches = 1 + Math.floor(rnd() * 4);
        f.ftForward = 16 * Math.floor(rnd() * 3);
        f.ftBackward = 16 * Math.floor(rnd() * 3);
        f.ftHead = rnd() < 0.3 ? 32 : 0;
        f.ftOptimizer = rnd() < 0.2 ? 1 : 0;
        f.ftBytes = rnd() * 2;
        f.ftUnits = 1 + Math.floor(rnd() * 3);
      }
      m.observe(f, trueMs(f));
    }
    const w = m.snapshot();
    // Inference weights from the inference-only iterations; fine-tune weights from what they leave of mixed ones.
    for (const [k, v] of Object.entries(truth)) expect(Math.abs(w[k as keyof typeof w] - v), k).toBeLessThan(0.02 * Math.max(v, 0.25)); // within 2%
    expect(m.samples).toBe(800);
  });

  it('tracks a change in speed (forgetting) and ignores non-finite measurements', () => {
    const m = new CostModel({ forgetting: 0.9 });
    const f = zeroFeatures();
    f.tokens = 10;
    for (let i = 0; i < 50; i++) m.observe({ ...f, tokens: 10 + (i % 5) }, 1 + 0.1 * (10 + (i % 5)));
    m.observe(f, Number.NaN);
    m.observe(f, -3);
    for (let i = 0; i < 100; i++) m.observe({ ...f, tokens: 10 + (i % 5) }, 1 + 0.3 * (10 + (i % 5)));
    expect(m.predictMs(f)).toBeCloseTo(4, 2);
    expect(m.samples).toBe(150);
  });

  it('never predicts negative time and rejects a wrong seed', () => {
    const m = new CostModel({ initial: [-5, -1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] });
    expect(m.predictMs({ ...zeroFeatures(), tokens: 3 })).toBe(0);
    expect(() => new CostModel({ initial: [1, 2] })).toThrow(/12 numbers/);
  });
});

describe('FinetuneGate', () => {
  it('mace and sync allow fine-tuning whenever pairs are pending; inference-only never', () => {
    expect(new FinetuneGate('mace').allowed(0, 1, 0)).toBe(true);
    expect(new FinetuneGate('mace').allowed(0, 0, 0)).toBe(false);
    expect(new FinetuneGate('sync').allowed(0, 2, 0)).toBe(true);
    expect(new FinetuneGate('inference-only').allowed(0, 5, 0)).toBe(false);
  });

  it('periodic opens a window every period or at the pair trigger, and closes it when those steps are done', () => {
    const g = new FinetuneGate('periodic', { periodMs: 10_000, pairsTrigger: 3 });
    expect(g.allowed(1_000, 2, 0)).toBe(false); // 2 pending, period not elapsed
    expect(g.allowed(2_000, 3, 0)).toBe(true); // trigger: window for 3 steps
    expect(g.allowed(3_000, 4, 2)).toBe(true); // a 4th arrived; window still serves the first 3
    expect(g.allowed(4_000, 1, 3)).toBe(false); // 3 done: closed at 4 s
    expect(g.allowed(13_000, 1, 3)).toBe(false);
    expect(g.allowed(14_000, 1, 3)).toBe(true); // 10 s after the window closed
    expect(g.allowed(15_000, 0, 4)).toBe(false);
  });
});

describe('CostModel robustness', () => {
  it('one outlier (a compile, a page hiccup) moves the fit by a bounded step', () => {
    const m = new CostModel({ forgetting: 1 });
    const f = (tokens: number) => ({ ...zeroFeatures(), tokens, rows: 1 });
    for (let i = 0; i < 100; i++) m.observe(f(1 + (i % 16)), 2 + 0.5 * (1 + (i % 16)));
    const before = m.predictMs(f(8));
    m.observe(f(8), 3000); // a 3 s stall
    expect(Math.abs(m.predictMs(f(8)) - before)).toBeLessThan(1);
  });
});

describe('CostModel split', () => {
  it('fine-tune-only iterations (one unit, one submission) do not inflate the cost of a decode', () => {
    const m = new CostModel();
    const decode = { ...zeroFeatures(), tokens: 1, rows: 1 };
    const unit = { ...zeroFeatures(), ftDispatches: 1, ftForward: 48 };
    for (let i = 0; i < 200; i++) {
      m.observe(decode, 12);
      m.observe(unit, 150 + (i % 3)); // a slow unit, always alone
    }
    expect(m.predictMs(decode)).toBeCloseTo(12, 0);
    expect(m.predictMs(unit)).toBeGreaterThan(140);
  });
});

describe('CostModel fed per kind (GPU timestamps)', () => {
  it('learns each kind from its own measured time, mixed iterations included', () => {
    const truth = { intercept: 1.5, tokens: 0.05, rows: 0.3, attn: 0.02, mixedTokens: 0.03, ftForward: 0.04, ftBackward: 0.09, ftHead: 0.15, ftOptimizer: 1.5, ftDispatches: 0.12 };
    const rnd = mulberry32(9);
    const m = new CostModel({ forgetting: 1 });
    const inf = (f: WorkFeatures) => truth.intercept + truth.tokens * f.tokens + truth.rows * f.rows + truth.attn * f.attn + truth.mixedTokens * f.mixedTokens;
    const ft = (f: WorkFeatures) => truth.ftForward * f.ftForward + truth.ftBackward * f.ftBackward + truth.ftHead * f.ftHead + truth.ftOptimizer * f.ftOptimizer + truth.ftDispatches * f.ftDispatches;
    for (let i = 0; i < 300; i++) {
      const fi = { ...zeroFeatures(), tokens: 1 + Math.floor(rnd() * 64), rows: 1 + Math.floor(rnd() * 8) };
      fi.attn = (fi.tokens * rnd() * 300) / 1000;
      fi.mixedTokens = rnd() < 0.4 ? fi.tokens : 0;
      const ff = { ...zeroFeatures(), ftForward: 20 * rnd(), ftBackward: 30 * rnd(), ftHead: rnd() < 0.3 ? 8 : 0, ftOptimizer: rnd() < 0.2 ? 1 : 0, ftDispatches: 1 + Math.floor(rnd() * 12) };
      const mixed = rnd() < 0.7;
      m.observeByKind(mixed || rnd() < 0.5 ? { f: fi, ms: inf(fi) } : null, mixed || rnd() < 0.5 ? { f: ff, ms: ft(ff) } : { f: zeroFeatures(), ms: 0 });
    }
    const w = m.snapshot();
    for (const [k, v] of Object.entries(truth)) expect(Math.abs(w[k as keyof typeof w] - v), k).toBeLessThan(0.02 * Math.max(v, 0.25));
    expect(m.finetuneSamples).toBeGreaterThan(150);
  });

  it('ignores non-finite or negative times and kinds without work', () => {
    const m = new CostModel();
    const f = { ...zeroFeatures(), tokens: 1, rows: 1 };
    m.observeByKind({ f, ms: Number.NaN }, null);
    m.observeByKind({ f, ms: -1 }, { f: zeroFeatures(), ms: 3 }); // no fine-tune dispatches: not a fine-tune sample
    expect(m.samples).toBe(0);
    expect(m.finetuneSamples).toBe(0);
  });
});
