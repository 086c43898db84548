/**
 * The backward CPU references against central finite differences of their forwards (the forwards
 * are the references the GPU forward kernels are tested against), on odd sizes.
 * Tolerance: |analytic − numeric| <= atol + rtol · max|numeric| per tensor (test/util/finite-diff.ts).
 * With h = 1e-2 and f32 forward outputs, the numeric side is good to ~1e-4 of the gradient scale
 * for these sizes (rounding noise) plus O(h²) truncation on curved functions; GRAD_TOL leaves ~10x.
 * A wrong term (a missing sign, a dropped sum over GQA heads, r instead of r³) is off by O(scale).
 */
import { describe, expect, it } from 'vitest';
import { causalAttentionBackwardRef, causalAttentionRef } from '../../src/kernels/attention-train.ts';
import { UNBOUNDED_WINDOW, attentionDenseRef, defaultScale } from '../../src/kernels/attention.ts';
import { matmulInputGradRef } from '../../src/kernels/matmul-bwd.ts';
import { rmsNormBackwardRef } from '../../src/kernels/rmsnorm-bwd.ts';
import { rmsNormRef } from '../../src/kernels/rmsnorm.ts';
import { ropeBackwardRef } from '../../src/kernels/rope-bwd.ts';
import { ropeInvFreq, ropeRef } from '../../src/kernels/rope.ts';
import { siluGateBackwardRef } from '../../src/kernels/silu-bwd.ts';
import { siluGateRef } from '../../src/kernels/silu.ts';
import { tokenLogprobsBackwardRef, tokenLogprobsRef } from '../../src/kernels/token-logprobs.ts';
import { matmulRef } from '../../src/kernels/weights.ts';
import { ShapeError } from '../../src/gpu/errors.ts';
import { gradMismatch, numericGrad } from '../util/finite-diff.ts';
import { closeTo, randomF32 } from '../util/random.ts';

const GRAD_TOL = { atol: 1e-4, rtol: 2e-3 };

describe('matmulInputGradRef', () => {
  for (const [M, N, K] of [[1, 1, 1], [3, 5, 7], [5, 17, 9]] as const) {
    it(`is d(x·Wᵀ)/dx, M=${M} N=${N} K=${K}`, () => {
      const x = randomF32(M * K, 1 + M), w = randomF32(N * K, 2 + N), dy = randomF32(M * N, 3 + K);
      const num = numericGrad((xp) => matmulRef(xp, w, M, N, K), x, dy);
      expect(gradMismatch(matmulInputGradRef(dy, w, M, N, K), num, GRAD_TOL, 'dx')).toBeNull();
    });
  }
  it('rejects short arrays', () => {
    expect(() => matmulInputGradRef(new Float32Array(5), new Float32Array(6), 2, 3, 2)).toThrow(ShapeError);
  });
});

describe('rmsNormBackwardRef', () => {
  for (const [T, dim] of [[1, 1], [3, 7], [2, 64], [1, 100]] as const) {
    it(`is d(rmsnorm)/dx, T=${T} dim=${dim}`, () => {
      const x = randomF32(T * dim, 10 + dim, 2), w = randomF32(dim, 11 + dim, 1.5), dy = randomF32(T * dim, 12 + T);
      const eps = 1e-5;
      const num = numericGrad((xp) => rmsNormRef(xp, w, T, dim, eps), x, dy, 1e-3);
      expect(gradMismatch(rmsNormBackwardRef(x, w, dy, T, dim, eps), num, GRAD_TOL, 'dx')).toBeNull();
    });
  }
  it('is finite for an all-zero row (eps > 0)', () => {
    const dx = rmsNormBackwardRef(new Float32Array(7), new Float32Array(7).fill(1), randomF32(7, 5), 1, 7, 1e-6);
    expect(dx.every(Number.isFinite)).toBe(true);
  });
});

