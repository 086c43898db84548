/** The logit-mask kernel (grammar masks + logit bias) against its CPU reference, and feeding sampling. */
import { describe, expect, it } from 'vitest';
import { ShapeError } from '../../src/gpu/errors.ts';
import { applyLogitMaskRef, logitMask, maskRowWords, packLogitRows, type RowLogitEdits } from '../../src/kernels/logit-mask.ts';
import { argmaxRef, topK } from '../../src/kernels/sampling.ts';
import { download, downloadU32, mulberry32, randomF32, run, testGpu, upload } from './gpu.ts';

function randomRows(R: number, V: number, maxBias: number, seed: number): RowLogitEdits[] {
  const rand = mulberry32(seed);
  return Array.from({ length: R }, (_, r) => {
    let mask: Uint32Array | null = null;
    if (r % 3 !== 2) {
      mask = new Uint32Array(maskRowWords(V));
      const density = [0.02, 0.5, 0.97][r % 3];
      for (let t = 0; t < V; t++) if (rand() < density) mask[t >>> 5] |= 1 << (t & 31);
      if (r % 4 === 1) mask.fill(0); // nothing allowed: every logit -inf
    }
    const ids = new Set<number>();
    const nBias = Math.floor(rand() * (maxBias + 1));
    while (ids.size < Math.min(nBias, V)) ids.add(Math.floor(rand() * V));
    return { mask, bias: [...ids].map((id) => ({ id, value: Math.round((rand() * 200 - 100) * 4) / 4 })) };
  });
}

describe('logitMask', () => {
  for (const [R, V, maxBias] of [[1, 1, 1], [3, 31, 4], [5, 33, 8], [4, 512, 16], [7, 1001, 5], [2, 32000, 300]] as const) {
    it(`R=${R} V=${V} maxBias=${maxBias}: exactly the reference`, async () => {
      const ctx = await testGpu();
      const logits = randomF32(R * V, R * V + maxBias, 5);
      const rows = randomRows(R, V, maxBias, V);
      const W = maskRowWords(V);
      const masks = new Uint32Array(R * W);
      rows.forEach((row, r) => row.mask && masks.set(row.mask, r * W));
      const packed = packLogitRows(rows, maxBias);
      const lb = upload(ctx, logits);
      await run(ctx, logitMask(ctx, { logits: lb, mask: upload(ctx, masks), rows: upload(ctx, packed.rows), bias: upload(ctx, packed.bias), R, V, maxBias }));
      const want = applyLogitMaskRef(logits, R, V, rows);
      // Masking copies -inf, the bias is one f32 add: bit-exact.
      expect(Array.from(await download(ctx, lb, R * V))).toEqual(Array.from(want));
    });
  }

  it('feeds top-k: the sampled candidates are allowed tokens, +100 on one wins', async () => {
    const ctx = await testGpu();
    const R = 2, V = 700;
    const logits = randomF32(R * V, 11, 8);
    const allowed = [3, 77, 650];
    const mask = new Uint32Array(R * maskRowWords(V));
    for (const t of allowed) mask[t >>> 5] |= 1 << (t & 31);
    const rows: RowLogitEdits[] = [{ mask: mask.subarray(0, maskRowWords(V)), bias: [] }, { mask: null, bias: [{ id: 5, value: 100 }] }];
    const packed = packLogitRows(rows, 2);
    const lb = upload(ctx, logits);
    const values = upload(ctx, new Float32Array(R * 4)), ids = upload(ctx, new Uint32Array(R * 4));
    await run(ctx, logitMask(ctx, { logits: lb, mask: upload(ctx, mask), rows: upload(ctx, packed.rows), bias: upload(ctx, packed.bias), R, V, maxBias: 2 }), topK(ctx, { logits: lb, values, ids, R, V, k: 4 }));
    const got = await downloadU32(ctx, ids, R * 4);
    expect(allowed).toContain(got[0]);
    expect(new Set(Array.from(got.subarray(0, 3)))).toEqual(new Set(allowed));
    expect(got[0]).toBe(allowed[argmaxRef(Float32Array.from(allowed, (t) => logits[t]), 1, 3)[0]]);
    expect(got[4]).toBe(5);
  });

  it('rejects bad shapes before dispatch', async () => {
    const ctx = await testGpu();
    const lb = upload(ctx, new Float32Array(2 * 40)), mb = upload(ctx, new Uint32Array(4)), rb = upload(ctx, new Uint32Array(4)), bb = upload(ctx, new Uint32Array(2 * 3 * 2));
    expect(() => logitMask(ctx, { logits: lb, mask: mb, rows: rb, bias: bb, R: 2, V: 40, maxBias: 3 })).not.toThrow();
    expect(() => logitMask(ctx, { logits: lb, mask: mb, rows: rb, bias: bb, R: 2, V: 41, maxBias: 3 })).toThrow(ShapeError);
    expect(() => logitMask(ctx, { logits: lb, mask: mb, rows: rb, bias: bb, R: 2, V: 40, maxBias: 4 })).toThrow(/bias/);
    expect(() => logitMask(ctx, { logits: lb, mask: mb, rows: rb, bias: bb, R: 3, V: 20, maxBias: 2 })).toThrow(/mask|rows/);
    expect(() => logitMask(ctx, { logits: lb, mask: lb, rows: rb, bias: bb, R: 1, V: 40, maxBias: 3 })).toThrow(/alias/);
  });
});
