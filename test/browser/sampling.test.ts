import { describe, expect, it } from 'vitest';
import { argmax, argmaxRef, packSamplingSettings, sampleCandidates, sampleRowRef, TOPK_CHUNK, topK, topKRef, type SamplingSettings } from '../../src/kernels/sampling.ts';
import { uploadStorage } from '../../src/gpu/buffers.ts';
import { ShapeError } from '../../src/gpu/errors.ts';
import { download, downloadU32, mulberry32, randomF32, run, testGpu, upload } from './gpu.ts';

/** Random logits on a coarse grid (steps of 1/8 in [-8, 8)), so rows hold many ties. */
function tiedLogits(n: number, seed: number): Float32Array {
  return randomF32(n, seed, 8).map((v) => Math.round(v * 8) / 8);
}

describe('argmax and top-k', () => {
  // V = 49152 spans 12 chunks of TOPK_CHUNK: the merge pass runs.
  for (const [R, V] of [[1, 1], [3, 7], [2, 512], [4, 1000], [3, 49152]] as const) {
    for (const k of [...new Set([1, Math.min(5, V), Math.min(64, V)])]) {
      it(`R=${R} V=${V} k=${k}: ids and values exactly as the reference`, async () => {
        const ctx = await testGpu();
        const logits = tiedLogits(R * V, R * V + k);
        const lb = upload(ctx, logits);
        const vb = upload(ctx, new Float32Array(R * k)), ib = upload(ctx, new Uint32Array(R * k));
        const dispatches = topK(ctx, { logits: lb, values: vb, ids: ib, R, V, k });
        expect(dispatches.length).toBe(V > TOPK_CHUNK ? 2 : 1);
        await run(ctx, dispatches);
        const want = topKRef(logits, R, V, k);
        // Selection copies values and compares exactly: no tolerance.
        expect(Array.from(await downloadU32(ctx, ib, R * k))).toEqual(Array.from(want.ids));
        expect(Array.from(await download(ctx, vb, R * k))).toEqual(Array.from(want.values));
      });
    }
    it(`R=${R} V=${V}: argmax (ties to the lowest index)`, async () => {
      const ctx = await testGpu();
      const logits = tiedLogits(R * V, R + V);
      const ids = upload(ctx, new Uint32Array(R));
      await run(ctx, argmax(ctx, { logits: upload(ctx, logits), ids, R, V }));
      expect(Array.from(await downloadU32(ctx, ids, R))).toEqual(Array.from(argmaxRef(logits, R, V)));
    });
  }
  it('counts NaN as -inf and keeps real -inf ahead of nothing', async () => {
    const ctx = await testGpu();
    const logits = Float32Array.from([NaN, -Infinity, 2, NaN, 2, -1, /* row 2 */ NaN, NaN, NaN, NaN, NaN, NaN]);
    const vb = upload(ctx, new Float32Array(12)), ib = upload(ctx, new Uint32Array(12));
    await run(ctx, topK(ctx, { logits: upload(ctx, logits), values: vb, ids: ib, R: 2, V: 6, k: 6 }));
    const want = topKRef(logits, 2, 6, 6);
    expect(Array.from(want.ids)).toEqual([2, 4, 5, 0, 1, 3, 0, 1, 2, 3, 4, 5]);
    expect(Array.from(await downloadU32(ctx, ib, 12))).toEqual(Array.from(want.ids));
    expect(Array.from(await download(ctx, vb, 12))).toEqual(Array.from(want.values));
  });
  it('rejects bad shapes before dispatch', async () => {
    const ctx = await testGpu();
    const lb = upload(ctx, new Float32Array(2 * 10)), vb = upload(ctx, new Float32Array(8)), ib = upload(ctx, new Uint32Array(8));
    expect(() => topK(ctx, { logits: lb, values: vb, ids: ib, R: 2, V: 10, k: 4 })).not.toThrow();
    expect(() => topK(ctx, { logits: lb, values: vb, ids: ib, R: 2, V: 11, k: 4 })).toThrow(ShapeError);
    expect(() => topK(ctx, { logits: lb, values: vb, ids: ib, R: 2, V: 11, k: 4 })).toThrow(/logits.*\[2, 11\]/);
    expect(() => topK(ctx, { logits: lb, values: vb, ids: ib, R: 2, V: 10, k: 5 })).toThrow(/values.*\[2, 5\]/);
    expect(() => topK(ctx, { logits: lb, values: vb, ids: ib, R: 1, V: 3, k: 4 })).toThrow(/k = 4.*<= V \(3\)/);
    expect(() => topK(ctx, { logits: lb, values: vb, ids: vb, R: 2, V: 10, k: 4 })).toThrow(/distinct/);
    expect(() => argmax(ctx, { logits: lb, ids: ib, R: 3, V: 10 })).toThrow(/logits.*\[3, 10\]/);
  });
});

