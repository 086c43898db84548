/** The engine's own kernels (penalties, logprobs) against their CPU references on odd shapes. */
import { describe, expect, it } from 'vitest';
import { ShapeError } from '../../src/gpu/errors.ts';
import { uploadStorage } from '../../src/gpu/buffers.ts';
import { logprobs, logprobsRef, logprobsRowWords, unpackLogprobs } from '../../src/kernels/logprobs.ts';
import { applyPenaltiesRef, packRowPenalties, penalties, type RowPenalty } from '../../src/kernels/penalties.ts';
import { topK } from '../../src/kernels/sampling.ts';
import { closeTo, download, downloadU32, mulberry32, randomF32, run, testGpu, upload } from './gpu.ts';

/** n distinct ids in [0, V) with random generated counts (some 0: prompt-only tokens). */
function seenRow(n: number, V: number, seed: number): { ids: number[]; counts: number[] } {
  const rnd = mulberry32(seed);
  const ids = new Set<number>();
  while (ids.size < n) ids.add(Math.floor(rnd() * V));
  return { ids: [...ids], counts: [...ids].map(() => Math.floor(rnd() * 4)) };
}

describe('penalties kernel', () => {
  it('R=3 V=301: matches applyPenaltiesRef (slots out of row order, a disabled row, 70 seen ids > one workgroup)', async () => {
    const ctx = await testGpu();
    const R = 3, V = 301, nSlots = 4, seenCap = 80;
    const logits = randomF32(R * V, 7, 6);
    const seen = [seenRow(70, V, 1), seenRow(5, V, 2), seenRow(0, V, 3), seenRow(33, V, 4)];
    const rows: RowPenalty[] = [
      { repetition: 1.3, presence: 0.5, frequency: 0.25, slot: 0, nSeen: 70 },
      { repetition: 1, presence: 0, frequency: 0, slot: 2, nSeen: 0 },
      { repetition: 0.8, presence: -0.5, frequency: 1.5, slot: 3, nSeen: 30 }, // only 30 of 33 entries apply
    ];
    const table = new Uint32Array(nSlots * seenCap * 2);
    seen.forEach((s, slot) => s.ids.forEach((id, j) => table.set([id, s.counts[j]], (slot * seenCap + j) * 2)));
    const lb = upload(ctx, logits);
    const rb = uploadStorage(ctx, new Uint8Array(packRowPenalties(rows)), 'rows');
    const sb = upload(ctx, table);
    await run(ctx, penalties(ctx, { logits: lb, rows: rb, seen: sb, R, V, nSlots, seenCap }));
    const want = applyPenaltiesRef(logits, R, V, rows, seen);
    // Division and multiplication on the GPU may be off by 2.5 ulp (WGSL): 1e-6 relative covers it.
    expect(closeTo(await download(ctx, lb, R * V), want, { atol: 1e-6, rtol: 1e-6 }, 'penalised logits')).toBeNull();
    expect(Array.from(want.subarray(V, 2 * V))).toEqual(Array.from(logits.subarray(V, 2 * V)));
  });

  it('refuses buffers that do not fit before dispatch', async () => {
    const ctx = await testGpu();
    const lb = upload(ctx, new Float32Array(10));
    const rb = upload(ctx, new Float32Array(5));
    const sb = upload(ctx, new Uint32Array(8));
    expect(() => penalties(ctx, { logits: lb, rows: rb, seen: sb, R: 2, V: 10, nSlots: 1, seenCap: 4 })).toThrow(ShapeError);
    expect(() => penalties(ctx, { logits: lb, rows: rb, seen: sb, R: 1, V: 10, nSlots: 2, seenCap: 4 })).toThrow('penalties: seen buffer of 32 bytes');
  });
});

describe('logprobs kernel', () => {
  for (const [R, V, k, L] of [[1, 7, 5, 5], [3, 1000, 16, 4], [2, 5000, 8, 0]] as const) {
    it(`R=${R} V=${V} k=${k} L=${L}: chosen and top log-softmax vs the reference`, async () => {
      const ctx = await testGpu();
      const logits = randomF32(R * V, R + V, 10);
      const lb = upload(ctx, logits);
      const vb = upload(ctx, new Float32Array(R * k)), ib = upload(ctx, new Uint32Array(R * k));
      const chosenIds = new Uint32Array(Array.from({ length: R }, (_, r) => (r * 37 + 3) % V));
      const cb = upload(ctx, chosenIds);
      const ob = upload(ctx, new Uint32Array(R * logprobsRowWords(L)));
      await run(ctx, topK(ctx, { logits: lb, values: vb, ids: ib, R, V, k }), logprobs(ctx, { logits: lb, candValues: vb, candIds: ib, chosen: cb, out: ob, R, V, k, L }));
      const got = unpackLogprobs(await downloadU32(ctx, ob, R * logprobsRowWords(L)), R, L);
      const want = logprobsRef(logits, R, V, chosenIds, L);
      // f32 logsumexp of up to 5000 terms in tree order vs f64: |error| well below 1e-4 for logits in [-10, 10].
      const tol = { atol: 1e-4, rtol: 1e-5 };
      for (let r = 0; r < R; r++) {
        expect(closeTo([got[r].chosen], [want[r].chosen], tol, `row ${r} chosen`)).toBeNull();
        expect(got[r].top.map((t) => t.id)).toEqual(want[r].top.map((t) => t.id));
        expect(closeTo(got[r].top.map((t) => t.logprob), want[r].top.map((t) => t.logprob), tol, `row ${r} top`)).toBeNull();
      }
    });
  }

  it('refuses L > k', async () => {
    const ctx = await testGpu();
    const b = upload(ctx, new Float32Array(64));
    const ids = upload(ctx, new Uint32Array(64));
    const out = upload(ctx, new Uint32Array(64));
    expect(() => logprobs(ctx, { logits: b, candValues: ids, candIds: ids, chosen: ids, out, R: 1, V: 8, k: 2, L: 3 })).toThrow('logprobs: L = 3');
  });
});
