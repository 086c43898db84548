import { describe, expect, it } from 'vitest';
import { dpoBatch, dpoPair, sigmoid, softplus, type DpoPair } from '../../src/learn/dpo.ts';
import { DpoInputError } from '../../src/learn/errors.ts';

describe('sigmoid DPO', () => {
  it('hand-computed pair: z = 0.1·((−10 + 12) − (−15 + 14)) = 0.3', () => {
    const p = { policyChosen: -10, refChosen: -12, policyRejected: -15, refRejected: -14 };
    const r = dpoPair(p, 0.1);
    expect(r.loss).toBeCloseTo(Math.log(1 + Math.exp(-0.3)), 14); // −log σ(0.3) = 0.554355...
    expect(r.loss).toBeCloseTo(0.5543552445, 9);
    const s = 1 / (1 + Math.exp(0.3)); // σ(−0.3) = 0.425557...
    expect(r.gradPolicyChosen).toBeCloseTo(-0.1 * s, 14);
    expect(r.gradPolicyRejected).toBeCloseTo(0.1 * s, 14);
    expect(r.rewardChosen).toBeCloseTo(0.2, 14);
    expect(r.rewardRejected).toBeCloseTo(-0.1, 14);
  });

  it('equal log-ratios give log 2 and gradients ∓β/2', () => {
    const r = dpoPair({ policyChosen: -3, refChosen: -3, policyRejected: -7, refRejected: -7 }, 0.5);
    expect(r.loss).toBeCloseTo(Math.LN2, 15);
    expect(r.gradPolicyChosen).toBeCloseTo(-0.25, 15);
    expect(r.gradPolicyRejected).toBeCloseTo(0.25, 15);
  });

  it('is stable for huge margins (no Infinity, no NaN, no log(0))', () => {
    const good = dpoPair({ policyChosen: 0, refChosen: -1e4, policyRejected: -1e4, refRejected: 0 }, 1); // z = 2e4
    expect(good.loss).toBe(0);
    expect(good.gradPolicyChosen).toBeCloseTo(0, 300);
    const bad = dpoPair({ policyChosen: -1e4, refChosen: 0, policyRejected: 0, refRejected: -1e4 }, 1); // z = −2e4
    expect(bad.loss).toBe(2e4);
    expect(bad.gradPolicyChosen).toBe(-1);
    expect(bad.gradPolicyRejected).toBe(1);
    expect(softplus(-30)).toBeCloseTo(Math.exp(-30), 25); // log1p keeps the tiny value
    expect(softplus(800)).toBe(800);
    expect(sigmoid(-800)).toBeGreaterThanOrEqual(0);
    expect(sigmoid(800)).toBe(1);
  });

  it('gradients match central finite differences of the mean batch loss', () => {
    const pairs: DpoPair[] = [
      { policyChosen: -20.5, refChosen: -21, policyRejected: -30, refRejected: -29.2 },
      { policyChosen: -5, refChosen: -4, policyRejected: -6, refRejected: -8 },
      { policyChosen: -40, refChosen: -40.7, policyRejected: -41, refRejected: -41.3 },
    ];
    const beta = 0.3;
    const res = dpoBatch(pairs, beta);
    const h = 1e-5;
    const lossWith = (i: number, k: 'policyChosen' | 'policyRejected', d: number) => dpoBatch(pairs.map((p, j) => (j === i ? { ...p, [k]: p[k] + d } : p)), beta).loss;
    for (let i = 0; i < pairs.length; i++) {
      expect(res.gradPolicyChosen[i]).toBeCloseTo((lossWith(i, 'policyChosen', h) - lossWith(i, 'policyChosen', -h)) / (2 * h), 8);
      expect(res.gradPolicyRejected[i]).toBeCloseTo((lossWith(i, 'policyRejected', h) - lossWith(i, 'policyRejected', -h)) / (2 * h), 8);
    }
  });

  it("batch metrics under TRL's names, averaged", () => {
    const pairs: DpoPair[] = [
      { policyChosen: -10, refChosen: -12, policyRejected: -15, refRejected: -14 }, // rewards 0.2 / −0.1: accurate
      { policyChosen: -8, refChosen: -7, policyRejected: -9, refRejected: -9.5 }, // rewards −0.1 / 0.05: not
    ];
    const r = dpoBatch(pairs, 0.1);
    expect(r.metrics['rewards/chosen']).toBeCloseTo((0.2 - 0.1) / 2, 14);
    expect(r.metrics['rewards/rejected']).toBeCloseTo((-0.1 + 0.05) / 2, 14);
    expect(r.metrics['rewards/margins']).toBeCloseTo((0.3 - 0.15) / 2, 14);
    expect(r.metrics['rewards/accuracies']).toBe(0.5);
    expect(r.metrics['logps/chosen']).toBe(-9);
    expect(r.metrics['logps/rejected']).toBe(-12);
    expect(r.loss).toBeCloseTo((dpoPair(pairs[0], 0.1).loss + dpoPair(pairs[1], 0.1).loss) / 2, 14);
    expect(Object.keys(r.metrics).sort()).toEqual(['logps/chosen', 'logps/rejected', 'rewards/accuracies', 'rewards/chosen', 'rewards/margins', 'rewards/rejected']);
  });

  it('refuses non-finite inputs, bad beta and empty batches with typed errors', () => {
    const p = { policyChosen: -1, refChosen: -1, policyRejected: -1, refRejected: -1 };
    expect(() => dpoPair({ ...p, refRejected: NaN }, 0.1)).toThrow(DpoInputError);
    expect(() => dpoBatch([p, { ...p, policyChosen: -Infinity }], 0.1)).toThrow(/pairs\[1\]\.policyChosen/);
    expect(() => dpoPair(p, 0)).toThrow(/beta/);
    expect(() => dpoBatch([], 0.1)).toThrow(/empty/);
  });
});
