import { describe, expect, it } from 'vitest';
import {
  MAX_HEAD_DIM,
  attentionDecodeRef,
  attentionDenseRef,
  attentionRef,
  decodeWorkgroupSize,
  prefillTiling,
} from '../../src/kernels/attention.ts';
import { kvWriteRef } from '../../src/kernels/kvcache.ts';
import { softmaxRef } from '../../src/kernels/softmax.ts';
import { cacheRowOffset, packBlockTables, kvCacheElements } from '../../src/kv/layout.ts';
import { closeTo, randomF32 } from '../util/random.ts';
import { makePagedFixture } from '../util/paged-kv.ts';

// Both references accumulate in f64 and round once to f32 (paged) or round the scores to f32
// first (dense: scores live in a Float32Array): they agree to a few f32 ulps.
const REF_TOL = { atol: 1e-6, rtol: 1e-5 };

const HEADS: [number, number, number][] = [[1, 1, 8], [8, 4, 8], [6, 2, 64], [4, 1, 16]];

describe('softmaxRef', () => {
  it('rows sum to 1, are shift invariant and follow the temperature', () => {
    const x = randomF32(3 * 7, 1, 10);
    const y = softmaxRef(x, 3, 7);
    for (let r = 0; r < 3; r++) expect(y.subarray(r * 7, r * 7 + 7).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
    const shifted = softmaxRef(x.map((v) => v + 1000), 3, 7);
    expect(closeTo(shifted, y, { atol: 1e-6, rtol: 1e-5 })).toBeNull();
    // temperature t is softmax(x / t)
    expect(closeTo(softmaxRef(x, 3, 7, 2), softmaxRef(x.map((v) => v / 2), 3, 7), { atol: 1e-7, rtol: 1e-6 })).toBeNull();
    expect(closeTo(softmaxRef(x, 3, 7, [1, 2, 0.5]).subarray(7, 14), softmaxRef(x.subarray(7, 14), 1, 7, 2), { atol: 1e-7, rtol: 1e-6 })).toBeNull();
  });
  it('handles huge logits and -Infinity', () => {
    const y = softmaxRef(new Float32Array([1e30, 1e30, -Infinity]), 1, 3);
    expect(Array.from(y)).toEqual([0.5, 0.5, 0]);
  });
});

describe('attention references', () => {
  for (const [nHeads, nKvHeads, headDim] of HEADS) {
    it(`paged reference equals the dense one on shuffled tables (${nHeads}/${nKvHeads}/${headDim})`, () => {
      const lens = [1, 5, 17, 40];
      const fx = makePagedFixture(nHeads * 100 + headDim, lens, nKvHeads, headDim);
      lens.forEach((len, s) => {
        // every query position of the sequence, as a prefill of the whole sequence would have
        const pos = Array.from({ length: len }, (_, i) => i);
        const q = randomF32(len * nHeads * headDim, 900 + s);
        const paged = attentionRef(q, fx.host, new Array(len).fill(s), pos, nHeads);
        const dense = attentionDenseRef(q, fx.k[s], fx.v[s], pos, len, nHeads, nKvHeads, headDim);
        expect(closeTo(paged, dense, REF_TOL, `seq ${s}`)).toBeNull();
      });
    });
  }

  it('decode is the prefill row of the last position', () => {
    const [nHeads, nKvHeads, headDim] = [4, 2, 8];
    const lens = [3, 16, 33];
    const fx = makePagedFixture(7, lens, nKvHeads, headDim);
    const q = randomF32(lens.length * nHeads * headDim, 8);
    const decode = attentionDecodeRef(q, fx.host, lens, nHeads);
    const prefill = attentionRef(q, fx.host, [0, 1, 2], lens.map((l) => l - 1), nHeads);
    expect(Array.from(decode)).toEqual(Array.from(prefill));
  });

  it('one position returns its V row; equal keys give the mean of V', () => {
    const [nHeads, nKvHeads, headDim] = [2, 1, 4];
    const fx = makePagedFixture(3, [1], nKvHeads, headDim);
    const q = randomF32(nHeads * headDim, 4);
    const out = attentionDecodeRef(q, fx.host, [1], nHeads);
    for (let h = 0; h < nHeads; h++) expect(closeTo(out.subarray(h * headDim, (h + 1) * headDim), fx.v[0], { atol: 1e-7, rtol: 1e-6 })).toBeNull();

    const len = 20;
    const same = makePagedFixture(5, [len], nKvHeads, headDim);
    const k = new Float32Array(len * headDim).fill(0.3);
    kvWriteRef(same.host, k, same.v[0], new Array(len).fill(0), Array.from({ length: len }, (_, i) => i), len);
    const mean = new Float32Array(headDim);
    for (let j = 0; j < len; j++) for (let d = 0; d < headDim; d++) mean[d] += same.v[0][j * headDim + d] / len;
    const avg = attentionDecodeRef(randomF32(nHeads * headDim, 6), same.host, [len], nHeads);
    expect(closeTo(avg.subarray(0, headDim), mean, { atol: 1e-6, rtol: 1e-5 })).toBeNull();
  });

  it('GQA: query heads of one group read the same KV head, other groups do not', () => {
    const [nHeads, nKvHeads, headDim] = [6, 2, 8];
    const fx = makePagedFixture(11, [9], nKvHeads, headDim);
    const qHead = randomF32(headDim, 12);
    const q = new Float32Array(nHeads * headDim);
    for (let h = 0; h < nHeads; h++) q.set(qHead, h * headDim);
    const out = attentionDecodeRef(q, fx.host, [9], nHeads);
    const row = (h: number) => Array.from(out.subarray(h * headDim, (h + 1) * headDim));
    expect(row(1)).toEqual(row(0));
    expect(row(2)).toEqual(row(0));
    expect(row(4)).toEqual(row(3));
    expect(row(3)).not.toEqual(row(0));
  });

  it('kvWriteRef puts each row where the layout says', () => {
    const nKvHeads = 2, headDim = 3;
    const p = packBlockTables([[2], [0, 1]]);
    const host = { kCache: new Float32Array(kvCacheElements(3, nKvHeads, headDim)), vCache: new Float32Array(kvCacheElements(3, nKvHeads, headDim)), blockTable: p.data, maxBlocksPerSeq: p.maxBlocksPerSeq, nKvHeads, headDim };
    const k = randomF32(2 * nKvHeads * headDim, 1), v = randomF32(2 * nKvHeads * headDim, 2);
    kvWriteRef(host, k, v, [1, 0], [20, 7], 2);
    for (let h = 0; h < nKvHeads; h++) {
      const a = cacheRowOffset(host, 1, 20, h), b = cacheRowOffset(host, 0, 7, h);
      expect(Array.from(host.kCache.subarray(a, a + headDim))).toEqual(Array.from(k.subarray(h * headDim, (h + 1) * headDim)));
      expect(Array.from(host.vCache.subarray(b, b + headDim))).toEqual(Array.from(v.subarray((nKvHeads + h) * headDim, (nKvHeads + h + 1) * headDim)));
    }
    expect(() => kvWriteRef(host, k, v, [0], [16], 1)).toThrow(/no block for position 16/);
  });

  it('a NaN-filled unowned slot never leaks into the reference', () => {
    const fx = makePagedFixture(13, [5], 1, 8, [16]);
    const out = attentionDecodeRef(randomF32(8, 14), fx.host, [5], 1);
    expect(out.every(Number.isFinite)).toBe(true);
  });
});

describe('attention tiling', () => {
  it('fits 16 KiB of workgroup memory for every head size up to the maximum', () => {
    for (let hd = 1; hd <= MAX_HEAD_DIM; hd++) {
      const t = prefillTiling(hd);
      expect(t.sharedBytes, `hd ${hd}`).toBeLessThanOrEqual(16384);
      expect(t.queryTile).toBeLessThanOrEqual(t.wg); // one invocation per query row in the softmax step
      expect(t.queryTile * hd).toBeLessThanOrEqual(1024);
      expect(t.accPerThread * t.wg).toBeGreaterThanOrEqual(t.queryTile * hd);
      const wg = decodeWorkgroupSize(hd);
      expect(Math.log2(wg) % 1).toBe(0); // the tree reduction needs a power of two
      expect(wg).toBeGreaterThanOrEqual(32);
      expect(wg).toBeLessThanOrEqual(128);
    }
    expect(prefillTiling(64)).toMatchObject({ queryTile: 16, keyTile: 16 });
    expect(prefillTiling(128)).toMatchObject({ queryTile: 8, keyTile: 8 });
  });
});
