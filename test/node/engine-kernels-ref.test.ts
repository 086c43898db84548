import { describe, expect, it } from 'vitest';
import { applyPenaltiesRef, packRowPenalties } from '../../src/kernels/penalties.ts';
import { logprobsRef } from '../../src/kernels/logprobs.ts';

describe('applyPenaltiesRef', () => {
  it('divides positive and multiplies negative seen logits, then subtracts presence and frequency', () => {
    const logits = new Float32Array([2, -2, 1, 4, /* row 1 */ 1, 1, 1, 1]);
    const rows = [
      { repetition: 2, presence: 0.5, frequency: 0.25, slot: 1, nSeen: 2 },
      { repetition: 1, presence: 0, frequency: 1, slot: 0, nSeen: 1 },
    ];
    const seen = [
      { ids: [3], counts: [2] },
      { ids: [0, 1, 2], counts: [0, 3, 1] }, // only the first 2 entries apply (nSeen)
    ];
    const out = applyPenaltiesRef(logits, 2, 4, rows, seen);
    // id 0: prompt only (count 0): 2/2 = 1. id 1: -2*2 = -4, count 3: -4 - 0.5 - 0.75 = -5.25.
    expect([...out]).toEqual([1, -5.25, 1, 4, 1, 1, 1, -1]);
  });
  it('refuses a non-positive repetition penalty when packing', () => {
    expect(() => packRowPenalties([{ repetition: 0, presence: 0, frequency: 0, slot: 0, nSeen: 0 }])).toThrow('repetition = 0');
  });
});

describe('logprobsRef', () => {
  it('gives log-softmax values whose exponentials sum to one', () => {
    const logits = new Float32Array([1, 2, 3, 0.5]);
    const [row] = logprobsRef(logits, 1, 4, [1], 2);
    const lse = Math.log(Math.exp(1) + Math.exp(2) + Math.exp(3) + Math.exp(0.5));
    expect(row.chosen).toBeCloseTo(2 - lse, 12);
    expect(row.top.map((t) => t.id)).toEqual([2, 1]);
    expect(row.top[0].logprob).toBeCloseTo(3 - lse, 12);
  });
});
