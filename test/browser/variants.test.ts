/**
 * Both reduction styles of every family that has them (src/kernels/plan.ts): 'workgroup' (the
 * reductions across a workgroup, the plan before issue 11) and 'serial' (one invocation per output,
 * no barrier; the fused plan's pick on CPU-class devices), each against the family's CPU reference,
 * on odd shapes. The family test files cover the device's default style; this file forces each.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { readF32 } from '../../src/gpu/buffers.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import { adamwStepRef, ADAMW_DEFAULTS, createAdamW } from '../../src/kernels/adamw.ts';
import { attentionDecode, attentionDecodeRef } from '../../src/kernels/attention.ts';
import { causalAttentionBackward, causalAttentionBackwardRef, causalAttentionForwardTrain, causalAttentionRef } from '../../src/kernels/attention-train.ts';
import { loraBackward, loraBackwardRef, loraForward, loraForwardBankRef } from '../../src/kernels/lora.ts';
import { matmul } from '../../src/kernels/matmul.ts';
import { matmulInputGrad, matmulInputGradRef } from '../../src/kernels/matmul-bwd.ts';
import { reductionStyle, setReductionStyle, type ReductionStyle } from '../../src/kernels/plan.ts';
import { uploadWeight } from '../../src/kernels/quantize.ts';
import { rmsNormBackward, rmsNormBackwardRef } from '../../src/kernels/rmsnorm-bwd.ts';
import { rmsNorm, rmsNormRef } from '../../src/kernels/rmsnorm.ts';
import { dequantizeRef, matmulRef, packF16Ref, quantizeQ4Ref, WEIGHT_FORMATS, type WeightFormat } from '../../src/kernels/weights.ts';
import { topK, topKRef } from '../../src/kernels/sampling.ts';
import { closeTo, download, downloadU32, randomF32, run, testGpu, upload } from './gpu.ts';

const STYLES: ReductionStyle[] = ['workgroup', 'serial'];
const TOL = { atol: 1e-5, rtol: 1e-4 };

let forced: GpuContext | undefined;
async function gpuWith(style: ReductionStyle): Promise<GpuContext> {
  const ctx = await testGpu();
  setReductionStyle(ctx, style);
  forced = ctx;
  return ctx;
}
afterEach(() => {
  if (forced) setReductionStyle(forced, undefined);
  forced = undefined;
});

function deq(format: WeightFormat, w: Float32Array, N: number, K: number): Float32Array {
  if (format === 'f32') return w;
  if (format === 'f16') return dequantizeRef('f16', N, K, packF16Ref(w, N, K));
  const p = quantizeQ4Ref(w, N, K);
  return dequantizeRef('q4', N, K, p.data, p.scales);
}

describe.each(STYLES)('%s style', (style) => {
  it('rmsNorm and its backward', async () => {
    const ctx = await gpuWith(style);
    for (const [T, dim] of [[1, 7], [5, 64], [70, 33]]) {
      const x = randomF32(T * dim, T + dim), w = randomF32(dim, 3), dy = randomF32(T * dim, 4), dx0 = randomF32(T * dim, 5);
      const yb = upload(ctx, new Float32Array(T * dim)), dxb = upload(ctx, dx0);
      await run(ctx, rmsNorm(ctx, { x: upload(ctx, x), weight: upload(ctx, w), y: yb, T, dim, eps: 1e-5 }));
      expect(closeTo(await download(ctx, yb, T * dim), rmsNormRef(x, w, T, dim, 1e-5), TOL, `rmsNorm ${T}x${dim}`)).toBeNull();
      const d = rmsNormBackward(ctx, { x: upload(ctx, x), weight: upload(ctx, w), dy: upload(ctx, dy), dx: dxb, T, dim, eps: 1e-5, accumulate: true });
      expect(d.label.includes('rows')).toBe(style === 'serial');
      await run(ctx, d);
      const want = rmsNormBackwardRef(x, w, dy, T, dim, 1e-5).map((v, i) => v + dx0[i]);
      expect(closeTo(await download(ctx, dxb, T * dim), want, TOL, `rmsNormBackward ${T}x${dim}`)).toBeNull();
    }
  });

  it('LoRA shrink (bank, rows without an adapter) and backward h/g', async () => {
    const ctx = await gpuWith(style);
    const [M, inDim, outDim, r, nSlots] = [7, 33, 19, 3, 2];
    const x = randomF32(M * inDim, 1), A = randomF32(nSlots * r * inDim, 2), B = randomF32(nSlots * outDim * r, 3), y0 = randomF32(M * outDim, 4);
    const scales = Float32Array.from([0.5, 2]);
    const ids = Uint32Array.from([0, 1, 0xffffffff, 1, 0, 0xffffffff, 1]);
    const yb = upload(ctx, y0);
    const ds = loraForward(ctx, { x: upload(ctx, x), y: yb, h: upload(ctx, new Float32Array(M * r)), A: upload(ctx, A), B: upload(ctx, B), scales: upload(ctx, scales), ids: upload(ctx, ids), M, inDim, outDim, r, nSlots });
    expect(ds[0].label.includes('serial')).toBe(style === 'serial');
    await run(ctx, ds);
    expect(closeTo(await download(ctx, yb, M * outDim), loraForwardBankRef(y0, x, A, B, scales, ids, M, inDim, outDim, r, nSlots), TOL, 'lora forward')).toBeNull();

    const dy = randomF32(M * outDim, 5);
    const aOffset = 3, bOffset = 3 + r * inDim + 5;
    const params = new Float32Array(bOffset + outDim * r + 2);
    params.set(A.subarray(0, r * inDim), aOffset);
    params.set(B.subarray(0, outDim * r), bOffset);
    const gradsB = upload(ctx, new Float32Array(params.length)), dxb = upload(ctx, new Float32Array(M * inDim));
    await run(ctx, loraBackward(ctx, { x: upload(ctx, x), dy: upload(ctx, dy), dx: dxb, params: upload(ctx, params), grads: gradsB, hg: upload(ctx, new Float32Array(2 * M * r)), M, inDim, outDim, r, scale: 1.5, aOffset, bOffset }));
    const ref = loraBackwardRef(x, A.subarray(0, r * inDim), B.subarray(0, outDim * r), dy, M, inDim, outDim, r, 1.5);
    const g = await download(ctx, gradsB, params.length);
    expect(closeTo(g.subarray(aOffset, aOffset + r * inDim), ref.dA, TOL, 'dA')).toBeNull();
    expect(closeTo(g.subarray(bOffset, bOffset + outDim * r), ref.dB, TOL, 'dB')).toBeNull();
    expect(closeTo(await download(ctx, dxb, M * inDim), ref.dx, TOL, 'dx')).toBeNull();
  });

  it('paged decode attention (GQA, several sequences of different lengths)', async () => {
    const ctx = await gpuWith(style);
    const [nSeqs, nHeads, nKvHeads, hd, nBlocks, maxB] = [3, 6, 2, 8, 8, 3];
    const kCache = randomF32(nBlocks * 16 * nKvHeads * hd, 1), vCache = randomF32(nBlocks * 16 * nKvHeads * hd, 2);
    const blockTable = Uint32Array.from([5, 1, 7, 0, 2, 0, 3, 4, 6]);
    const seqLens = Uint32Array.from([37, 1, 20]);
    const q = randomF32(nSeqs * nHeads * hd, 3);
    const out = upload(ctx, new Float32Array(nSeqs * nHeads * hd));
    const d = attentionDecode(ctx, { q: upload(ctx, q), kCache: upload(ctx, kCache), vCache: upload(ctx, vCache), blockTable: upload(ctx, blockTable), seqLens: upload(ctx, seqLens), out, nBlocks, nKvHeads, headDim: hd, nSeqs, maxBlocksPerSeq: maxB, nHeads });
    expect(d.label.includes('serial')).toBe(style === 'serial');
    await run(ctx, d);
    const want = attentionDecodeRef(q, { kCache, vCache, blockTable, maxBlocksPerSeq: maxB, nKvHeads, headDim: hd }, seqLens, nHeads);
    expect(closeTo(await download(ctx, out, want.length), want, TOL, 'decode attention')).toBeNull();
  });

  it('training attention forward and backward', async () => {
    const ctx = await gpuWith(style);
    for (const [T, nHeads, nKvHeads, hd] of [[13, 4, 2, 8], [5, 3, 1, 16]]) {
      const q = randomF32(T * nHeads * hd, 1), k = randomF32(T * nKvHeads * hd, 2), v = randomF32(T * nKvHeads * hd, 3), dout = randomF32(T * nHeads * hd, 4);
      const qb = upload(ctx, q), kb = upload(ctx, k), vb = upload(ctx, v);
      const outB = upload(ctx, new Float32Array(T * nHeads * hd)), lseB = upload(ctx, new Float32Array(T * nHeads));
      const fwd = causalAttentionForwardTrain(ctx, { q: qb, k: kb, v: vb, out: outB, lse: lseB, T, nHeads, nKvHeads, headDim: hd });
      expect(fwd.label.includes('serial')).toBe(style === 'serial');
      await run(ctx, fwd);
      const ref = causalAttentionRef(q, k, v, T, nHeads, nKvHeads, hd);
      expect(closeTo(await download(ctx, outB, ref.out.length), ref.out, TOL, 'out')).toBeNull();
      expect(closeTo(await download(ctx, lseB, ref.lse.length), ref.lse, TOL, 'lse')).toBeNull();
      const dq = upload(ctx, new Float32Array(T * nHeads * hd)), dk = upload(ctx, new Float32Array(T * nKvHeads * hd)), dv = upload(ctx, new Float32Array(T * nKvHeads * hd));
      await run(ctx, causalAttentionBackward(ctx, { q: qb, k: kb, v: vb, out: outB, lse: lseB, dout: upload(ctx, dout), dq, dk, dv, T, nHeads, nKvHeads, headDim: hd }));
      const g = causalAttentionBackwardRef(q, k, v, ref.out, ref.lse, dout, T, nHeads, nKvHeads, hd);
      expect(closeTo(await download(ctx, dq, g.dq.length), g.dq, TOL, 'dq')).toBeNull();
      expect(closeTo(await download(ctx, dk, g.dk.length), g.dk, TOL, 'dk')).toBeNull();
      expect(closeTo(await download(ctx, dv, g.dv.length), g.dv, TOL, 'dv')).toBeNull();
    }
  });

  it('GEMM and input gradient at training sizes (M = 37, 96), every format, sharded', async () => {
    const ctx = await gpuWith(style);
    for (const format of WEIGHT_FORMATS) {
      for (const [M, N, K] of [[37, 70, 68], [96, 43, 64]]) {
        const w = randomF32(N * K, M + N);
        const weight = await uploadWeight(ctx, w, N, K, format, `v-${format}`);
        const wd = deq(format, w, N, K);
        const x = randomF32(M * K, 7), dy = randomF32(M * N, 8);
        const yb = upload(ctx, new Float32Array(M * N)), dxb = upload(ctx, new Float32Array(M * K));
        const mm = matmul(ctx, { x: upload(ctx, x), w: weight, y: yb, M });
        expect(mm[0].label.startsWith('linear_')).toBe(style === 'serial');
        await run(ctx, mm);
        expect(closeTo(await download(ctx, yb, M * N), matmulRef(x, wd, M, N, K), { atol: 5e-5, rtol: 2e-5 }, `${format} matmul M=${M}`)).toBeNull();
        const ig = matmulInputGrad(ctx, { dy: upload(ctx, dy), w: weight, dx: dxb, M });
        expect(ig[0].label.includes('small')).toBe(style === 'serial');
        await run(ctx, ig);
        expect(closeTo(await download(ctx, dxb, M * K), matmulInputGradRef(dy, wd, M, N, K), { atol: 5e-5, rtol: 2e-5 }, `${format} input grad M=${M}`)).toBeNull();
      }
    }
    const capped = await testGpu({ limitsCap: { maxStorageBufferBindingSize: 4096 } });
    setReductionStyle(capped, style);
    try {
      const [M, N, K] = [20, 70, 100];
      const w = randomF32(N * K, 3);
      const weight = await uploadWeight(capped, w, N, K, 'f32', 'capped');
      expect(weight.shards.length).toBeGreaterThan(1);
      const dy = randomF32(M * N, 4), dx0 = randomF32(M * K, 5);
      const dxb = upload(capped, dx0);
      await run(capped, matmulInputGrad(capped, { dy: upload(capped, dy), w: weight, dx: dxb, M, accumulate: true }));
      expect(closeTo(await download(capped, dxb, M * K), matmulInputGradRef(dy, w, M, N, K).map((v, i) => v + dx0[i]), { atol: 5e-5, rtol: 2e-5 }, 'sharded input grad')).toBeNull();
    } finally {
      setReductionStyle(capped, undefined);
    }
  });

  it('AdamW global norm (partial sums) and step', async () => {
    const ctx = await gpuWith(style);
    const n = 5000;
    const params = randomF32(n, 1), grads = randomF32(n, 2);
    const pb = upload(ctx, params), gb = upload(ctx, grads), mb = upload(ctx, new Float32Array(n)), vb = upload(ctx, new Float32Array(n));
    const opt = createAdamW(ctx, { params: pb, grads: gb, m: mb, v: vb, n }, ADAMW_DEFAULTS);
    expect(opt.dispatches[0].label.includes('serial')).toBe(style === 'serial');
    opt.setLr(1e-3);
    await run(ctx, opt.dispatches);
    const ref = adamwStepRef({ params: params.slice(), m: new Float32Array(n), v: new Float32Array(n), step: 0, skipped: 0 }, grads, 1e-3, ADAMW_DEFAULTS);
    expect((await opt.readStats()).gradNorm).toBeCloseTo(ref.gradNorm, 3);
    expect(closeTo(await readF32(ctx, pb, n), ref.state.params, { atol: 1e-6, rtol: 1e-5 }, 'params')).toBeNull();
    opt.destroy();
  });

  it('top-k and argmax (one pass, and chunks + merge), exactly as the reference', async () => {
    const ctx = await gpuWith(style);
    for (const [R, V, k] of [[2, 512, 1], [3, 500, 7], [2, 5000, 1], [2, 5000, 9]]) {
      const logits = randomF32(R * V, R * V + k, 8).map((v) => Math.round(v * 8) / 8); // many ties
      const vb = upload(ctx, new Float32Array(R * k)), ib = upload(ctx, new Uint32Array(R * k));
      const ds = topK(ctx, { logits: upload(ctx, logits), values: vb, ids: ib, R, V, k });
      expect(ds.every((d) => d.label.includes('serial') === (style === 'serial'))).toBe(true);
      await run(ctx, ds);
      const want = topKRef(logits, R, V, k);
      expect(Array.from(await downloadU32(ctx, ib, R * k))).toEqual(Array.from(want.ids));
      expect(Array.from(await download(ctx, vb, R * k))).toEqual(Array.from(want.values));
    }
  });

  it('reports the forced style', async () => {
    expect(reductionStyle(await gpuWith(style))).toBe(style);
  });
});
