/**
 * Training attention (dense causal GQA, one sequence) in Chromium: causalAttentionForwardTrain
 * (out + lse) and causalAttentionBackward (dq, dk, dv) against the CPU references.
 * Tolerances (f32 on the GPU vs f64 references, inputs in [-1.5, 1.5], hd <= 64, T <= 17):
 * - out is a convex combination of V rows: ~1e-6 error, FWD_TOL is ~10x (as the prefill kernel's test);
 * - lse: scores summed in another order and exp/log of f32: ~1e-6 absolute;
 * - gradients sum up to T·G products of O(1) terms with P recomputed from the GPU's own lse:
 *   ~1e-5 absolute; BWD_TOL = 1e-4 + 1e-3 relative. A wrong term is off by O(0.1-1).
 * Key windows (sinks + recent window, the inference kernels' mask) in every reduction style.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { causalAttentionBackward, causalAttentionBackwardRef, causalAttentionForwardTrain, causalAttentionRef, type TrainKeyWindow } from '../../src/kernels/attention-train.ts';
import { UNBOUNDED_WINDOW } from '../../src/kernels/attention.ts';
import { setReductionStyle, type ReductionStyle } from '../../src/kernels/plan.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import { ShapeError } from '../../src/gpu/errors.ts';
import { closeTo, download, randomF32, run, testGpu, upload } from './gpu.ts';

const FWD_TOL = { atol: 1e-5, rtol: 1e-4 };
const LSE_TOL = { atol: 1e-5, rtol: 1e-5 };
const BWD_TOL = { atol: 1e-4, rtol: 1e-3 };
const HEADS: [number, number, number][] = [[8, 4, 8], [6, 2, 64], [4, 1, 16]];

function zeros(ctx: GpuContext, n: number, label: string): GPUBuffer {
  return upload(ctx, new Float32Array(n).fill(555), label); // not zeros: a missed write shows
}

for (const dev of [{ name: 'default', options: {} }, { name: 'no subgroups', options: { disableFeatures: { subgroups: true } } }]) {
  describe(`causal attention for training (${dev.name})`, () => {
    for (const T of [1, 5, 17]) {
      for (const [nHeads, nKvHeads, hd] of HEADS) {
        if (dev.name !== 'default' && T !== 17) continue; // the fallback only changes the forward's max: one T is enough
        it(`forward and backward match the references, T=${T} heads=(${nHeads},${nKvHeads}) hd=${hd}`, async () => {
          const ctx = await testGpu(dev.options);
          const nq = T * nHeads * hd, nk = T * nKvHeads * hd;
          const q = randomF32(nq, T * 3 + hd, 1.5), k = randomF32(nk, T * 5 + nHeads, 1.5), v = randomF32(nk, T * 7 + nKvHeads), dout = randomF32(nq, T + 11);
          const qb = upload(ctx, q, 'q'), kb = upload(ctx, k, 'k'), vb = upload(ctx, v, 'v'), dob = upload(ctx, dout, 'dout');
          const outb = zeros(ctx, nq, 'out'), lseb = zeros(ctx, T * nHeads, 'lse');
          const dqb = zeros(ctx, nq, 'dq'), dkb = zeros(ctx, nk, 'dk'), dvb = zeros(ctx, nk, 'dv');
          const shape = { T, nHeads, nKvHeads, headDim: hd };
          await run(
            ctx,
            causalAttentionForwardTrain(ctx, { q: qb, k: kb, v: vb, out: outb, lse: lseb, ...shape }),
            causalAttentionBackward(ctx, { q: qb, k: kb, v: vb, out: outb, lse: lseb, dout: dob, dq: dqb, dk: dkb, dv: dvb, ...shape }),
          );
          const ref = causalAttentionRef(q, k, v, T, nHeads, nKvHeads, hd);
          expect(closeTo(await download(ctx, outb, nq), ref.out, FWD_TOL, 'out')).toBeNull();
          expect(closeTo(await download(ctx, lseb, T * nHeads), ref.lse, LSE_TOL, 'lse')).toBeNull();
          const g = causalAttentionBackwardRef(q, k, v, ref.out, ref.lse, dout, T, nHeads, nKvHeads, hd);
          expect(closeTo(await download(ctx, dqb, nq), g.dq, BWD_TOL, 'dq')).toBeNull();
          expect(closeTo(await download(ctx, dkb, nk), g.dk, BWD_TOL, 'dk')).toBeNull();
          expect(closeTo(await download(ctx, dvb, nk), g.dv, BWD_TOL, 'dv')).toBeNull();
        });
      }
    }
  });
}

describe('causal attention for training: properties', () => {
  it('walks several key / query tiles (T = 70 > the 32-invocation workgroup of hd 8)', async () => {
    const ctx = await testGpu();
    const [T, nHeads, nKvHeads, hd] = [70, 3, 1, 8];
    const nq = T * nHeads * hd, nk = T * nKvHeads * hd;
    const q = randomF32(nq, 21, 1.5), k = randomF32(nk, 22, 1.5), v = randomF32(nk, 23), dout = randomF32(nq, 24);
    const qb = upload(ctx, q), kb = upload(ctx, k), vb = upload(ctx, v);
    const outb = zeros(ctx, nq, 'out'), lseb = zeros(ctx, T * nHeads, 'lse');
    const dqb = zeros(ctx, nq, 'dq'), dkb = zeros(ctx, nk, 'dk'), dvb = zeros(ctx, nk, 'dv');
    const shape = { T, nHeads, nKvHeads, headDim: hd };
    await run(
      ctx,
      causalAttentionForwardTrain(ctx, { q: qb, k: kb, v: vb, out: outb, lse: lseb, ...shape }),
      causalAttentionBackward(ctx, { q: qb, k: kb, v: vb, out: outb, lse: lseb, dout: upload(ctx, dout), dq: dqb, dk: dkb, dv: dvb, ...shape }),
    );
    const ref = causalAttentionRef(q, k, v, T, nHeads, nKvHeads, hd);
    expect(closeTo(await download(ctx, outb, nq), ref.out, FWD_TOL, 'out')).toBeNull();
    expect(closeTo(await download(ctx, lseb, T * nHeads), ref.lse, LSE_TOL, 'lse')).toBeNull();
    const g = causalAttentionBackwardRef(q, k, v, ref.out, ref.lse, dout, T, nHeads, nKvHeads, hd);
    expect(closeTo(await download(ctx, dqb, nq), g.dq, BWD_TOL, 'dq')).toBeNull();
    expect(closeTo(await download(ctx, dkb, nk), g.dk, BWD_TOL, 'dk')).toBeNull();
    expect(closeTo(await download(ctx, dvb, nk), g.dv, BWD_TOL, 'dv')).toBeNull();
  });

  it('is deterministic: two backward runs agree bit for bit', async () => {
    const ctx = await testGpu();
    const [T, nHeads, nKvHeads, hd] = [13, 4, 2, 16];
    const nq = T * nHeads * hd, nk = T * nKvHeads * hd;
    const qb = upload(ctx, randomF32(nq, 1)), kb = upload(ctx, randomF32(nk, 2)), vb = upload(ctx, randomF32(nk, 3)), dob = upload(ctx, randomF32(nq, 4));
    const outb = zeros(ctx, nq, 'out'), lseb = zeros(ctx, T * nHeads, 'lse');
    const shape = { T, nHeads, nKvHeads, headDim: hd };
    const grads = () => ({ dq: zeros(ctx, nq, 'dq'), dk: zeros(ctx, nk, 'dk'), dv: zeros(ctx, nk, 'dv') });
    const a = grads(), b = grads();
    await run(
      ctx,
      causalAttentionForwardTrain(ctx, { q: qb, k: kb, v: vb, out: outb, lse: lseb, ...shape }),
      causalAttentionBackward(ctx, { q: qb, k: kb, v: vb, out: outb, lse: lseb, dout: dob, ...a, ...shape }),
      causalAttentionBackward(ctx, { q: qb, k: kb, v: vb, out: outb, lse: lseb, dout: dob, ...b, ...shape }),
    );
    for (const key of ['dq', 'dk', 'dv'] as const) {
      const n = key === 'dq' ? nq : nk;
      expect(Array.from(await download(ctx, a[key], n))).toEqual(Array.from(await download(ctx, b[key], n)));
    }
  });

  it('honours a custom scale and a caller-provided delta buffer', async () => {
    const ctx = await testGpu();
    const [T, nHeads, nKvHeads, hd, scale] = [6, 2, 1, 10, 0.2];
    const nq = T * nHeads * hd, nk = T * nKvHeads * hd;
    const q = randomF32(nq, 5), k = randomF32(nk, 6), v = randomF32(nk, 7), dout = randomF32(nq, 8);
    const qb = upload(ctx, q), kb = upload(ctx, k), vb = upload(ctx, v);
    const outb = zeros(ctx, nq, 'out'), lseb = zeros(ctx, T * nHeads, 'lse'), delta = zeros(ctx, T * nHeads, 'delta');
    const dqb = zeros(ctx, nq, 'dq'), dkb = zeros(ctx, nk, 'dk'), dvb = zeros(ctx, nk, 'dv');
    const shape = { T, nHeads, nKvHeads, headDim: hd, scale };
    await run(
      ctx,
      causalAttentionForwardTrain(ctx, { q: qb, k: kb, v: vb, out: outb, lse: lseb, ...shape }),
      causalAttentionBackward(ctx, { q: qb, k: kb, v: vb, out: outb, lse: lseb, dout: upload(ctx, dout), dq: dqb, dk: dkb, dv: dvb, delta, ...shape }),
    );
    const ref = causalAttentionRef(q, k, v, T, nHeads, nKvHeads, hd, scale);
    expect(closeTo(await download(ctx, outb, nq), ref.out, FWD_TOL, 'out')).toBeNull();
    const g = causalAttentionBackwardRef(q, k, v, ref.out, ref.lse, dout, T, nHeads, nKvHeads, hd, scale);
    expect(closeTo(await download(ctx, dkb, nk), g.dk, BWD_TOL, 'dk')).toBeNull();
    // delta holds D_i = rowsum(dout_i ∘ out_i)
    const D = Array.from({ length: T * nHeads }, (_, r) => dout.subarray(r * hd, (r + 1) * hd).reduce((s, x, d) => s + x * ref.out[r * hd + d], 0));
    expect(closeTo(await download(ctx, delta, T * nHeads), D, BWD_TOL, 'delta')).toBeNull();
  });

  it('rejects bad shapes before dispatch', async () => {
    const ctx = await testGpu();
    const [T, nH, nKv, hd] = [3, 4, 2, 8];
    const b = (n: number) => upload(ctx, new Float32Array(n));
    const q = b(T * nH * hd), k = b(T * nKv * hd), v = b(T * nKv * hd), out = b(T * nH * hd), lse = b(T * nH);
    const shape = { T, nHeads: nH, nKvHeads: nKv, headDim: hd };
    expect(() => causalAttentionForwardTrain(ctx, { q, k, v, out, lse, ...shape })).not.toThrow();
    expect(() => causalAttentionForwardTrain(ctx, { q, k, v, out, lse, ...shape, T: 4 })).toThrow(/q.*\[4, 4, 8\]/);
    expect(() => causalAttentionForwardTrain(ctx, { q, k, v, out, lse, ...shape, nKvHeads: 3 })).toThrow(/multiple of nKvHeads/);
    expect(() => causalAttentionForwardTrain(ctx, { q, k, v, out, lse, ...shape, headDim: 512 })).toThrow(ShapeError);
    expect(() => causalAttentionForwardTrain(ctx, { q, k, v, out: q, lse, ...shape })).toThrow(/out must not alias/);
    const grads = { dout: b(T * nH * hd), dq: b(T * nH * hd), dk: b(T * nKv * hd), dv: b(T * nKv * hd) };
    expect(() => causalAttentionBackward(ctx, { q, k, v, out, lse, ...grads, ...shape })).not.toThrow();
    expect(() => causalAttentionBackward(ctx, { q, k, v, out, lse, ...grads, dk: b(T * nKv * hd - 5), ...shape })).toThrow(/dk.*\[3, 2, 8\]/);
    expect(() => causalAttentionBackward(ctx, { q, k, v, out, lse, ...grads, dv: grads.dk, ...shape })).toThrow(/dv must not alias/);
    expect(() => causalAttentionBackward(ctx, { q, k, v, out, lse, ...grads, delta: b(T * nH - 5), ...shape })).toThrow(/delta/);
  });
});

describe('causal attention for training with a key window', () => {
  let forced: GpuContext | undefined;
  afterEach(() => {
    if (forced) setReductionStyle(forced, undefined);
    forced = undefined;
  });
  const CASES: [string, ReductionStyle, object][] = [
    ['serial', 'serial', {}],
    ['workgroup', 'workgroup', {}],
    ['workgroup, no subgroups', 'workgroup', { disableFeatures: { subgroups: true } }],
  ];
  const WINDOWS: TrainKeyWindow[] = [{ sinks: 2, window: 4 }, { sinks: 0, window: 1 }, { sinks: 5, window: 40 }];
  for (const [label, style, options] of CASES) {
    for (const [T, nHeads, nKvHeads, hd] of [[17, 4, 2, 8], [70, 3, 1, 8]] as const) {
      it(`${label}: forward and backward match the references, T=${T} heads=(${nHeads},${nKvHeads}) hd=${hd}, windows ${WINDOWS.map((w) => `${w.sinks}+${w.window}`).join(', ')}`, async () => {
        const ctx = await testGpu(options);
        setReductionStyle(ctx, style);
        forced = ctx;
        const nq = T * nHeads * hd, nk = T * nKvHeads * hd;
        const q = randomF32(nq, 90 + T, 1.5), k = randomF32(nk, 91 + T, 1.5), v = randomF32(nk, 92), dout = randomF32(nq, 93);
        const qb = upload(ctx, q, 'q'), kb = upload(ctx, k, 'k'), vb = upload(ctx, v, 'v'), dob = upload(ctx, dout, 'dout');
        for (const window of WINDOWS) {
          const outb = zeros(ctx, nq, 'out'), lseb = zeros(ctx, T * nHeads, 'lse');
          const dqb = zeros(ctx, nq, 'dq'), dkb = zeros(ctx, nk, 'dk'), dvb = zeros(ctx, nk, 'dv');
          const shape = { T, nHeads, nKvHeads, headDim: hd, window };
          const fwd = causalAttentionForwardTrain(ctx, { q: qb, k: kb, v: vb, out: outb, lse: lseb, ...shape });
          expect(fwd.label.includes('serial')).toBe(style === 'serial');
          await run(ctx, fwd, causalAttentionBackward(ctx, { q: qb, k: kb, v: vb, out: outb, lse: lseb, dout: dob, dq: dqb, dk: dkb, dv: dvb, ...shape }));
          const what = `sinks ${window.sinks} window ${window.window}`;
          const ref = causalAttentionRef(q, k, v, T, nHeads, nKvHeads, hd, undefined, window);
          expect(closeTo(await download(ctx, outb, nq), ref.out, FWD_TOL, `out, ${what}`)).toBeNull();
          expect(closeTo(await download(ctx, lseb, T * nHeads), ref.lse, LSE_TOL, `lse, ${what}`)).toBeNull();
          const g = causalAttentionBackwardRef(q, k, v, ref.out, ref.lse, dout, T, nHeads, nKvHeads, hd, undefined, window);
          expect(closeTo(await download(ctx, dqb, nq), g.dq, BWD_TOL, `dq, ${what}`)).toBeNull();
          expect(closeTo(await download(ctx, dkb, nk), g.dk, BWD_TOL, `dk, ${what}`)).toBeNull();
          expect(closeTo(await download(ctx, dvb, nk), g.dv, BWD_TOL, `dv, ${what}`)).toBeNull();
        }
      });
    }
  }

  it('an unbounded window is bit for bit the plain kernels; a window of 0 is refused', async () => {
    const ctx = await testGpu();
    const [T, nHeads, nKvHeads, hd] = [13, 4, 2, 16];
    const nq = T * nHeads * hd, nk = T * nKvHeads * hd;
    const qb = upload(ctx, randomF32(nq, 1)), kb = upload(ctx, randomF32(nk, 2)), vb = upload(ctx, randomF32(nk, 3)), dob = upload(ctx, randomF32(nq, 4));
    const results: Float32Array[][] = [];
    for (const window of [undefined, { sinks: 0, window: UNBOUNDED_WINDOW }, { sinks: 4, window: T }]) {
      const outb = zeros(ctx, nq, 'out'), lseb = zeros(ctx, T * nHeads, 'lse');
      const dqb = zeros(ctx, nq, 'dq'), dkb = zeros(ctx, nk, 'dk'), dvb = zeros(ctx, nk, 'dv');
      const shape = { T, nHeads, nKvHeads, headDim: hd, window };
      await run(ctx, causalAttentionForwardTrain(ctx, { q: qb, k: kb, v: vb, out: outb, lse: lseb, ...shape }), causalAttentionBackward(ctx, { q: qb, k: kb, v: vb, out: outb, lse: lseb, dout: dob, dq: dqb, dk: dkb, dv: dvb, ...shape }));
      results.push([await download(ctx, outb, nq), await download(ctx, dqb, nq), await download(ctx, dkb, nk), await download(ctx, dvb, nk)]);
    }
    for (const r of results.slice(1)) r.forEach((a, i) => expect(Array.from(a)).toEqual(Array.from(results[0][i])));
    const b = (n: number) => upload(ctx, new Float32Array(n));
    const args = { q: b(nq), k: b(nk), v: b(nk), out: b(nq), lse: b(T * nHeads), T, nHeads, nKvHeads, headDim: hd };
    expect(() => causalAttentionForwardTrain(ctx, { ...args, window: { sinks: 0, window: 0 } })).toThrow(ShapeError);
    expect(() => causalAttentionForwardTrain(ctx, { ...args, window: { sinks: 0, window: 0 } })).toThrow(/window = 0/);
    expect(() => causalAttentionBackward(ctx, { ...args, dout: b(nq), dq: b(nq), dk: b(nk), dv: b(nk), window: { sinks: -1, window: 3 } })).toThrow(/sinks = -1/);
  });
});
