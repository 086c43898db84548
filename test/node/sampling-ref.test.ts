import { describe, expect, it } from 'vitest';
import { argmaxRef, keptCandidates, packSamplingSettings, sampleRef, sampleRowRef, topKRef, type SamplingSettings } from '../../src/kernels/sampling.ts';

const f = (...v: number[]) => Float32Array.from(v);
const greedy: SamplingSettings = { temperature: 0, topP: 1, minP: 0, topK: 0 };
const plain: SamplingSettings = { temperature: 1, topP: 1, minP: 0, topK: 0 };

describe('argmaxRef', () => {
  it('picks the largest, lowest index on ties, NaN as -inf', () => {
    expect(Array.from(argmaxRef(f(1, 3, 2), 1, 3))).toEqual([1]);
    expect(Array.from(argmaxRef(f(5, 1, 5, 5), 1, 4))).toEqual([0]);
    expect(Array.from(argmaxRef(f(NaN, 2, NaN, 2), 1, 4))).toEqual([1]);
    expect(Array.from(argmaxRef(f(NaN, NaN), 1, 2))).toEqual([0]);
    expect(Array.from(argmaxRef(f(-Infinity, -Infinity, -1e30), 1, 3))).toEqual([2]);
    // two rows
    expect(Array.from(argmaxRef(f(0, 1, 2, /**/ 9, -1, 9), 2, 3))).toEqual([2, 0]);
  });
});

describe('topKRef', () => {
  it('returns the k best pairs sorted descending, ties by lowest index', () => {
    const { values, ids } = topKRef(f(0.5, 2, -1, 2, 7, NaN, 0.5), 1, 7, 5);
    expect(Array.from(ids)).toEqual([4, 1, 3, 0, 6]);
    expect(Array.from(values)).toEqual([7, 2, 2, 0.5, 0.5]);
  });
  it('counts NaN as -inf (after real -inf with a lower index)', () => {
    const { values, ids } = topKRef(f(NaN, -Infinity, 3), 1, 3, 3);
    expect(Array.from(ids)).toEqual([2, 0, 1]);
    expect(Array.from(values)).toEqual([3, -Infinity, -Infinity]);
  });
  it('works per row', () => {
    const { ids } = topKRef(f(1, 2, 3, /**/ 3, 2, 1), 2, 3, 2);
    expect(Array.from(ids)).toEqual([2, 1, 0, 1]);
  });
});

