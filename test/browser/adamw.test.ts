import { describe, expect, it } from 'vitest';
import { createStorage } from '../../src/gpu/buffers.ts';
import { ShapeError } from '../../src/gpu/errors.ts';
import { ADAMW_DEFAULTS, adamwStepRef, createAdamW, gradNormRef, type AdamWHyper, type AdamWRefState } from '../../src/kernels/adamw.ts';
import { HyperparameterError } from '../../src/learn/errors.ts';
import { lrAt } from '../../src/learn/schedule.ts';
import { closeTo, download, randomF32, run, testGpu, upload } from './gpu.ts';

/** Upload a state, run `steps` optimizer steps on GPU and CPU with the same gradients and lrs. */
async function compare(n: number, hyper: AdamWHyper, gradsOf: (step: number) => Float32Array, lrs: number[], seed: number) {
  const ctx = await testGpu();
  const p0 = randomF32(n, seed);
  const pb = upload(ctx, p0), gb = createStorage(ctx, n * 4, 'g'), mb = createStorage(ctx, n * 4, 'm'), vb = createStorage(ctx, n * 4, 'v');
  const opt = createAdamW(ctx, { params: pb, grads: gb, m: mb, v: vb, n }, hyper);
  let ref: AdamWRefState = { params: p0.slice(), m: new Float32Array(n), v: new Float32Array(n), step: 0, skipped: 0 };
  const norms: { gpu: number; cpu: number; skipped: boolean }[] = [];
  for (let s = 0; s < lrs.length; s++) {
    const g = gradsOf(s);
    ctx.device.queue.writeBuffer(gb, 0, new Float32Array(g)); // what a backward pass would have accumulated
    opt.setLr(lrs[s]);
    await run(ctx, opt.dispatches);
    const r = adamwStepRef(ref, g, lrs[s], hyper);
    ref = r.state;
    const st = await opt.readStats();
    norms.push({ gpu: st.gradNorm, cpu: r.gradNorm, skipped: st.lastSkipped });
    expect(st.lastSkipped).toBe(r.skipped);
    expect(Array.from(await download(ctx, gb, n)).every((v) => v === 0)).toBe(true); // gradients consumed
  }
  return { ctx, opt, ref, norms, params: await download(ctx, pb, n), m: await download(ctx, mb, n), v: await download(ctx, vb, n) };
}

// f32 arithmetic vs the f64 reference over a few steps: each update is ~lr in size, computed to a
// few f32 ulps, so parameters agree to ~1e-6 absolute; moments to relative 1e-5.
const P_TOL = { atol: 2e-6, rtol: 1e-5 };
const M_TOL = { atol: 1e-7, rtol: 1e-4 };