describe('ropeBackwardRef', () => {
  const shapes = [
    { T: 1, nHeads: 1, nKvHeads: 1, headDim: 2 },
    { T: 5, nHeads: 6, nKvHeads: 2, headDim: 8 },
    { T: 3, nHeads: 4, nKvHeads: 1, headDim: 16 },
  ];
  for (const shape of shapes) {
    const { T, nHeads, nKvHeads, headDim } = shape;
    const invFreq = ropeInvFreq(headDim, 10000, null);
    const positions = Uint32Array.from({ length: T }, (_, t) => 3 * t + 11);
    const nq = T * nHeads * headDim, nk = T * nKvHeads * headDim;
    it(`is the transpose of rope, ${JSON.stringify(shape)}`, () => {
      const q = randomF32(nq, 20 + T), k = randomF32(nk, 21 + T);
      const dyq = randomF32(nq, 22 + T), dyk = randomF32(nk, 23 + T);
      const { dq, dk } = ropeBackwardRef(dyq, dyk, positions, invFreq, shape);
      const both = new Float32Array([...dyq, ...dyk]);
      const numQ = numericGrad((qp) => { const r = ropeRef(qp, k, positions, invFreq, shape); return [...r.q, ...r.k]; }, q, both);
      const numK = numericGrad((kp) => { const r = ropeRef(q, kp, positions, invFreq, shape); return [...r.q, ...r.k]; }, k, both);
      expect(gradMismatch(dq, numQ, GRAD_TOL, 'dq')).toBeNull();
      expect(gradMismatch(dk, numK, GRAD_TOL, 'dk')).toBeNull();
      // and undoes the forward (orthogonal rotation): rotate back what was rotated
      const fwd = ropeRef(q, k, positions, invFreq, shape);
      const back = ropeBackwardRef(fwd.q, fwd.k, positions, invFreq, shape);
      expect(closeTo(back.dq, q, { atol: 1e-6, rtol: 1e-6 }, 'q')).toBeNull();
      expect(closeTo(back.dk, k, { atol: 1e-6, rtol: 1e-6 }, 'k')).toBeNull();
    });
  }
  it('rejects an odd head size and short arrays', () => {
    const s = { T: 1, nHeads: 1, nKvHeads: 1, headDim: 3 };
    expect(() => ropeBackwardRef(new Float32Array(3), new Float32Array(3), new Uint32Array(1), new Float32Array(1), s)).toThrow(/headDim = 3/);
    expect(() => ropeBackwardRef(new Float32Array(3), new Float32Array(4), new Uint32Array(1), new Float32Array(2), { ...s, headDim: 4 })).toThrow(/dq/);
  });
});

describe('siluGateBackwardRef', () => {
  it('is d(silu(g)·u) on random values (n = 37)', () => {
    const n = 37;
    const g = randomF32(n, 30, 6), u = randomF32(n, 31, 2), dout = randomF32(n, 32);
    const { dgate, dup } = siluGateBackwardRef(g, u, dout);
    expect(gradMismatch(dgate, numericGrad((gp) => siluGateRef(gp, u), g, dout, 1e-3), GRAD_TOL, 'dgate')).toBeNull();
    expect(gradMismatch(dup, numericGrad((up) => siluGateRef(g, up), u, dout, 1e-3), GRAD_TOL, 'dup')).toBeNull();
  });
  it('stays finite and right for large |gate|', () => {
    const g = new Float32Array([100, -100, 1000, -1000, 88.8, -88.8, 0]);
    const ones = new Float32Array(g.length).fill(1);
    const { dgate, dup } = siluGateBackwardRef(g, ones, ones);
    expect(dgate.every(Number.isFinite) && dup.every(Number.isFinite)).toBe(true);
    // silu'(x) -> 1 for x -> +inf, -> 0 (as (1 + x) e^x) for x -> -inf; silu'(0) = 1/2
    expect([dgate[0], dgate[2], dgate[4], dgate[6]]).toEqual([1, 1, 1, 0.5]);
    expect(Math.abs(dgate[3])).toBe(0);
    expect(Math.abs(dgate[1] - -99 * Math.exp(-100))).toBeLessThan(1e-44); // an f32 subnormal
    expect(Math.abs(dgate[5] / ((1 + g[5]) * Math.exp(g[5])) - 1)).toBeLessThan(1e-6); // g[5] = fround(-88.8)
    expect(Array.from(dup)).toEqual(Array.from(siluGateRef(g, ones)));
  });
});

