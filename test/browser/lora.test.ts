import { describe, expect, it } from 'vitest';
import { createStorage } from '../../src/gpu/buffers.ts';
import { ShapeError } from '../../src/gpu/errors.ts';
import { encodeDispatches, type KernelDispatch } from '../../src/gpu/dispatch.ts';
import { loraBackward, loraBackwardRef, loraForward, loraForwardBankRef, loraForwardRef, loraScale, NO_ADAPTER } from '../../src/kernels/lora.ts';
import { adapterLayout, createAdapter, readAdapter, writeAdapter, type AdapterConfig, type HostAdapter } from '../../src/learn/adapter.ts';
import { createAdapterBank } from '../../src/learn/bank.ts';
import { AdapterSlotError } from '../../src/learn/errors.ts';
import { parseModelConfig } from '../../src/model/config.ts';
import { gemv } from '../../src/kernels/gemv.ts';
import { matmulRef } from '../../src/kernels/weights.ts';
import { reductionStyle } from '../../src/kernels/plan.ts';
import { uploadWeight } from '../../src/kernels/quantize.ts';
import { closeTo, download, randomF32, run, testGpu, upload } from './gpu.ts';

// f32 sums over <= a few hundred terms of values in [-1, 1): the GPU's order differs from the f64
// reference, so a few ulps of the largest partial sums; 2e-5 absolute + 1e-4 relative covers it.
const TOL = { atol: 2e-5, rtol: 1e-4 };

describe('loraForward (adapter bank, mixed adapters per row)', () => {
  const cases = [
    { M: 1, inDim: 7, outDim: 5, r: 1, nSlots: 1 },
    { M: 5, inDim: 33, outDim: 19, r: 3, nSlots: 3 },
    { M: 11, inDim: 70, outDim: 131, r: 8, nSlots: 4 }, // inDim > 64 lanes: strided lanes in the shrink
  ];
  for (const c of cases) {
    it(`matches the reference M=${c.M} in=${c.inDim} out=${c.outDim} r=${c.r} slots=${c.nSlots}`, async () => {
      const ctx = await testGpu();
      const { M, inDim, outDim, r, nSlots } = c;
      // The banks sit at odd offsets of larger buffers, as modules of a shared bank buffer do.
      const aOffset = 13, bOffset = 29;
      const aBank = randomF32(nSlots * r * inDim, 1 + M), bBank = randomF32(nSlots * outDim * r, 2 + M);
      const aBuf = new Float32Array(aOffset + aBank.length + 3); aBuf.set(aBank, aOffset);
      const bBuf = new Float32Array(bOffset + bBank.length + 3); bBuf.set(bBank, bOffset);
      const scales = Float32Array.from({ length: nSlots }, (_, s) => 0.5 + s);
      // Every slot, no adapter, and an out-of-range slot (treated as none) in one batch.
      const ids = Uint32Array.from({ length: M }, (_, m) => (m % (nSlots + 2) === nSlots ? NO_ADAPTER : m % (nSlots + 2) === nSlots + 1 ? nSlots + 7 : m % (nSlots + 2)));
      const x = randomF32(M * inDim, 3 + M), y0 = randomF32(M * outDim, 4 + M);
      const yb = upload(ctx, y0);
      await run(ctx, loraForward(ctx, { x: upload(ctx, x), y: yb, h: createStorage(ctx, M * r * 4, 'h'), A: upload(ctx, aBuf), B: upload(ctx, bBuf), scales: upload(ctx, scales), ids: upload(ctx, ids), M, inDim, outDim, r, nSlots, aOffset, bOffset }));
      const got = await download(ctx, yb, M * outDim);
      const want = loraForwardBankRef(y0, x, aBank, bBank, scales, ids, M, inDim, outDim, r, nSlots);
      expect(closeTo(got, want, TOL, 'y')).toBeNull();
      // Rows without an adapter are untouched, bit for bit.
      for (let m = 0; m < M; m++) if (ids[m] >= nSlots) expect(Array.from(got.subarray(m * outDim, (m + 1) * outDim))).toEqual(Array.from(y0.subarray(m * outDim, (m + 1) * outDim)));
    });
  }

  it('rejects bad shapes and aliasing before dispatch', async () => {
    const ctx = await testGpu();
    const b = (n: number) => createStorage(ctx, n * 4, 't');
    const ok = { x: b(8), y: b(8), h: b(4), A: b(8), B: b(8), scales: b(2), ids: b(2), M: 2, inDim: 4, outDim: 4, r: 2, nSlots: 1 };
    expect(() => loraForward(ctx, ok)).not.toThrow();
    expect(() => loraForward(ctx, { ...ok, nSlots: 2 })).toThrow(ShapeError);
    expect(() => loraForward(ctx, { ...ok, nSlots: 2 })).toThrow(/loraForward: A .*\[2, 2, 4\]/);
    expect(() => loraForward(ctx, { ...ok, aOffset: 1 })).toThrow(/A .*offset 4/);
    expect(() => loraForward(ctx, { ...ok, r: 0 })).toThrow(/r = 0/);
    expect(() => loraForward(ctx, { ...ok, y: ok.x })).toThrow(/y must not alias x/);
    expect(() => loraForward(ctx, { ...ok, aOffset: -1 })).toThrow(/aOffset/);
  });
});

