import { describe, expect, it } from 'vitest';
import { fillHash, fillRef, pcgHash } from '../../src/kernels/fill.ts';
import { copyRef } from '../../src/kernels/copy.ts';

/** PCG-RXS-M-XS in BigInt modular arithmetic: an independent statement of the same hash. */
function pcgBig(v: number): number {
  const M = 1n << 32n;
  const state = (BigInt(v) * 747796405n + 2891336453n) % M;
  const word = (((state >> ((state >> 28n) + 4n)) ^ state) * 277803737n) % M;
  return Number((word >> 22n) ^ word);
}

describe('fill reference', () => {
  it('pcgHash matches the BigInt statement of PCG-RXS-M-XS', () => {
    for (const v of [0, 1, 2, 7, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 123456789]) expect(pcgHash(v)).toBe(pcgBig(v));
    for (let v = 0; v < 2000; v++) expect(pcgHash(v * 2654435761)).toBe(pcgBig((v * 2654435761) % 2 ** 32));
  });

  it('fillHash is u32 and mixes seed and index', () => {
    const h = fillHash(42, 0);
    expect(Number.isInteger(h) && h >= 0 && h < 2 ** 32).toBe(true);
    expect(fillHash(42, 1)).not.toBe(h);
    expect(fillHash(43, 0)).not.toBe(h);
    expect(fillHash(42, 0)).toBe(pcgBig((pcgBig(0) ^ pcgBig(42)) >>> 0));
  });

  it('values lie in [lo, hi) with the expected mean and spread', () => {
    const n = 100_000;
    const v = fillRef(n, 7, { lo: -0.5, hi: 1.5 });
    let sum = 0, sq = 0, min = Infinity, max = -Infinity;
    for (const x of v) { sum += x; sq += x * x; min = Math.min(min, x); max = Math.max(max, x); }
    const mean = sum / n, variance = sq / n - mean * mean;
    expect(min).toBeGreaterThanOrEqual(-0.5);
    expect(max).toBeLessThan(1.5);
    // Uniform on [-0.5, 1.5): mean 0.5, variance 4/12. 1e5 samples: std error of the mean ~0.0018.
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.01);
    expect(Math.abs(variance - 4 / 12)).toBeLessThan(0.01);
  });

  it('a sub-range fill equals the same slice of a whole fill (stateless in the index)', () => {
    const whole = fillRef(1000, 3, { lo: 0, hi: 1 });
    expect(fillRef(100, 3, { lo: 0, hi: 1 }, 333)).toEqual(whole.slice(333, 433));
  });

  it('seeds give different streams', () => {
    const a = fillRef(64, 1, { lo: 0, hi: 1 }), b = fillRef(64, 2, { lo: 0, hi: 1 });
    let same = 0;
    for (let i = 0; i < 64; i++) if (a[i] === b[i]) same++;
    expect(same).toBeLessThan(2);
  });

  it('copyRef is the identity on the first n floats', () => {
    const src = new Float32Array([1, -2, 3.5, 4]);
    expect(copyRef(src)).toEqual(src);
    expect(copyRef(src, 3)).toEqual(new Float32Array([1, -2, 3.5]));
  });
});