describe('sampling reference', () => {
  // Candidates: logits ln(0.5), ln(0.25), ln(0.125), ln(0.125): softmax probabilities 1/2, 1/4, 1/8, 1/8.
  const vals = f(Math.log(0.5), Math.log(0.25), Math.log(0.125), Math.log(0.125));
  const ids = Uint32Array.from([40, 30, 20, 10]);

  it('temperature 0 is greedy whatever the random number', () => {
    for (const u of [0, 0.5, 0.999]) expect(sampleRowRef(vals, ids, greedy, u)).toBe(40);
  });
  it('inverts the CDF: u in [0, .5) -> 40, [.5, .75) -> 30, [.75, .875) -> 20, [.875, 1) -> 10', () => {
    const pick = (u: number) => sampleRowRef(vals, ids, plain, u);
    // (the f32 logits make the boundaries inexact in the last bits: probe beside them)
    expect([0, 0.49, 0.501, 0.74, 0.751, 0.874, 0.876, 0.9999].map(pick)).toEqual([40, 40, 30, 30, 20, 20, 10, 10]);
  });
  it('boundaries are inclusive where stated (exact with equal logits: weights exactly 1)', () => {
    const eq = f(3, 3, 3, 3);
    expect(keptCandidates(eq, { ...plain, topP: 0.5 }).keep).toBe(2); // mass 2/4 >= 0.5
    expect(keptCandidates(eq, { ...plain, topP: 0.50001 }).keep).toBe(3);
    expect(keptCandidates(eq, { ...plain, minP: 1 }).keep).toBe(4); // p = p_max >= 1 * p_max
    expect([0, 0.2499, 0.25, 0.5, 0.75, 0.9999].map((u) => sampleRowRef(eq, ids, plain, u))).toEqual([40, 40, 30, 20, 10, 10]);
  });
  it('top-p keeps the smallest prefix with mass >= p (at least one token)', () => {
    const keep = (topP: number) => keptCandidates(vals, { ...plain, topP }).keep;
    expect(keep(0.5)).toBe(1); // 0.5 >= 0.5 already
    expect(keep(0.51)).toBe(2);
    expect(keep(0.75)).toBe(2);
    expect(keep(0.8)).toBe(3);
    expect(keep(0.9)).toBe(4);
    expect(keep(0)).toBe(1);
    expect(keep(1)).toBe(4);
    // Renormalised over the kept prefix: with top_p 0.75, 40 gets 2/3 and 30 gets 1/3.
    expect(sampleRowRef(vals, ids, { ...plain, topP: 0.75 }, 0.66)).toBe(40);
    expect(sampleRowRef(vals, ids, { ...plain, topP: 0.75 }, 0.67)).toBe(30);
    expect(sampleRowRef(vals, ids, { ...plain, topP: 0.75 }, 0.99)).toBe(30);
  });
  it('min-p keeps tokens with p >= min_p * p_max', () => {
    const keep = (minP: number) => keptCandidates(vals, { ...plain, minP }).keep;
    expect(keep(0.49)).toBe(2); // p/p_max = 1, 0.5, 0.25, 0.25
    expect(keep(0.24)).toBe(4);
    expect(keep(0.26)).toBe(2);
    expect(keep(1)).toBe(1);
    expect(sampleRowRef(vals, ids, { ...plain, minP: 0.49 }, 0.99)).toBe(30);
    expect(sampleRowRef(vals, ids, { ...plain, minP: 0.49 }, 0.6)).toBe(40); // 40 has 2/3 of the kept mass
  });
  it('top-k limits the candidates', () => {
    expect(keptCandidates(vals, { ...plain, topK: 2 }).keep).toBe(2);
    expect(sampleRowRef(vals, ids, { ...plain, topK: 1 }, 0.99)).toBe(40);
    expect(sampleRowRef(vals, ids, { ...plain, topK: 9 }, 0.99)).toBe(10);
  });
  it('temperature sharpens or flattens', () => {
    // T = 0.5 squares the probabilities: 1/4, 1/16, 1/64, 1/64 over 22/64 -> 40 has mass 16/22.
    expect(sampleRowRef(vals, ids, { ...plain, temperature: 0.5 }, 16 / 22 - 1e-6)).toBe(40);
    expect(sampleRowRef(vals, ids, { ...plain, temperature: 0.5 }, 16 / 22 + 1e-6)).toBe(30);
    // Very high temperature: nearly uniform, so u = 0.3 lands on the second candidate.
    expect(sampleRowRef(vals, ids, { ...plain, temperature: 1e6 }, 0.3)).toBe(30);
  });
  it('is safe with huge logits (softmax subtracts the max) and with -inf candidates', () => {
    const big = f(1e30, 1e30 - 1e24, -Infinity);
    expect(sampleRowRef(big, Uint32Array.from([1, 2, 3]), plain, 0.999)).toBe(1);
    expect(sampleRowRef(f(-Infinity, -Infinity), Uint32Array.from([5, 6]), plain, 0.9)).toBe(5);
  });
  it('sampleRef works per row and the settings pack to 16 bytes a row', () => {
    const two = new Float32Array([...vals, ...vals]);
    const twoIds = Uint32Array.from([...ids, ...ids]);
    expect(Array.from(sampleRef(two, twoIds, 2, 4, [greedy, plain], f(0.9, 0.9)))).toEqual([40, 10]);
    const bytes = new DataView(packSamplingSettings([{ temperature: 0.7, topP: 0.9, minP: 0.05, topK: 40 }]));
    expect(bytes.byteLength).toBe(16);
    expect([bytes.getFloat32(0, true), bytes.getFloat32(4, true), bytes.getFloat32(8, true), bytes.getUint32(12, true)]).toEqual([Math.fround(0.7), Math.fround(0.9), Math.fround(0.05), 40]);
    expect(() => packSamplingSettings([{ ...plain, topP: 1.5 }])).toThrow(/topP/);
    expect(() => packSamplingSettings([{ ...plain, temperature: -1 }])).toThrow(/temperature/);
  });
});