describe('loraBackward (one adapter in a flat parameter buffer)', () => {
  const cases = [
    { M: 1, inDim: 5, outDim: 3, r: 1 },
    { M: 7, inDim: 33, outDim: 70, r: 4 },
    { M: 9, inDim: 100, outDim: 37, r: 8 },
  ];
  for (const c of cases) {
    it(`dA, dB accumulate and dx adds, M=${c.M} in=${c.inDim} out=${c.outDim} r=${c.r}`, async () => {
      const ctx = await testGpu();
      const { M, inDim, outDim, r } = c;
      const scale = 16 / r;
      const aOffset = 64, bOffset = 64 + r * inDim + 5; // B after A with a gap, as in a flat adapter
      const P = bOffset + outDim * r + 7;
      const A = randomF32(r * inDim, 10 + M, 0.3), B = randomF32(outDim * r, 11 + M, 0.3);
      const params = randomF32(P, 12 + M); params.set(A, aOffset); params.set(B, bOffset);
      const grads0 = randomF32(P, 13 + M); // existing gradients: the kernels must add to them
      const x = randomF32(M * inDim, 14 + M), dy = randomF32(M * outDim, 15 + M), dx0 = randomF32(M * inDim, 16 + M);
      const gb = upload(ctx, grads0), dxb = upload(ctx, dx0);
      const ds = loraBackward(ctx, { x: upload(ctx, x), dy: upload(ctx, dy), dx: dxb, params: upload(ctx, params), grads: gb, hg: createStorage(ctx, 2 * M * r * 4, 'hg'), M, inDim, outDim, r, scale, aOffset, bOffset });
      const hg = reductionStyle(ctx) === 'serial' ? 'lora_bwd_hg_serial_f32_wg64' : 'lora_bwd_hg_f32_wg64';
      expect(ds.map((d) => d.label)).toEqual([hg, 'lora_bwd_db_f32_wg64', 'lora_bwd_da_f32_wg64', 'lora_bwd_dx_f32_wg64']);
      await run(ctx, ds);
      const ref = loraBackwardRef(x, A, B, dy, M, inDim, outDim, r, scale);
      const grads = await download(ctx, gb, P), dx = await download(ctx, dxb, M * inDim);
      const wantGrads = grads0.slice();
      ref.dA.forEach((v, i) => (wantGrads[aOffset + i] += v));
      ref.dB.forEach((v, i) => (wantGrads[bOffset + i] += v));
      // scale up to 16 multiplies the sums: tolerance relative to the gradient's magnitude.
      const tol = { atol: 2e-4, rtol: 2e-4 };
      expect(closeTo(grads.subarray(aOffset, aOffset + r * inDim), wantGrads.subarray(aOffset, aOffset + r * inDim), tol, 'dA')).toBeNull();
      expect(closeTo(grads.subarray(bOffset, bOffset + outDim * r), wantGrads.subarray(bOffset, bOffset + outDim * r), tol, 'dB')).toBeNull();
      // Everything outside A's and B's slices is untouched, bit for bit.
      const outside = (a: Float32Array) => [...a.subarray(0, aOffset), ...a.subarray(aOffset + r * inDim, bOffset), ...a.subarray(bOffset + outDim * r)];
      expect(outside(grads)).toEqual(outside(grads0));
      expect(closeTo(dx, ref.dx.map((v, i) => v + dx0[i]), tol, 'dx')).toBeNull();
    });
  }

  it('without dx: three dispatches, and running twice doubles the gradients', async () => {
    const ctx = await testGpu();
    const M = 3, inDim = 6, outDim = 4, r = 2, scale = 2;
    const params = randomF32(6 * 2 + 4 * 2, 21);
    const x = randomF32(M * inDim, 22), dy = randomF32(M * outDim, 23);
    const gb = createStorage(ctx, params.length * 4, 'grads');
    const ds = loraBackward(ctx, { x: upload(ctx, x), dy: upload(ctx, dy), params: upload(ctx, params), grads: gb, hg: createStorage(ctx, 2 * M * r * 4, 'hg'), M, inDim, outDim, r, scale, aOffset: 0, bOffset: 12 });
    expect(ds).toHaveLength(3);
    await run(ctx, ds);
    const once = await download(ctx, gb, params.length);
    await run(ctx, ds);
    const twice = await download(ctx, gb, params.length);
    const ref = loraBackwardRef(x, params.subarray(0, 12), params.subarray(12), dy, M, inDim, outDim, r, scale);
    expect(closeTo(once, [...ref.dA, ...ref.dB], TOL, 'grads')).toBeNull();
    expect(closeTo(twice, Array.from(once, (v) => 2 * v), { atol: 1e-6, rtol: 1e-6 }, 'accumulated')).toBeNull();
  });

  it('rejects overlapping A/B, aliasing and bad scale before dispatch', async () => {
    const ctx = await testGpu();
    const b = (n: number) => createStorage(ctx, n * 4, 't');
    const ok = { x: b(8), dy: b(8), dx: b(8), params: b(16), grads: b(16), hg: b(8), M: 2, inDim: 4, outDim: 4, r: 2, scale: 1, aOffset: 0, bOffset: 8 };
    expect(() => loraBackward(ctx, ok)).not.toThrow();
    expect(() => loraBackward(ctx, { ...ok, bOffset: 4 })).toThrow(/overlaps A/);
    expect(() => loraBackward(ctx, { ...ok, bOffset: 9 })).toThrow(/grads \(dB\)|params \(B\)/);
    expect(() => loraBackward(ctx, { ...ok, grads: ok.params })).toThrow(/grads must not alias params/);
    expect(() => loraBackward(ctx, { ...ok, dx: ok.x })).toThrow(/dx must not alias x/);
    expect(() => loraBackward(ctx, { ...ok, scale: NaN })).toThrow(/scale/);
  });
});