describe('causal attention references', () => {
  const HEADS: [number, number, number][] = [[1, 1, 3], [4, 2, 5], [6, 2, 4], [3, 1, 2]];
  for (const T of [1, 5]) {
    for (const [nHeads, nKvHeads, hd] of HEADS) {
      const label = `T=${T} heads=(${nHeads},${nKvHeads}) hd=${hd}`;
      const nq = T * nHeads * hd, nk = T * nKvHeads * hd;
      const q = randomF32(nq, 40 + T + hd, 1.5), k = randomF32(nk, 41 + nHeads, 1.5), v = randomF32(nk, 42 + nKvHeads);
      it(`forward agrees with attentionDenseRef and lse is the log-sum-exp, ${label}`, () => {
        const { out, lse } = causalAttentionRef(q, k, v, T, nHeads, nKvHeads, hd);
        const pos = Array.from({ length: T }, (_, t) => t);
        expect(closeTo(out, attentionDenseRef(q, k, v, pos, T, nHeads, nKvHeads, hd), { atol: 1e-6, rtol: 1e-5 }, 'out')).toBeNull();
        // lse straight from the definition, for every (t, h)
        const scale = defaultScale(hd), G = nHeads / nKvHeads;
        const want = new Float32Array(T * nHeads);
        for (let t = 0; t < T; t++) for (let h = 0; h < nHeads; h++) {
          let s = 0;
          for (let j = 0; j <= t; j++) {
            let d = 0;
            for (let e = 0; e < hd; e++) d += q[(t * nHeads + h) * hd + e] * k[(j * nKvHeads + Math.floor(h / G)) * hd + e];
            s += Math.exp(d * scale);
          }
          want[t * nHeads + h] = Math.log(s);
        }
        expect(closeTo(lse, want, { atol: 1e-6, rtol: 1e-6 }, 'lse')).toBeNull();
      });
      it(`backward is d(out) w.r.t. q, k, v, ${label}`, () => {
        const dout = randomF32(nq, 43 + T);
        const { out, lse } = causalAttentionRef(q, k, v, T, nHeads, nKvHeads, hd);
        const { dq, dk, dv } = causalAttentionBackwardRef(q, k, v, out, lse, dout, T, nHeads, nKvHeads, hd);
        const f = (qq: Float32Array, kk: Float32Array, vv: Float32Array) => causalAttentionRef(qq, kk, vv, T, nHeads, nKvHeads, hd).out;
        expect(gradMismatch(dq, numericGrad((x) => f(x, k, v), q, dout, 1e-3), GRAD_TOL, 'dq')).toBeNull();
        expect(gradMismatch(dk, numericGrad((x) => f(q, x, v), k, dout, 1e-3), GRAD_TOL, 'dk')).toBeNull();
        expect(gradMismatch(dv, numericGrad((x) => f(q, k, x), v, dout, 1e-3), GRAD_TOL, 'dv')).toBeNull();
      });
    }
  }
  it('takes a custom scale in both directions', () => {
    const [T, nH, nKv, hd, scale] = [4, 2, 1, 3, 0.3];
    const q = randomF32(T * nH * hd, 50), k = randomF32(T * nKv * hd, 51), v = randomF32(T * nKv * hd, 52), dout = randomF32(T * nH * hd, 53);
    const { out, lse } = causalAttentionRef(q, k, v, T, nH, nKv, hd, scale);
    const { dq } = causalAttentionBackwardRef(q, k, v, out, lse, dout, T, nH, nKv, hd, scale);
    const num = numericGrad((x) => causalAttentionRef(x, k, v, T, nH, nKv, hd, scale).out, q, dout, 1e-3);
    expect(gradMismatch(dq, num, GRAD_TOL, 'dq')).toBeNull();
  });
  for (const window of [{ sinks: 2, window: 3 }, { sinks: 0, window: 1 }, { sinks: 1, window: 4 }]) {
    it(`with a key window (sinks ${window.sinks}, window ${window.window}): forward is the windowed dense reference, backward its gradient`, () => {
      const [T, nHeads, nKvHeads, hd] = [9, 4, 2, 3];
      const nq = T * nHeads * hd, nk = T * nKvHeads * hd;
      const q = randomF32(nq, 60, 1.5), k = randomF32(nk, 61, 1.5), v = randomF32(nk, 62), dout = randomF32(nq, 63);
      const scale = defaultScale(hd);
      const { out, lse } = causalAttentionRef(q, k, v, T, nHeads, nKvHeads, hd, scale, window);
      const pos = Array.from({ length: T }, (_, t) => t);
      expect(closeTo(out, attentionDenseRef(q, k, v, pos, T, nHeads, nKvHeads, hd, scale, window), { atol: 1e-6, rtol: 1e-5 }, 'out')).toBeNull();
      expect(closeTo(out, causalAttentionRef(q, k, v, T, nHeads, nKvHeads, hd).out, { atol: 1e-3, rtol: 0 })).not.toBeNull(); // the window matters
      const { dq, dk, dv } = causalAttentionBackwardRef(q, k, v, out, lse, dout, T, nHeads, nKvHeads, hd, scale, window);
      const f = (qq: Float32Array, kk: Float32Array, vv: Float32Array) => causalAttentionRef(qq, kk, vv, T, nHeads, nKvHeads, hd, scale, window).out;
      expect(gradMismatch(dq, numericGrad((x) => f(x, k, v), q, dout, 1e-3), GRAD_TOL, 'dq')).toBeNull();
      expect(gradMismatch(dk, numericGrad((x) => f(q, x, v), k, dout, 1e-3), GRAD_TOL, 'dk')).toBeNull();
      expect(gradMismatch(dv, numericGrad((x) => f(q, k, x), v, dout, 1e-3), GRAD_TOL, 'dv')).toBeNull();
    });
  }
  it('an unbounded window, or one of T, is exactly plain causal; window 0 is refused', () => {
    const [T, nH, nKv, hd] = [6, 2, 1, 4];
    const q = randomF32(T * nH * hd, 70), k = randomF32(T * nKv * hd, 71), v = randomF32(T * nKv * hd, 72), dout = randomF32(T * nH * hd, 73);
    const plain = causalAttentionRef(q, k, v, T, nH, nKv, hd);
    const plainG = causalAttentionBackwardRef(q, k, v, plain.out, plain.lse, dout, T, nH, nKv, hd);
    for (const window of [{ sinks: 0, window: UNBOUNDED_WINDOW }, { sinks: 3, window: T }]) {
      const w = causalAttentionRef(q, k, v, T, nH, nKv, hd, undefined, window);
      expect(Array.from(w.out)).toEqual(Array.from(plain.out));
      expect(Array.from(w.lse)).toEqual(Array.from(plain.lse));
      const g = causalAttentionBackwardRef(q, k, v, w.out, w.lse, dout, T, nH, nKv, hd, undefined, window);
      expect(Array.from(g.dk)).toEqual(Array.from(plainG.dk));
    }
    expect(() => causalAttentionRef(q, k, v, T, nH, nKv, hd, undefined, { sinks: 0, window: 0 })).toThrow(/window = 0/);
  });
  it('rejects incomplete GQA groups and short arrays', () => {
    const a = new Float32Array(64);
    expect(() => causalAttentionRef(a, a, a, 2, 3, 2, 4)).toThrow(/multiple of nKvHeads/);
    expect(() => causalAttentionRef(a, a, a, 5, 4, 2, 4)).toThrow(ShapeError);
  });
});

