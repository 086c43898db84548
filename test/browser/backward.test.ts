/**
 * Elementwise / per-row backward kernels in Chromium against their CPU references:
 * rmsNormBackward, ropeBackward, siluGateBackward, tokenLogprobs (forward and backward).
 * Tolerances are stated per kernel; everything is f32 on the GPU, f64 inside the references.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { rmsNormBackward, rmsNormBackwardRef } from '../../src/kernels/rmsnorm-bwd.ts';
import { ropeBackward, ropeBackwardRef, uploadRopeBackwardInvFreq } from '../../src/kernels/rope-bwd.ts';
import { rope, ropeInvFreq, uploadRopeInvFreq } from '../../src/kernels/rope.ts';
import { siluGateBackward, siluGateBackwardRef } from '../../src/kernels/silu-bwd.ts';
import { tokenLogprobs, tokenLogprobsBackward, tokenLogprobsBackwardRef, tokenLogprobsRef } from '../../src/kernels/token-logprobs.ts';
import { ShapeError } from '../../src/gpu/errors.ts';
import { setReductionStyle } from '../../src/kernels/plan.ts';
import { closeTo, download, randomF32, run, testGpu, upload } from './gpu.ts';

const FALLBACK = { disableFeatures: { subgroups: true } };
const devices = [
  { name: 'default', options: {} },
  { name: 'no subgroups', options: FALLBACK },
];

describe('rmsNormBackward', () => {
  // Two f32 workgroup sums in another order than the f64 reference, inverseSqrt within a few ulp,
  // and dx a difference of two O(1) terms: ~1e-6 absolute; 1e-5 + 1e-4 relative is ~10x that.
  const TOL = { atol: 1e-5, rtol: 1e-4 };
  for (const dev of devices) {
    for (const [T, dim] of [[1, 7], [5, 64], [17, 100], [2, 1000]] as const) {
      it(`${dev.name}: matches the reference, T=${T} dim=${dim}`, async () => {
        const ctx = await testGpu(dev.options);
        const x = randomF32(T * dim, dim + T, 2), w = randomF32(dim, dim, 1.5), dy = randomF32(T * dim, 3 * T + dim);
        const dxb = upload(ctx, new Float32Array(T * dim).fill(777));
        await run(ctx, rmsNormBackward(ctx, { x: upload(ctx, x), weight: upload(ctx, w), dy: upload(ctx, dy), dx: dxb, T, dim, eps: 1e-5 }));
        expect(closeTo(await download(ctx, dxb, T * dim), rmsNormBackwardRef(x, w, dy, T, dim, 1e-5), TOL, 'dx')).toBeNull();
      });
    }
  }
  it('accumulates into dx when asked', async () => {
    const ctx = await testGpu();
    const [T, dim] = [3, 33];
    const x = randomF32(T * dim, 1), w = randomF32(dim, 2), dy = randomF32(T * dim, 3), base = randomF32(T * dim, 4);
    const dxb = upload(ctx, base);
    await run(ctx, rmsNormBackward(ctx, { x: upload(ctx, x), weight: upload(ctx, w), dy: upload(ctx, dy), dx: dxb, T, dim, eps: 1e-6, accumulate: true }));
    const want = rmsNormBackwardRef(x, w, dy, T, dim, 1e-6).map((v, i) => v + base[i]);
    expect(closeTo(await download(ctx, dxb, T * dim), want, TOL, 'dx')).toBeNull();
  });
  it('rejects bad shapes before dispatch', async () => {
    const ctx = await testGpu();
    const b12 = upload(ctx, new Float32Array(12)), b4 = upload(ctx, new Float32Array(4)), dy = upload(ctx, new Float32Array(12)), dx = upload(ctx, new Float32Array(12));
    const ok = { x: b12, weight: b4, dy, dx, T: 3, dim: 4, eps: 1e-5 };
    expect(() => rmsNormBackward(ctx, ok)).not.toThrow();
    expect(() => rmsNormBackward(ctx, { ...ok, T: 4 })).toThrow(ShapeError);
    expect(() => rmsNormBackward(ctx, { ...ok, T: 4 })).toThrow(/x.*\[4, 4\]/);
    expect(() => rmsNormBackward(ctx, { ...ok, T: 2, dim: 6 })).toThrow(/weight.*\[6\]/);
    expect(() => rmsNormBackward(ctx, { ...ok, dx: dy })).toThrow(/alias/);
    expect(() => rmsNormBackward(ctx, { ...ok, eps: -1 })).toThrow(/eps/);
  });
});

describe('ropeBackward', () => {
  // The GPU's own sin/cos (about 1 ulp, see rope.wgsl) against f64 cos/sin of the same f32 angle,
  // on values in [-1, 1]: as the forward's test, 1e-6 absolute.
  const TOL = { atol: 1e-6, rtol: 0 };
  const HEADS: [number, number, number][] = [[8, 4, 8], [6, 2, 64], [4, 1, 16]];
  for (const T of [1, 5, 17]) {
    for (const [nHeads, nKvHeads, headDim] of HEADS) {
      it(`matches the reference and undoes rope, T=${T} heads=(${nHeads},${nKvHeads}) hd=${headDim}`, async () => {
        const ctx = await testGpu();
        const shape = { T, nHeads, nKvHeads, headDim };
        const invFreq = ropeInvFreq(headDim, 500000, { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 });
        const positions = Uint32Array.from({ length: T }, (_, t) => 1000 + 37 * t);
        const nq = T * nHeads * headDim, nk = T * nKvHeads * headDim;
        const dq = randomF32(nq, T + headDim), dk = randomF32(nk, T + nHeads);
        const dqb = upload(ctx, dq), dkb = upload(ctx, dk), posb = upload(ctx, positions);
        const neg = uploadRopeBackwardInvFreq(ctx, invFreq);
        await run(ctx, ropeBackward(ctx, { dq: dqb, dk: dkb, positions: posb, negInvFreq: neg, ...shape }));
        const want = ropeBackwardRef(dq, dk, positions, invFreq, shape);
        expect(closeTo(await download(ctx, dqb, nq), want.dq, TOL, 'dq')).toBeNull();
        expect(closeTo(await download(ctx, dkb, nk), want.dk, TOL, 'dk')).toBeNull();
        // forward then backward on the GPU gives the input back (rotation, then its transpose)
        const qb = upload(ctx, dq), kb = upload(ctx, dk);
        await run(ctx, rope(ctx, { q: qb, k: kb, positions: posb, invFreq: uploadRopeInvFreq(ctx, invFreq), ...shape }), ropeBackward(ctx, { dq: qb, dk: kb, positions: posb, negInvFreq: neg, ...shape }));
        expect(closeTo(await download(ctx, qb, nq), dq, { atol: 2e-6, rtol: 0 }, 'q round trip')).toBeNull();
        expect(closeTo(await download(ctx, kb, nk), dk, { atol: 2e-6, rtol: 0 }, 'k round trip')).toBeNull();
      });
    }
  }
  it('rejects bad shapes before dispatch, naming its own arguments', async () => {
    const ctx = await testGpu();
    const q = upload(ctx, new Float32Array(2 * 2 * 16)), k = upload(ctx, new Float32Array(2 * 16)), pos = upload(ctx, new Uint32Array(2)), f = upload(ctx, new Float32Array(8));
    const ok = { dq: q, dk: k, positions: pos, negInvFreq: f, T: 2, nHeads: 2, nKvHeads: 1, headDim: 16 };
    expect(() => ropeBackward(ctx, ok)).not.toThrow();
    expect(() => ropeBackward(ctx, { ...ok, T: 3 })).toThrow(/ropeBackward: dq.*\[3, 2, 16\]/);
    expect(() => ropeBackward(ctx, { ...ok, nKvHeads: 2 })).toThrow(/dk.*\[2, 2, 16\]/);
    expect(() => ropeBackward(ctx, { ...ok, headDim: 15 })).toThrow(ShapeError);
    expect(() => ropeBackward(ctx, { ...ok, dk: q })).toThrow(/alias/);
    expect(() => ropeBackward(ctx, { ...ok, negInvFreq: upload(ctx, new Float32Array(4)) })).toThrow(/negInvFreq.*\[8\]/);
  });
});

describe('siluGateBackward', () => {
  // exp and divisions in f32 against f64: a few ulp, so 1e-5 relative; atol for values near 0.
  const TOL = { atol: 1e-7, rtol: 1e-5 };
  for (const n of [1, 7, 1000, 4099]) {
    it(`matches the reference, n=${n}`, async () => {
      const ctx = await testGpu();
      const g = randomF32(n, n, 8), u = randomF32(n, n + 1, 2), d = randomF32(n, n + 2);
      const dgb = upload(ctx, new Float32Array(n)), dub = upload(ctx, new Float32Array(n));
      await run(ctx, siluGateBackward(ctx, { gate: upload(ctx, g), up: upload(ctx, u), dout: upload(ctx, d), dgate: dgb, dup: dub, n }));
      const want = siluGateBackwardRef(g, u, d);
      expect(closeTo(await download(ctx, dgb, n), want.dgate, TOL, 'dgate')).toBeNull();
      expect(closeTo(await download(ctx, dub, n), want.dup, TOL, 'dup')).toBeNull();
    });
  }
  it('is finite and right for large |gate|', async () => {
    const ctx = await testGpu();
    const g = new Float32Array([100, -100, 1000, -1000, 88.8, -88.8, 30, -30, 0]);
    const n = g.length;
    const ones = new Float32Array(n).fill(1);
    const dgb = upload(ctx, new Float32Array(n)), dub = upload(ctx, new Float32Array(n));
    await run(ctx, siluGateBackward(ctx, { gate: upload(ctx, g), up: upload(ctx, ones), dout: upload(ctx, ones), dgate: dgb, dup: dub, n }));
    const dgate = await download(ctx, dgb, n), dup = await download(ctx, dub, n);
    expect(dgate.every(Number.isFinite) && dup.every(Number.isFinite)).toBe(true);
    // e^-88.8 and smaller may flush to 0 on the GPU: absolute 1e-30 there.
    const want = siluGateBackwardRef(g, ones, ones);
    expect(closeTo(dgate, want.dgate, { atol: 1e-30, rtol: 1e-5 }, 'dgate')).toBeNull();
    expect(closeTo(dup, want.dup, { atol: 1e-30, rtol: 1e-5 }, 'dup')).toBeNull();
  });
  it('rejects bad shapes before dispatch', async () => {
    const ctx = await testGpu();
    const [a, b, c, d, e] = [0, 1, 2, 3, 4].map(() => upload(ctx, new Float32Array(8)));
    const ok = { gate: a, up: b, dout: c, dgate: d, dup: e, n: 8 };
    expect(() => siluGateBackward(ctx, ok)).not.toThrow();
    expect(() => siluGateBackward(ctx, { ...ok, n: 9 })).toThrow(/gate.*\[9\]/);
    expect(() => siluGateBackward(ctx, { ...ok, dgate: c })).toThrow(/dgate must not alias/);
    expect(() => siluGateBackward(ctx, { ...ok, dup: d })).toThrow(/dup must not alias/);
    expect(() => siluGateBackward(ctx, { ...ok, n: 0 })).toThrow(ShapeError);
  });
});

describe('tokenLogprobs', () => {
  // lse over V <= 1000 logits in [-4, 4] (|lse| <= ~11): f32 sums and exp/log within a few ulp of
  // lse, so 2e-5 absolute on logp; dlogits entries are products of O(1) values: 1e-6 + 1e-4 rel.
  const LOGP_TOL = { atol: 2e-5, rtol: 0 };
  const DLOGITS_TOL = { atol: 1e-6, rtol: 1e-4 };
  // Both variants: 'serial' (one invocation per row, the CPU-class device's choice) and 'workgroup'.
  afterEach(async () => {
    for (const dev of devices) setReductionStyle(await testGpu(dev.options), undefined);
  });
  for (const [dev, style] of devices.flatMap((d) => (['serial', 'workgroup'] as const).map((st) => [d, st] as const))) {
    for (const [T, V] of [[1, 512], [5, 1000], [17, 512]] as const) {
      it(`${dev.name}, ${style}: forward and backward match the references, T=${T} V=${V}`, async () => {
        const ctx = await testGpu(dev.options);
        setReductionStyle(ctx, style);
        expect(tokenLogprobs(ctx, { logits: upload(ctx, new Float32Array(T * V)), targets: upload(ctx, new Uint32Array(T)), logp: upload(ctx, new Float32Array(T)), T, V }).label.includes('serial')).toBe(style === 'serial');
        const logits = randomF32(T * V, T * V, 4);
        const targets = Uint32Array.from({ length: T }, (_, t) => (t * 131 + 7) % V);
        const dlogp = randomF32(T, T + 3);
        dlogp[0] = 0; // an untrained position: all-zero gradient row
        const lb = upload(ctx, logits), tb = upload(ctx, targets), logpb = upload(ctx, new Float32Array(T)), db = upload(ctx, new Float32Array(T * V).fill(9));
        await run(ctx, tokenLogprobs(ctx, { logits: lb, targets: tb, logp: logpb, T, V }), tokenLogprobsBackward(ctx, { logits: lb, targets: tb, dlogp: upload(ctx, dlogp), dlogits: db, T, V }));
        expect(closeTo(await download(ctx, logpb, T), tokenLogprobsRef(logits, targets, T, V), LOGP_TOL, 'logp')).toBeNull();
        const got = await download(ctx, db, T * V);
        expect(closeTo(got, tokenLogprobsBackwardRef(logits, targets, dlogp, T, V), DLOGITS_TOL, 'dlogits')).toBeNull();
        expect(got.subarray(0, V).every((x) => x === 0)).toBe(true);
      });
    }
  }
  for (const style of ['serial', 'workgroup'] as const) it(`${style}: stays finite for huge logits (max-subtracted)`, async () => {
    const ctx = await testGpu();
    setReductionStyle(ctx, style);
    const V = 100;
    const logits = randomF32(V, 1, 1e4);
    const lb = upload(ctx, logits), tb = upload(ctx, new Uint32Array([3])), logpb = upload(ctx, new Float32Array(1)), db = upload(ctx, new Float32Array(V));
    await run(ctx, tokenLogprobs(ctx, { logits: lb, targets: tb, logp: logpb, T: 1, V }), tokenLogprobsBackward(ctx, { logits: lb, targets: tb, dlogp: upload(ctx, new Float32Array([1])), dlogits: db, T: 1, V }));
    const logp = await download(ctx, logpb, 1);
    expect(logp[0]).toBeCloseTo(tokenLogprobsRef(logits, [3], 1, V)[0], 1);
    expect((await download(ctx, db, V)).every(Number.isFinite)).toBe(true);
  });
  it('rejects bad shapes before dispatch', async () => {
    const ctx = await testGpu();
    const logits = upload(ctx, new Float32Array(3 * 10)), targets = upload(ctx, new Uint32Array(3)), logp = upload(ctx, new Float32Array(3)), dl = upload(ctx, new Float32Array(30));
    expect(() => tokenLogprobs(ctx, { logits, targets, logp, T: 3, V: 10 })).not.toThrow();
    expect(() => tokenLogprobs(ctx, { logits, targets, logp, T: 3, V: 11 })).toThrow(/logits.*\[3, 11\]/);
    expect(() => tokenLogprobs(ctx, { logits, targets, logp, T: 5, V: 6 })).toThrow(/targets.*\[5\]/);
    expect(() => tokenLogprobs(ctx, { logits, targets, logp: logits, T: 3, V: 10 })).toThrow(/alias/);
    expect(() => tokenLogprobsBackward(ctx, { logits, targets, dlogp: logp, dlogits: dl, T: 3, V: 10 })).not.toThrow();
    expect(() => tokenLogprobsBackward(ctx, { logits, targets, dlogp: logp, dlogits: logits, T: 3, V: 10 })).toThrow(/alias/);
    expect(() => tokenLogprobsBackward(ctx, { logits, targets, dlogp: logp, dlogits: upload(ctx, new Float32Array(29)), T: 3, V: 10 })).toThrow(/dlogits.*\[3, 10\]/);
  });
});
