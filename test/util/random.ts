/** Seeded random numbers and tolerance checks shared by Node and browser tests. */

import { mulberry32 } from '../../src/util/prng.ts';

export { mulberry32 };

/** n uniform values in [-scale, scale). */
export function randomF32(n: number, seed: number, scale = 1): Float32Array {
  const r = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 2 - 1) * scale;
  return out;
}

export interface Tolerance {
  atol: number;
  rtol: number;
}

/**
 * Elementwise |a - e| <= atol + rtol * |e|. Returns null when close, otherwise a message naming
 * the first bad index, the worst error and how many elements failed (for expect(...).toBeNull()).
 */
export function closeTo(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tolerance, what = 'values'): string | null {
  if (actual.length !== expected.length) return `${what}: length ${actual.length} != ${expected.length}`;
  let bad = 0;
  let first = -1;
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    const err = Math.abs(a - e);
    if (!(err <= tol.atol + tol.rtol * Math.abs(e))) {
      bad++;
      if (first < 0) first = i;
    }
    if (err > worst || Number.isNaN(err)) worst = Number.isNaN(err) ? NaN : err;
  }
  if (bad === 0) return null;
  return `${what}: ${bad}/${expected.length} outside atol=${tol.atol} rtol=${tol.rtol}; first at ${first} (got ${actual[first]}, want ${expected[first]}); worst abs error ${worst}`;
}