describe('sampling on candidates', () => {
  const rows: SamplingSettings[] = [
    { temperature: 0, topP: 1, minP: 0, topK: 0 },
    { temperature: 0.7, topP: 0.9, minP: 0, topK: 0 },
    { temperature: 1, topP: 1, minP: 0.05, topK: 0 },
    { temperature: 1.3, topP: 0.95, minP: 0.02, topK: 10 },
    { temperature: 1, topP: 1, minP: 0, topK: 0 },
    { temperature: 3, topP: 0.5, minP: 0, topK: 0 },
    { temperature: 0.2, topP: 1, minP: 0, topK: 3 },
  ];

  /**
   * The GPU computes softmax in f32 with its own exp, the reference in f64. They can only disagree
   * when u, top_p or min_p sits within ~1e-5 of a decision boundary: accept the GPU's id if the
   * reference picks it with one of them nudged by 1e-5, and count those cases (few expected).
   */
  function acceptable(values: Float32Array, ids: Uint32Array, s: SamplingSettings, u: number): Set<number> {
    const set = new Set<number>();
    for (const d of [-1e-5, 0, 1e-5]) {
      set.add(sampleRowRef(values, ids, s, Math.min(Math.max(u + d, 0), 0.9999999)));
      set.add(sampleRowRef(values, ids, { ...s, topP: Math.min(Math.max(s.topP + d, 0), 1) }, u));
      set.add(sampleRowRef(values, ids, { ...s, minP: Math.max(s.minP + d, 0) }, u));
    }
    return set;
  }

  for (const [V, k] of [[1, 1], [7, 7], [512, 64], [1000, 64], [49152, 64]] as const) {
    it(`V=${V} k=${k}: GPU top-k + sampling agree with the reference`, async () => {
      const ctx = await testGpu();
      const R = rows.length;
      const logits = randomF32(R * V, V + 3, 6);
      const rand = mulberry32(V);
      const random = Float32Array.from({ length: R }, () => rand());
      const lb = upload(ctx, logits), vb = upload(ctx, new Float32Array(R * k)), ib = upload(ctx, new Uint32Array(R * k));
      const settings = uploadStorage(ctx, new Uint8Array(packSamplingSettings(rows)), 'settings');
      const out = upload(ctx, new Uint32Array(R));
      await run(ctx, topK(ctx, { logits: lb, values: vb, ids: ib, R, V, k }), sampleCandidates(ctx, { values: vb, ids: ib, settings, random: upload(ctx, random), out, R, k }));
      const cand = topKRef(logits, R, V, k);
      const got = await downloadU32(ctx, out, R);
      let nudged = 0;
      for (let r = 0; r < R; r++) {
        const v = cand.values.subarray(r * k, (r + 1) * k), ids = cand.ids.subarray(r * k, (r + 1) * k);
        const exact = sampleRowRef(v, ids, rows[r], random[r]);
        if (got[r] === exact) continue;
        nudged++;
        expect(acceptable(v, ids, rows[r], random[r]), `row ${r}: GPU ${got[r]}, reference ${exact}`).toContain(got[r]);
      }
      expect(nudged).toBeLessThanOrEqual(1);
      // Greedy row = argmax of its logits.
      expect(got[0]).toBe(argmaxRef(logits.subarray(0, V), 1, V)[0]);
    });
  }
  it('sweeps u over one row: the GPU inverts the same CDF', async () => {
    const ctx = await testGpu();
    const R = 64, k = 8;
    // Every row holds the same candidates; row r uses u = (r + 0.5) / 64.
    const vals = Float32Array.from({ length: R * k }, (_, i) => -0.5 * (i % k));
    const ids = Uint32Array.from({ length: R * k }, (_, i) => 100 + (i % k));
    const s: SamplingSettings = { temperature: 1, topP: 0.9, minP: 0.1, topK: 0 };
    const random = Float32Array.from({ length: R }, (_, r) => (r + 0.5) / R);
    const out = upload(ctx, new Uint32Array(R));
    const settings = uploadStorage(ctx, new Uint8Array(packSamplingSettings(new Array(R).fill(s))), 'settings');
    await run(ctx, sampleCandidates(ctx, { values: upload(ctx, vals), ids: upload(ctx, ids), settings, random: upload(ctx, random), out, R, k }));
    const got = await downloadU32(ctx, out, R);
    const want = Array.from({ length: R }, (_, r) => sampleRowRef(vals.subarray(0, k), ids.subarray(0, k), s, random[r]));
    expect(Array.from(got)).toEqual(want);
    expect(new Set(want).size).toBeGreaterThan(3); // several candidates are actually reached
  });
  it('rejects bad shapes before dispatch', async () => {
    const ctx = await testGpu();
    const vb = upload(ctx, new Float32Array(8)), ib = upload(ctx, new Uint32Array(8)), out = upload(ctx, new Uint32Array(4));
    const settings = uploadStorage(ctx, new Uint8Array(packSamplingSettings([rows[0], rows[1]])), 'settings');
    const random = upload(ctx, new Float32Array(4));
    expect(() => sampleCandidates(ctx, { values: vb, ids: ib, settings, random, out, R: 2, k: 4 })).not.toThrow();
    expect(() => sampleCandidates(ctx, { values: vb, ids: ib, settings, random, out, R: 2, k: 5 })).toThrow(ShapeError);
    expect(() => sampleCandidates(ctx, { values: vb, ids: ib, settings, random, out, R: 2, k: 5 })).toThrow(/values.*\[2, 5\]/);
    expect(() => sampleCandidates(ctx, { values: vb, ids: ib, settings, random, out, R: 3, k: 2 })).toThrow(/settings.*\[3, 4\]/);
    expect(() => sampleCandidates(ctx, { values: vb, ids: ib, settings, random, out: ib, R: 2, k: 4 })).toThrow(/alias/);
  });
});