describe('serving overhead of loraForward (SwiftShader, rough)', () => {
  for (const [outDim, inDim] of [[576, 576], [1536, 576]]) {
    it(`base GEMV vs GEMV + LoRA r=8, W [${outDim}, ${inDim}], M=1`, async () => {
      const ctx = await testGpu();
      const M = 1, r = 8, nSlots = 2;
      const W = randomF32(outDim * inDim, 31, 0.05);
      const w = await uploadWeight(ctx, W, outDim, inDim, 'f32', 'w');
      const x = randomF32(M * inDim, 32);
      const xb = upload(ctx, x), yb = createStorage(ctx, M * outDim * 4, 'y');
      const aBank = randomF32(nSlots * r * inDim, 33, 0.05), bBank = randomF32(nSlots * outDim * r, 34, 0.05);
      const scales = new Float32Array([2, 0.5]);
      const ids = new Uint32Array([1]);
      const base = gemv(ctx, { x: xb, w, y: yb, M });
      const lora = loraForward(ctx, { x: xb, y: yb, h: createStorage(ctx, M * r * 4, 'h'), A: upload(ctx, aBank), B: upload(ctx, bBank), scales: upload(ctx, scales), ids: upload(ctx, ids), M, inDim, outDim, r, nSlots });
      const reps = 50;
      const time = async (ds: KernelDispatch[]) => {
        await run(ctx, ds); // warm the pipelines
        let best = Infinity;
        for (let trial = 0; trial < 3; trial++) {
          const enc = ctx.device.createCommandEncoder();
          for (let i = 0; i < reps; i++) encodeDispatches(enc, ds);
          const t0 = performance.now();
          ctx.device.queue.submit([enc.finish()]);
          await ctx.device.queue.onSubmittedWorkDone();
          best = Math.min(best, (performance.now() - t0) / reps);
        }
        return best;
      };
      const tBase = await time(base);
      const tBoth = await time([...base, ...lora]);
      console.log(`[lora overhead] W [${outDim}, ${inDim}] M=1 r=8: gemv ${(tBase * 1000).toFixed(0)} us, gemv+lora ${(tBoth * 1000).toFixed(0)} us, overhead ${(((tBoth - tBase) / tBase) * 100).toFixed(0)}%`);
      // The timed run's result is still right (y = base + one delta from the last repetition).
      await run(ctx, [...base, ...lora]);
      const got = await download(ctx, yb, M * outDim);
      const want = loraForwardBankRef(matmulRef(x, W, M, outDim, inDim), x, aBank, bBank, scales, ids, M, inDim, outDim, r, nSlots);
      expect(closeTo(got, want, { atol: 1e-4, rtol: 1e-4 }, 'y')).toBeNull();
      expect(tBoth).toBeGreaterThan(0);
    });
  }
});

