import { describe, expect, it } from 'vitest';
import {
  MAX_HEAD_DIM,
  UNBOUNDED_WINDOW,
  attentionDecodeRef,
  attentionDenseRef,
  attentionRef,
  decodeWorkgroupSize,
  keyVisible,
  prefillTiling,
} from '../../src/kernels/attention.ts';
import { kvWriteRef } from '../../src/kernels/kvcache.ts';
import { softmaxRef } from '../../src/kernels/softmax.ts';
import { cacheRowOffset, packBlockTables, kvCacheElements, NO_BLOCK } from '../../src/kv/layout.ts';
import { ReferenceModel } from '../../src/model/reference.ts';
import { closeTo, randomF32 } from '../util/random.ts';
import { makeFixture } from '../util/fixtures.ts';
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

describe('attention key windows (sinks + recent window) in the references', () => {
  const U = UNBOUNDED_WINDOW;

  it('keyVisible: causal, then the first `sinks` positions and the last `window` up to the query', () => {
    // query at 9, sinks 2, window 3: keys 0, 1 and 7, 8, 9
    const seen = Array.from({ length: 12 }, (_, p) => p).filter((p) => keyVisible(p, 9, 2, 3));
    expect(seen).toEqual([0, 1, 7, 8, 9]);
    expect(Array.from({ length: 12 }, (_, p) => p).filter((p) => keyVisible(p, 9))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(Array.from({ length: 12 }, (_, p) => p).filter((p) => keyVisible(p, 9, 0, 1))).toEqual([9]);
    expect(Array.from({ length: 12 }, (_, p) => p).filter((p) => keyVisible(p, 3, 5, 1))).toEqual([0, 1, 2, 3]); // sinks past the query: causal still holds
    expect(keyVisible(0, 0xfffffffe, 0, U)).toBe(true); // the sentinel never wraps
  });

  it('a hand-computed case: head size 1, scores ln(w) so the weights are w', () => {
    // 6 positions; query at 5 with sinks 1, window 2 sees positions 0, 4, 5.
    const fx = makePagedFixture(1, [6], 1, 1);
    const kRow = [0, 10, 10, 10, Math.log(2), Math.log(4)]; // scores q·k*scale with q = 1, scale 1
    const vRow = [10, -99, -99, -99, 20, 30];
    kvWriteRef(fx.host, Float32Array.from(kRow), Float32Array.from(vRow), new Array(6).fill(0), [0, 1, 2, 3, 4, 5], 6);
    const windows = { sinks: [1], window: [2] };
    const out = attentionDecodeRef(Float32Array.of(1), fx.host, [6], 1, 1, windows);
    // (1·10 + 2·20 + 4·30) / (1 + 2 + 4) = 170 / 7 (k rounded to f32: exp(ln 2) within 1e-7)
    expect(out[0]).toBeCloseTo(170 / 7, 5);
    // window 1, no sinks: only itself
    expect(attentionDecodeRef(Float32Array.of(1), fx.host, [6], 1, 1, { sinks: [0], window: [1] })[0]).toBe(30);
    // query at 2 (prefill row) with the same window: sees 0 (sink), 1, 2 -> weights e^0, e^10, e^10
    const at2 = attentionRef(Float32Array.of(1), fx.host, [0], [2], 1, 1, windows);
    expect(at2[0]).toBeCloseTo((10 + 2 * Math.exp(10) * -99) / (1 + 2 * Math.exp(10)), 4);
    // the dense reference agrees
    const dense = attentionDenseRef(Float32Array.of(1), Float32Array.from(kRow), Float32Array.from(vRow), [5], 6, 1, 1, 1, 1, { sinks: 1, window: 2 });
    expect(dense[0]).toBeCloseTo(170 / 7, 5);
  });

  it('an unbounded window, or one at least as long as the sequence, is exactly the causal reference', () => {
    const [nHeads, nKvHeads, headDim] = [6, 2, 8];
    const lens = [1, 5, 17, 40];
    const fx = makePagedFixture(21, lens, nKvHeads, headDim);
    const seqs = lens.flatMap((len, s) => new Array<number>(len).fill(s));
    const pos = lens.flatMap((len) => Array.from({ length: len }, (_, i) => i));
    const q = randomF32(seqs.length * nHeads * headDim, 22);
    const plain = Array.from(attentionRef(q, fx.host, seqs, pos, nHeads));
    expect(Array.from(attentionRef(q, fx.host, seqs, pos, nHeads, undefined, { sinks: [0, 0, 0, 0], window: [U, U, U, U] }))).toEqual(plain);
    expect(Array.from(attentionRef(q, fx.host, seqs, pos, nHeads, undefined, { sinks: [3, 0, 100, 7], window: lens }))).toEqual(plain);
    const dq = randomF32(40 * nHeads * headDim, 23), p40 = Array.from({ length: 40 }, (_, i) => i);
    const densePlain = Array.from(attentionDenseRef(dq, fx.k[3], fx.v[3], p40, 40, nHeads, nKvHeads, headDim));
    expect(Array.from(attentionDenseRef(dq, fx.k[3], fx.v[3], p40, 40, nHeads, nKvHeads, headDim, undefined, { sinks: 0, window: 40 }))).toEqual(densePlain);
    // and a real window changes the result
    expect(closeTo(attentionRef(q, fx.host, seqs, pos, nHeads, undefined, { sinks: [0, 0, 0, 0], window: [4, 4, 4, 4] }), plain, { atol: 1e-3, rtol: 0 })).not.toBeNull();
  });

  it('paged and dense references agree under mixed windows and sinks per sequence', () => {
    const [nHeads, nKvHeads, headDim] = [4, 2, 8];
    const lens = [3, 17, 40, 33];
    const windows = { sinks: [0, 4, 2, 1], window: [1, 5, 16, U] };
    const fx = makePagedFixture(31, lens, nKvHeads, headDim);
    lens.forEach((len, s) => {
      const pos = Array.from({ length: len }, (_, i) => i);
      const q = randomF32(len * nHeads * headDim, 40 + s);
      const paged = attentionRef(q, fx.host, new Array(len).fill(s), pos, nHeads, undefined, windows);
      const dense = attentionDenseRef(q, fx.k[s], fx.v[s], pos, len, nHeads, nKvHeads, headDim, undefined, { sinks: windows.sinks[s], window: windows.window[s] });
      expect(closeTo(paged, dense, REF_TOL, `seq ${s}`)).toBeNull();
    });
  });

  it('never reads a masked position: NO_BLOCK there is fine, a visible one without a block throws', () => {
    const fx = makePagedFixture(41, [70], 1, 8); // 5 blocks
    const q = randomF32(8, 42);
    const want = attentionDecodeRef(q, fx.host, [70], 1, undefined, { sinks: [3], window: [10] });
    // query at 69 sees 0..2 and 60..69: blocks 1, 2 (positions 16..47) are fully masked
    const table = fx.host.blockTable.slice();
    table[1] = NO_BLOCK;
    table[2] = NO_BLOCK;
    const holed = { ...fx.host, blockTable: table };
    expect(Array.from(attentionDecodeRef(q, holed, [70], 1, undefined, { sinks: [3], window: [10] }))).toEqual(Array.from(want));
    expect(() => attentionDecodeRef(q, holed, [70], 1, undefined, { sinks: [3], window: [40] })).toThrow(/no block for position 30 /) // window 40 reaches back to 30, in block 1;
  });

  it('rejects a window of 0 and non-integer sinks', () => {
    const fx = makePagedFixture(51, [4], 1, 4);
    expect(() => attentionDecodeRef(randomF32(4, 1), fx.host, [4], 1, undefined, { sinks: [0], window: [0] })).toThrow(/window 0 .*>= 1/);
    expect(() => attentionDecodeRef(randomF32(4, 1), fx.host, [4], 1, undefined, { sinks: [1.5], window: [2] })).toThrow(/sinks 1.5/);
    expect(() => attentionDenseRef(randomF32(4, 1), fx.k[0], fx.v[0], [3], 4, 1, 1, 4, undefined, { sinks: 0, window: 0 })).toThrow(/window 0/);
  });
});

describe('ReferenceModel with config.slidingWindow', () => {
  const tokenizer = { tokenizerJson: '{}', tokenizerConfig: '{}' }; // the files are not read here
  const tokens = [1, 57, 300, 12, 199, 88, 401, 7, 260, 31];

  function model(window: number | null) {
    const fx = makeFixture({ arch: 'mistral', dtype: 'F32', seed: 5 }, tokenizer);
    return new ReferenceModel({ ...fx.config, slidingWindow: window }, fx.host);
  }

  it('a window as long as the sequence is full attention; a shorter one is not', () => {
    const full = model(null).forward(tokens, model(null).newCache(16));
    const long = model(tokens.length);
    expect(Array.from(long.forward(tokens, long.newCache(16)))).toEqual(Array.from(full));
    const short = model(3);
    const got = short.forward(tokens, short.newCache(16));
    const V = 512;
    // rows 0..2 see every earlier position either way; later rows differ
    expect(Array.from(got.subarray(0, 3 * V))).toEqual(Array.from(full.subarray(0, 3 * V)));
    expect(closeTo(got.subarray(9 * V), full.subarray(9 * V), { atol: 1e-4, rtol: 0 })).not.toBeNull();
  });

  it('the receptive field is layers × (window - 1): a token that far back cannot change the logits', () => {
    // 2 layers, window 3: position q depends on tokens q-4..q only
    const m = model(3);
    const logitsAt = (ts: number[]) => m.forward(ts, m.newCache(16)).subarray((ts.length - 1) * 512);
    const changedFirst = [9, ...tokens.slice(1, 6)]; // length 6: last position 5, token 0 is 5 back
    expect(Array.from(logitsAt(changedFirst))).toEqual(Array.from(logitsAt(tokens.slice(0, 6))));
    const changedSecond = [tokens[0], 9, ...tokens.slice(2, 6)]; // token 1 is 4 back: it matters
    expect(closeTo(logitsAt(changedSecond), logitsAt(tokens.slice(0, 6)), { atol: 1e-5, rtol: 0 })).not.toBeNull();
  });

  it('prefill then decode equals one forward, under the window and under explicit sinks', () => {
    for (const window of [undefined, { sinks: 2, window: 3 }]) {
      const m = model(4);
      const all = m.forward(tokens, m.newCache(16), window);
      const cache = m.newCache(16);
      m.forward(tokens.slice(0, 6), cache, window);
      for (let i = 6; i < tokens.length; i++) {
        const row = m.forward([tokens[i]], cache, window);
        expect(Array.from(row)).toEqual(Array.from(all.subarray(i * 512, (i + 1) * 512)));
      }
    }
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