describe('token logprobs references', () => {
  for (const [T, V] of [[1, 2], [3, 17], [5, 100]] as const) {
    it(`logp is log-softmax at the target and its backward matches, T=${T} V=${V}`, () => {
      const logits = randomF32(T * V, 60 + V, 4);
      const targets = Uint32Array.from({ length: T }, (_, t) => (t * 7 + 1) % V);
      const logp = tokenLogprobsRef(logits, targets, T, V);
      for (let t = 0; t < T; t++) {
        let s = 0;
        for (let c = 0; c < V; c++) s += Math.exp(logits[t * V + c]);
        expect(logp[t]).toBeCloseTo(logits[t * V + targets[t]] - Math.log(s), 5);
      }
      const dlogp = randomF32(T, 61 + T);
      const num = numericGrad((x) => tokenLogprobsRef(x, targets, T, V), logits, dlogp, 1e-3);
      expect(gradMismatch(tokenLogprobsBackwardRef(logits, targets, dlogp, T, V), num, GRAD_TOL, 'dlogits')).toBeNull();
    });
  }
  it('is max-subtracted: huge logits stay finite', () => {
    const logits = new Float32Array([1e30, 1e30 - 1e24, -1e30, 5e29]);
    const logp = tokenLogprobsRef(logits, [1], 1, 4);
    expect(Number.isFinite(logp[0])).toBe(true);
    const d = tokenLogprobsBackwardRef(logits, [0], new Float32Array([1]), 1, 4);
    expect(d.every(Number.isFinite)).toBe(true);
  });
  it('rejects targets outside the vocabulary', () => {
    expect(() => tokenLogprobsRef(new Float32Array(6), [0, 3], 2, 3)).toThrow(/targets.*\[1\] = 3/);
    expect(() => tokenLogprobsBackwardRef(new Float32Array(6), [0, 1], new Float32Array(1), 2, 3)).toThrow(/dlogp/);
  });
});