describe('adapter bank and GPU adapter drive the kernels through their layouts', () => {
  const storiesConfig = async () => parseModelConfig(await (await fetch('/models/stories260K/config.json')).text());

  it('bank: two adapters of different rank and targets, an empty slot and no-adapter rows in one batch', async () => {
    const ctx = await testGpu();
    const model = await storiesConfig();
    const bank = createAdapterBank(ctx, model, { nSlots: 3, rank: 4, targetModules: ['down_proj', 'q_proj'] });
    const mk = (c: AdapterConfig, seed: number): HostAdapter => ({
      config: c,
      tensors: adapterLayout(model, c).slices.map((s, i) => ({ layer: s.layer, module: s.module, A: randomF32(c.r * s.inDim, seed + 2 * i), B: randomF32(s.outDim * c.r, seed + 2 * i + 1) })),
    });
    const X = mk({ r: 4, loraAlpha: 8, useRslora: false, targetModules: ['q_proj', 'down_proj'], baseModelNameOrPath: '' }, 100);
    const Y = mk({ r: 2, loraAlpha: 4, useRslora: true, targetModules: ['down_proj'], baseModelNameOrPath: '' }, 200);
    bank.load(0, X);
    bank.load(2, Y);
    bank.load(1, X);
    bank.unload(1); // empty again: rows naming it get nothing
    const ids = new Uint32Array([0, 2, NO_ADAPTER, 1, 2]);
    const M = ids.length;
    const idsBuf = upload(ctx, ids);
    for (const [module, layer] of [['down_proj', 1], ['q_proj', 3]] as const) {
      const g = bank.region(layer, module)!;
      const x = randomF32(M * g.inDim, 7), y0 = randomF32(M * g.outDim, 8);
      const yb = upload(ctx, y0);
      await run(ctx, bank.forward(layer, module, { x: upload(ctx, x), y: yb, h: createStorage(ctx, M * 4 * 4, 'h'), ids: idsBuf, M }));
      const want = y0.slice();
      for (let m = 0; m < M; m++) {
        const ad = ids[m] === 0 ? X : ids[m] === 2 ? Y : undefined;
        const t = ad?.tensors.find((u) => u.layer === layer && u.module === module);
        if (!ad || !t) continue;
        const d = loraForwardRef(x.subarray(m * g.inDim, (m + 1) * g.inDim), t.A, t.B, 1, g.inDim, g.outDim, ad.config.r, loraScale(ad.config.r, ad.config.loraAlpha, ad.config.useRslora));
        d.forEach((v, o) => (want[m * g.outDim + o] += v));
      }
      expect(closeTo(await download(ctx, yb, M * g.outDim), want, TOL, `${module} y`)).toBeNull();
    }
    expect(() => bank.load(3, X)).toThrow(AdapterSlotError);
    expect(() => bank.load(0, mk({ r: 8, loraAlpha: 8, useRslora: false, targetModules: ['q_proj'], baseModelNameOrPath: '' }, 1))).toThrow(/above the bank's rank 4/);
    expect(() => bank.forward(0, 'k_proj', { x: idsBuf, y: idsBuf, h: idsBuf, ids: idsBuf, M })).toThrow(/no LoRA on layer 0 k_proj/);
  });

  it('training: forward and backward on a GpuAdapter slice (offsets into the flat buffers)', async () => {
    const ctx = await testGpu();
    const model = await storiesConfig();
    const cfg: AdapterConfig = { r: 3, loraAlpha: 6, useRslora: false, targetModules: ['k_proj', 'up_proj'], baseModelNameOrPath: '' };
    const ad = await createAdapter(ctx, model, cfg, 5);
    const host = await readAdapter(ctx, ad);
    host.tensors.forEach((t, i) => t.B.set(randomF32(t.B.length, 50 + i, 0.2))); // B = 0 would make dA and dx trivially 0
    writeAdapter(ctx, ad, host);
    const s = ad.slice(2, 'up_proj')!;
    const t = host.tensors.find((u) => u.layer === 2 && u.module === 'up_proj')!;
    const M = 6;
    const x = randomF32(M * s.inDim, 1), y0 = randomF32(M * s.outDim, 2), dy = randomF32(M * s.outDim, 3);
    const xb = upload(ctx, x), yb = upload(ctx, y0);
    await run(ctx, loraForward(ctx, { x: xb, y: yb, h: createStorage(ctx, M * cfg.r * 4, 'h'), A: ad.params, B: ad.params, scales: ad.scales, ids: createStorage(ctx, M * 4, 'ids0'), M, inDim: s.inDim, outDim: s.outDim, r: cfg.r, nSlots: 1, aOffset: s.aOffset, bOffset: s.bOffset }));
    const fwd = loraForwardRef(x, t.A, t.B, M, s.inDim, s.outDim, cfg.r, ad.scale);
    expect(closeTo(await download(ctx, yb, M * s.outDim), y0.map((v, i) => v + fwd[i]), TOL, 'y')).toBeNull();
    await run(ctx, loraBackward(ctx, { x: xb, dy: upload(ctx, dy), params: ad.params, grads: ad.grads, hg: createStorage(ctx, 2 * M * cfg.r * 4, 'hg'), M, inDim: s.inDim, outDim: s.outDim, r: cfg.r, scale: ad.scale, aOffset: s.aOffset, bOffset: s.bOffset }));
    const ref = loraBackwardRef(x, t.A, t.B, dy, M, s.inDim, s.outDim, cfg.r, ad.scale);
    const grads = await download(ctx, ad.grads, ad.layout.n);
    expect(closeTo(grads.subarray(s.aOffset, s.aOffset + cfg.r * s.inDim), ref.dA, { atol: 1e-4, rtol: 1e-4 }, 'dA')).toBeNull();
    expect(closeTo(grads.subarray(s.bOffset, s.bOffset + s.outDim * cfg.r), ref.dB, { atol: 1e-4, rtol: 1e-4 }, 'dB')).toBeNull();
    // Only that slice's gradients moved.
    const touched = grads.reduce((n, v, i) => n + (v !== 0 && !((i >= s.aOffset && i < s.aOffset + cfg.r * s.inDim) || (i >= s.bOffset && i < s.bOffset + s.outDim * cfg.r)) ? 1 : 0), 0);
    expect(touched).toBe(0);
  });
});