describe('AdamW on the GPU vs torch semantics (CPU reference)', () => {
  const schedule = { kind: 'linear' as const, baseLr: 1e-2, warmupSteps: 2, totalSteps: 8 };
  for (const n of [5, 3001, 300_001]) {
    it(`6 steps with warmup lrs, clipping active, n=${n}`, async () => {
      const lrs = [0, 1, 2, 3, 4, 5].map((s) => lrAt(schedule, s)).map((lr, s) => (s === 0 ? 1e-3 : lr));
      // Large gradients: the norm (~sqrt(n)) is way above max 1, so every step clips.
      const { norms, ref, params, m, v, opt } = await compare(n, { ...ADAMW_DEFAULTS, weightDecay: 0.1 }, (s) => randomF32(n, 100 + s, 2), lrs, n);
      for (const x of norms) expect(Math.abs(x.gpu - x.cpu) / x.cpu).toBeLessThan(1e-5); // f32 tree sums vs f64
      expect(norms[0].cpu).toBeGreaterThan(1);
      expect(closeTo(params, ref.params, P_TOL, 'params')).toBeNull();
      expect(closeTo(m, ref.m, M_TOL, 'm')).toBeNull();
      expect(closeTo(v, ref.v, M_TOL, 'v')).toBeNull();
      expect(await opt.readStats()).toMatchObject({ step: 6, skipped: 0, attempts: 6, lastSkipped: false });
    });
  }

  it('no clipping (maxGradNorm Infinity), beta1 0, no weight decay: 4 steps', async () => {
    const n = 777;
    const h = { beta1: 0, beta2: 0.99, eps: 1e-6, weightDecay: 0, maxGradNorm: Infinity };
    const { ref, params, m, v, norms } = await compare(n, h, (s) => randomF32(n, 200 + s, 0.01), [1e-3, 2e-3, 3e-3, 4e-3], 5);
    expect(norms[0].gpu).toBeGreaterThan(0.1); // would have been clipped at max 0.1 — here it is not
    expect(closeTo(params, ref.params, P_TOL, 'params')).toBeNull();
    expect(closeTo(m, ref.m, M_TOL, 'm')).toBeNull();
    expect(closeTo(v, ref.v, M_TOL, 'v')).toBeNull();
  });

  it('the first step moves each parameter by lr·sign(g) (Adam property, no decay, no clip)', async () => {
    const n = 9;
    const g = Float32Array.from({ length: n }, (_, i) => (i % 2 ? 1 : -1) * (0.1 + i));
    const { params } = await compare(n, { ...ADAMW_DEFAULTS, weightDecay: 0, maxGradNorm: 0, eps: 0 }, () => g, [0.05], 77);
    const p0 = randomF32(n, 77);
    for (let i = 0; i < n; i++) expect(params[i]).toBeCloseTo(p0[i] - 0.05 * Math.sign(g[i]), 6);
  });

  for (const bad of [NaN, Infinity, -Infinity]) {
    it(`a ${bad} gradient skips the step: params and moments unchanged, counted, t not advanced`, async () => {
      const n = 2000;
      const lrs = [1e-2, 1e-2, 1e-2, 1e-2];
      const gradsOf = (s: number) => {
        const g = randomF32(n, 300 + s);
        if (s === 2) g[1234] = bad;
        return g;
      };
      const ctx = await testGpu();
      const { ref, params, m, v, norms, opt } = await compare(n, ADAMW_DEFAULTS, gradsOf, lrs, 9);
      expect(norms.map((x) => x.skipped)).toEqual([false, false, true, false]);
      expect(Number.isFinite(norms[2].gpu)).toBe(false);
      expect(await opt.readStats()).toMatchObject({ step: 3, skipped: 1, attempts: 4, lastSkipped: false });
      expect(ref.step).toBe(3);
      // Same trajectory as the reference, which skipped the same step (so step 4 used t = 3).
      expect(closeTo(params, ref.params, P_TOL, 'params')).toBeNull();
      expect(closeTo(m, ref.m, M_TOL, 'm')).toBeNull();
      expect(closeTo(v, ref.v, M_TOL, 'v')).toBeNull();
      expect(params.every(Number.isFinite)).toBe(true);
      void ctx;
    });
  }

  it('a skipped step leaves params, m and v bit-identical', async () => {
    const ctx = await testGpu();
    const n = 513;
    const pb = upload(ctx, randomF32(n, 1)), gb = upload(ctx, randomF32(n, 2)), mb = createStorage(ctx, n * 4, 'm'), vb = createStorage(ctx, n * 4, 'v');
    const opt = createAdamW(ctx, { params: pb, grads: gb, m: mb, v: vb, n }, ADAMW_DEFAULTS);
    opt.setLr(1e-2);
    await run(ctx, opt.dispatches); // one real step so m, v are non-zero
    const before = [await download(ctx, pb, n), await download(ctx, mb, n), await download(ctx, vb, n)];
    const g = randomF32(n, 3);
    g[0] = NaN;
    ctx.device.queue.writeBuffer(gb, 0, new Float32Array(g));
    await run(ctx, opt.dispatches);
    const after = [await download(ctx, pb, n), await download(ctx, mb, n), await download(ctx, vb, n)];
    for (let k = 0; k < 3; k++) expect(new Uint32Array(after[k].buffer)).toEqual(new Uint32Array(before[k].buffer));
    expect(await opt.readStats()).toMatchObject({ step: 1, skipped: 1, lastSkipped: true });
  });

  it('the gradient norm is deterministic (same bits on every run) and matches f64', async () => {
    const ctx = await testGpu();
    const n = 100_003;
    const g = randomF32(n, 42);
    const gb = upload(ctx, g);
    const opt = createAdamW(ctx, { params: createStorage(ctx, n * 4, 'p'), grads: gb, m: createStorage(ctx, n * 4, 'm'), v: createStorage(ctx, n * 4, 'v'), n }, ADAMW_DEFAULTS, { zeroGrads: false });
    opt.setLr(0);
    const seen = new Set<number>();
    for (let i = 0; i < 3; i++) {
      await run(ctx, opt.dispatches);
      seen.add((await opt.readStats()).gradNorm);
    }
    expect(seen.size).toBe(1);
    expect(Math.abs([...seen][0] - gradNormRef(g)) / gradNormRef(g)).toBeLessThan(1e-5);
    expect(await download(ctx, gb, 4)).toEqual(g.subarray(0, 4)); // zeroGrads: false keeps them
  });

  it('rejects bad buffers and hyperparameters before dispatch', async () => {
    const ctx = await testGpu();
    const b = (n: number) => createStorage(ctx, n * 4, 't');
    const ok = { params: b(8), grads: b(8), m: b(8), v: b(8), n: 8 };
    expect(() => createAdamW(ctx, { ...ok, n: 9 }, ADAMW_DEFAULTS)).toThrow(ShapeError);
    expect(() => createAdamW(ctx, { ...ok, m: ok.v }, ADAMW_DEFAULTS)).toThrow(/four different buffers/);
    expect(() => createAdamW(ctx, ok, { ...ADAMW_DEFAULTS, beta2: 1 })).toThrow(HyperparameterError);
    expect(() => createAdamW(ctx, ok, { ...ADAMW_DEFAULTS, eps: -1 })).toThrow(/adamw.eps/);
    expect(() => createAdamW(ctx, ok, ADAMW_DEFAULTS).setLr(NaN)).toThrow(/lr/);
  });
});
