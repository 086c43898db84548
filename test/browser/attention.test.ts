import { afterEach, describe, expect, it } from 'vitest';
import { UNBOUNDED_WINDOW, attentionDecode, attentionDecodeRef, attentionPrefill, attentionRef, type KeyWindows } from '../../src/kernels/attention.ts';
import { kvWrite, kvWriteRef, type PagedKvGpu } from '../../src/kernels/kvcache.ts';
import { setReductionStyle, type ReductionStyle } from '../../src/kernels/plan.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import { ShapeError } from '../../src/gpu/errors.ts';
import { NO_BLOCK, type PagedKvHost } from '../../src/kv/layout.ts';
import { makePagedFixture, type PagedFixture } from '../util/paged-kv.ts';
import { closeTo, download, randomF32, run, testGpu, upload } from './gpu.ts';

// f32 throughout. The GPU sums q·k in a fixed serial order but rescales the online softmax per
// tile and uses its own exp(), while the reference works in f64 with one global max; outputs are
// convex combinations of V rows in [-1, 1], so errors stay ~1e-6. 1e-5 abs + 1e-4 rel is ~10x.
const F32_TOL = { atol: 1e-5, rtol: 1e-4 };
const FALLBACK = { disableFeatures: { subgroups: true } };
const HEADS: [number, number, number][] = [[1, 1, 8], [8, 4, 8], [6, 2, 64], [4, 1, 128]];

function uploadCache(ctx: GpuContext, fx: PagedFixture): PagedKvGpu {
  return {
    kCache: upload(ctx, fx.host.kCache, 'kCache'),
    vCache: upload(ctx, fx.host.vCache, 'vCache'),
    blockTable: upload(ctx, fx.host.blockTable, 'blockTable'),
    nBlocks: fx.nBlocks,
    nKvHeads: fx.host.nKvHeads,
    headDim: fx.host.headDim,
    nSeqs: fx.nSeqs,
    maxBlocksPerSeq: fx.host.maxBlocksPerSeq,
  };
}

function cloneHost(h: PagedKvHost): PagedKvHost {
  return { ...h, kCache: h.kCache.slice(), vCache: h.vCache.slice() };
}

/** The file's device with one reduction style forced; the test's end restores the device's own. */
let forced: GpuContext[] = [];
afterEach(() => {
  for (const ctx of forced) setReductionStyle(ctx, undefined);
  forced = [];
});
async function styled(style: ReductionStyle, options = {}): Promise<GpuContext> {
  const ctx = await testGpu(options);
  setReductionStyle(ctx, style);
  forced.push(ctx);
  return ctx;
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);
const U = UNBOUNDED_WINDOW;

/** keyWindow [nSeqs, 2] u32: (sinks, window) per sequence. */
function windowBuffer(ctx: GpuContext, w: KeyWindows): GPUBuffer {
  return upload(ctx, Uint32Array.from(Array.from(w.window).flatMap((win, s) => [w.sinks[s], win])), 'keyWindow');
}

/** Table entries of logical blocks [from, to) of sequence s, whose positions no query sees, become `id`. */
function holeBlocks(fx: PagedFixture, s: number, from: number, to: number, id: number): void {
  for (let b = from; b < to; b++) fx.host.blockTable[s * fx.host.maxBlocksPerSeq + b] = id;
}

/** A block no table owns: every slot NaN, so a kernel that reads it cannot pass. */
function poisonBlock(fx: PagedFixture): number {
  const owned = new Set(fx.tables.flat());
  return range(0, fx.nBlocks).find((b) => !owned.has(b))!;
}

describe('kv write', () => {
  it('writes tokens of two sequences through shuffled block tables', async () => {
    const ctx = await testGpu();
    const [nKvHeads, headDim] = [2, 8];
    // seq 0 has 20 tokens and room for 40, seq 1 has 0 and room for 17
    const fx = makePagedFixture(21, [20, 0], nKvHeads, headDim, [40, 17]);
    fx.host.kCache.forEach((x, i) => Number.isNaN(x) && (fx.host.kCache[i] = -777)); // NaN != NaN in comparisons
    fx.host.vCache.forEach((x, i) => Number.isNaN(x) && (fx.host.vCache[i] = -777));
    const kv = uploadCache(ctx, fx);
    const tokenSeq = [0, 0, 1, 0, 1, 1], tokenPos = [20, 21, 0, 35, 16, 1];
    const T = tokenSeq.length;
    const k = randomF32(T * nKvHeads * headDim, 22), v = randomF32(T * nKvHeads * headDim, 23);
    await run(ctx, kvWrite(ctx, { ...kv, k: upload(ctx, k), v: upload(ctx, v), tokenSeq: upload(ctx, new Uint32Array(tokenSeq)), tokenPos: upload(ctx, new Uint32Array(tokenPos)), T }));
    kvWriteRef(fx.host, k, v, tokenSeq, tokenPos, T);
    const n = fx.host.kCache.length;
    // a copy: exact
    expect(closeTo(await download(ctx, kv.kCache, n), fx.host.kCache, { atol: 0, rtol: 0 }, 'kCache')).toBeNull();
    expect(closeTo(await download(ctx, kv.vCache, n), fx.host.vCache, { atol: 0, rtol: 0 }, 'vCache')).toBeNull();
  });

  it('rejects bad shapes before dispatch', async () => {
    const ctx = await testGpu();
    const fx = makePagedFixture(1, [3], 2, 8);
    const kv = uploadCache(ctx, fx);
    const small = upload(ctx, new Float32Array(2 * 2 * 8));
    const ids = upload(ctx, new Uint32Array(3));
    const args = { ...kv, k: small, v: small, tokenSeq: ids, tokenPos: ids, T: 3 };
    expect(() => kvWrite(ctx, args)).toThrow(ShapeError);
    expect(() => kvWrite(ctx, args)).toThrow(/kvWrite: k .*\[3, 2, 8\]/);
    expect(() => kvWrite(ctx, { ...args, T: 0 })).toThrow(/T = 0/);
    expect(() => kvWrite(ctx, { ...args, nBlocks: fx.nBlocks + 1 })).toThrow(/kCache .*\[\d+, 16, 2, 8\]/);
  });
});

describe('attention decode', () => {
  for (const [label, options] of [['subgroups if available', {}], ['workgroup-memory fallback', FALLBACK]] as const) {
    for (const [nHeads, nKvHeads, headDim] of HEADS) {
      it(`${label}: ${nHeads}/${nKvHeads} heads, headDim ${headDim}, lengths 1..100 in one dispatch`, async () => {
        const ctx = await testGpu(options);
        const lens = [1, 5, 16, 17, 40, 100];
        const fx = makePagedFixture(nHeads * 1000 + headDim, lens, nKvHeads, headDim);
        const kv = uploadCache(ctx, fx);
        const q = randomF32(lens.length * nHeads * headDim, 77);
        const out = upload(ctx, new Float32Array(q.length));
        await run(ctx, attentionDecode(ctx, { ...kv, q: upload(ctx, q), seqLens: upload(ctx, new Uint32Array(lens)), out, nHeads }));
        expect(closeTo(await download(ctx, out, q.length), attentionDecodeRef(q, fx.host, lens, nHeads), F32_TOL)).toBeNull();
      });
    }
  }

  for (const [nHeads, nKvHeads, headDim] of [[3, 1, 80], [2, 2, 256]]) {
    it(`head size ${headDim} (${headDim === 256 ? 'the maximum: 2 dims per invocation' : 'not a power of two'})`, async () => {
      const ctx = await testGpu();
      const lens = [1, 17, 130];
      const fx = makePagedFixture(headDim, lens, nKvHeads, headDim);
      const kv = uploadCache(ctx, fx);
      const q = randomF32(lens.length * nHeads * headDim, 81);
      const out = upload(ctx, new Float32Array(q.length));
      await run(ctx, attentionDecode(ctx, { ...kv, q: upload(ctx, q), seqLens: upload(ctx, new Uint32Array(lens)), out, nHeads }));
      expect(closeTo(await download(ctx, out, q.length), attentionDecodeRef(q, fx.host, lens, nHeads), F32_TOL)).toBeNull();
    });
  }

  for (const [label, options] of [['subgroups if available', {}], ['workgroup-memory fallback', FALLBACK]] as const) {
    it(`${label}: large scores (peaked softmax) stay finite and exact over several tiles`, async () => {
      // Scores of several hundred: exp() overflows f32 unless the running max is right, so this
      // catches a wrong tile-max reduction that small scores would hide (softmax is shift-invariant).
      const ctx = await testGpu(options);
      const [nHeads, nKvHeads, headDim] = [2, 1, 64];
      const lens = [300, 129];
      const fx = makePagedFixture(31, lens, nKvHeads, headDim);
      const kv = uploadCache(ctx, fx);
      const q = randomF32(lens.length * nHeads * headDim, 32, 60);
      const out = upload(ctx, new Float32Array(q.length));
      await run(ctx, attentionDecode(ctx, { ...kv, q: upload(ctx, q), seqLens: upload(ctx, new Uint32Array(lens)), out, nHeads }));
      // scores ~1e2 carry f32 rounding of ~1e-5 into exp(): a little looser than F32_TOL
      expect(closeTo(await download(ctx, out, q.length), attentionDecodeRef(q, fx.host, lens, nHeads), { atol: 1e-4, rtol: 1e-4 })).toBeNull();
    });
  }

  it('reuses one dispatch as lengths change (lengths live in storage), with a custom scale', async () => {
    const ctx = await testGpu();
    const [nHeads, nKvHeads, headDim] = [4, 2, 8];
    const lens = [33, 7];
    const fx = makePagedFixture(5, lens, nKvHeads, headDim);
    const kv = uploadCache(ctx, fx);
    const q = randomF32(2 * nHeads * headDim, 6);
    const out = upload(ctx, new Float32Array(q.length));
    const lensBuf = upload(ctx, new Uint32Array(lens));
    const d = attentionDecode(ctx, { ...kv, q: upload(ctx, q), seqLens: lensBuf, out, nHeads, scale: 0.9 });
    await run(ctx, d);
    expect(closeTo(await download(ctx, out, q.length), attentionDecodeRef(q, fx.host, lens, nHeads, 0.9), F32_TOL)).toBeNull();
    const shorter = [12, 3];
    ctx.device.queue.writeBuffer(lensBuf, 0, new Uint32Array(shorter));
    await run(ctx, d);
    expect(closeTo(await download(ctx, out, q.length), attentionDecodeRef(q, fx.host, shorter, nHeads, 0.9), F32_TOL)).toBeNull();
  });
});

/**
 * A prefill step as the engine runs it: the chunks' K/V go in with kvWrite, then attention.
 * chunks: [sequence, first position, count]; the cache already holds `prefix[s]` tokens.
 */
async function prefillCase(ctx: GpuContext, heads: [number, number, number], prefix: number[], chunks: [number, number, number][], seed: number, interleave = false, windows?: KeyWindows, editTable?: (fx: PagedFixture) => void) {
  const [nHeads, nKvHeads, headDim] = heads;
  const final = prefix.map((p, s) => Math.max(p, ...chunks.filter((c) => c[0] === s).map((c) => c[1] + c[2])));
  const fx = makePagedFixture(seed, prefix, nKvHeads, headDim, final);
  editTable?.(fx);
  const kv = uploadCache(ctx, fx);
  let tokenSeq = chunks.flatMap(([s, , n]) => new Array<number>(n).fill(s));
  let tokenPos = chunks.flatMap(([, p, n]) => range(p, p + n));
  if (interleave) {
    const order = range(0, tokenSeq.length).sort((a, b) => (a % 2) - (b % 2) || a - b);
    tokenSeq = order.map((i) => tokenSeq[i]);
    tokenPos = order.map((i) => tokenPos[i]);
  }
  const T = tokenSeq.length;
  const k = randomF32(T * nKvHeads * headDim, seed + 1), v = randomF32(T * nKvHeads * headDim, seed + 2);
  const q = randomF32(T * nHeads * headDim, seed + 3);
  const seqBuf = upload(ctx, new Uint32Array(tokenSeq)), posBuf = upload(ctx, new Uint32Array(tokenPos));
  const out = upload(ctx, new Float32Array(q.length));
  const attention = attentionPrefill(ctx, { ...kv, q: upload(ctx, q), tokenSeq: seqBuf, tokenPos: posBuf, out, T, nHeads, keyWindow: windows ? windowBuffer(ctx, windows) : undefined });
  await run(ctx, [kvWrite(ctx, { ...kv, k: upload(ctx, k), v: upload(ctx, v), tokenSeq: seqBuf, tokenPos: posBuf, T }), attention]);
  const host = cloneHost(fx.host);
  kvWriteRef(host, k, v, tokenSeq, tokenPos, T);
  return { got: await download(ctx, out, q.length), want: attentionRef(q, host, tokenSeq, tokenPos, nHeads, undefined, windows), label: attention.label };
}

// Both prefill variants on this device: 'serial' (one invocation per (query, head), the CPU-class
// device's choice under the fused plan; headDim % 4 == 0 only) and 'workgroup' (the tiled kernel).
const PREFILL_STYLES: ReductionStyle[] = ['serial', 'workgroup'];

describe('attention prefill', () => {
  for (const style of PREFILL_STYLES) {
    for (const heads of HEADS) {
      const name = `${style}, ${heads[0]}/${heads[1]} heads, headDim ${heads[2]}`;
      it(`${name}: a 40-token chunk from position 0`, async () => {
        const { got, want, label } = await prefillCase(await styled(style), heads, [0], [[0, 0, 40]], 100);
        expect(label.includes('serial')).toBe(style === 'serial');
        expect(closeTo(got, want, F32_TOL)).toBeNull();
      });
      it(`${name}: a chunk at position 20 after a cached prefix`, async () => {
        const { got, want } = await prefillCase(await styled(style), heads, [20], [[0, 20, 17]], 200);
        expect(closeTo(got, want, F32_TOL)).toBeNull();
      });
      it(`${name}: two sequences' chunks in one dispatch`, async () => {
        // 17 + 5 tokens: the query tiles straddle the boundary between the two sequences
        const { got, want } = await prefillCase(await styled(style), heads, [17, 0], [[0, 17, 17], [1, 0, 5]], 300);
        expect(closeTo(got, want, F32_TOL)).toBeNull();
      });
    }
    it(`${style}: three sequences with interleaved tokens (positions not sorted), fallback device`, async () => {
      const { got, want } = await prefillCase(await styled(style, FALLBACK), [6, 2, 64], [3, 0, 16], [[0, 3, 7], [1, 0, 1], [2, 16, 9]], 400, true);
      expect(closeTo(got, want, F32_TOL)).toBeNull();
    });
    for (const heads of [[3, 1, 80], [2, 2, 256], [2, 1, 6]] as [number, number, number][]) {
      const what = heads[2] === 256 ? 'the maximum: smallest tiles' : heads[2] % 4 ? 'not a multiple of 4: always the tiled kernel' : 'not a power of two';
      it(`${style}, head size ${heads[2]} (${what}): two sequences' chunks`, async () => {
        const { got, want, label } = await prefillCase(await styled(style), heads, [5, 0], [[0, 5, 12], [1, 0, 3]], 600 + heads[2]);
        expect(label.includes('serial')).toBe(style === 'serial' && heads[2] % 4 === 0);
        expect(closeTo(got, want, F32_TOL)).toBeNull();
      });
    }
    it(`${style}: a single token chunk equals decode`, async () => {
      const { got, want } = await prefillCase(await styled(style), [8, 4, 8], [99], [[0, 99, 1]], 500);
      expect(closeTo(got, want, F32_TOL)).toBeNull();
    });
    it(`${style}: a decode row of one sequence beside another's 16-token chunk (the engine's mixed batch)`, async () => {
      const { got, want } = await prefillCase(await styled(style), [8, 4, 8], [30, 0], [[0, 30, 1], [1, 0, 16]], 510);
      expect(closeTo(got, want, F32_TOL)).toBeNull();
    });
  }
});

describe('attention with key windows (sinks + recent window per sequence)', () => {
  // Mixed in one dispatch: unbounded, window 1, a window of exactly one block, sinks with a small
  // window, a window longer than the sequence (= unbounded), sinks past the window's start.
  const lens = [1, 5, 16, 40, 100, 37];
  const windows: KeyWindows = { sinks: [0, 0, 0, 4, 2, 30], window: [U, 1, 16, 7, 1000, 3] };
  const DECODE: [string, ReductionStyle, object, [number, number, number]][] = [
    ['serial', 'serial', {}, [8, 4, 8]],
    ['serial', 'serial', {}, [3, 1, 12]],
    ['workgroup (subgroups if available)', 'workgroup', {}, [6, 2, 64]],
    ['workgroup-memory fallback', 'workgroup', FALLBACK, [4, 2, 6]],
  ];
  for (const [label, style, options, [nHeads, nKvHeads, headDim]] of DECODE) {
    it(`decode, ${label}: ${nHeads}/${nKvHeads} heads, headDim ${headDim}, mixed windows in one dispatch, reused as they change`, async () => {
      const ctx = await styled(style, options);
      const fx = makePagedFixture(700 + headDim, lens, nKvHeads, headDim);
      const kv = uploadCache(ctx, fx);
      const q = randomF32(lens.length * nHeads * headDim, 701);
      const out = upload(ctx, new Float32Array(q.length));
      const win = windowBuffer(ctx, windows);
      const d = attentionDecode(ctx, { ...kv, q: upload(ctx, q), seqLens: upload(ctx, new Uint32Array(lens)), out, nHeads, keyWindow: win });
      expect(d.label.includes('serial')).toBe(style === 'serial' && headDim % 4 === 0);
      expect(d.label.endsWith('_win')).toBe(true);
      await run(ctx, d);
      const want = attentionDecodeRef(q, fx.host, lens, nHeads, undefined, windows);
      expect(closeTo(await download(ctx, out, q.length), want, F32_TOL, 'windowed')).toBeNull();
      // the window actually matters here
      expect(closeTo(want, attentionDecodeRef(q, fx.host, lens, nHeads), { atol: 1e-3, rtol: 0 })).not.toBeNull();
      // new windows through the same dispatch: all unbounded, then all window 2 with 1 sink
      const every = (sinks: number, window: number): KeyWindows => ({ sinks: lens.map(() => sinks), window: lens.map(() => window) });
      for (const w of [every(0, U), every(1, 2)]) {
        ctx.device.queue.writeBuffer(win, 0, Uint32Array.from(lens.flatMap((_, s) => [w.sinks[s], w.window[s]])));
        await run(ctx, d);
        expect(closeTo(await download(ctx, out, q.length), attentionDecodeRef(q, fx.host, lens, nHeads, undefined, w), F32_TOL, `sinks ${w.sinks[0]} window ${w.window[0]}`)).toBeNull();
      }
    });

    it(`decode, ${label}: a long sequence never reads its masked blocks (NaN-poisoned, then NO_BLOCK)`, async () => {
      const ctx = await styled(style, options);
      // 200 positions, sinks 4, window 20: the query at 199 sees 0..3 and 180..199; blocks 1..10 (16..175) are masked
      const w: KeyWindows = { sinks: [4, 0], window: [20, 5] };
      const fx = makePagedFixture(800 + headDim, [200, 33], nKvHeads, headDim);
      const poison = poisonBlock(fx);
      holeBlocks(fx, 0, 1, 11, poison);
      holeBlocks(fx, 1, 0, 1, poison); // the second sequence's query at 32 sees 28..32: block 0 is masked
      const q = randomF32(2 * nHeads * headDim, 801);
      const want = attentionDecodeRef(q, fx.host, [200, 33], nHeads, undefined, w);
      for (const id of [poison, NO_BLOCK]) {
        holeBlocks(fx, 0, 1, 11, id);
        holeBlocks(fx, 1, 0, 1, id);
        const kv = uploadCache(ctx, fx);
        const out = upload(ctx, new Float32Array(q.length));
        await run(ctx, attentionDecode(ctx, { ...kv, q: upload(ctx, q), seqLens: upload(ctx, Uint32Array.of(200, 33)), out, nHeads, keyWindow: windowBuffer(ctx, w) }));
        expect(closeTo(await download(ctx, out, q.length), want, F32_TOL, id === NO_BLOCK ? 'NO_BLOCK' : 'poisoned block')).toBeNull();
      }
    });
  }

  it('decode: a window at least as long as every sequence equals the unbounded kernel', async () => {
    const ctx = await testGpu();
    const [nHeads, nKvHeads, headDim] = [4, 2, 8];
    const fx = makePagedFixture(900, lens, nKvHeads, headDim);
    const kv = uploadCache(ctx, fx);
    const q = upload(ctx, randomF32(lens.length * nHeads * headDim, 901));
    const plain = upload(ctx, new Float32Array(lens.length * nHeads * headDim)), windowed = upload(ctx, new Float32Array(lens.length * nHeads * headDim));
    const seqLens = upload(ctx, new Uint32Array(lens));
    await run(ctx, [
      attentionDecode(ctx, { ...kv, q, seqLens, out: plain, nHeads }),
      attentionDecode(ctx, { ...kv, q, seqLens, out: windowed, nHeads, keyWindow: windowBuffer(ctx, { sinks: lens.map(() => 0), window: lens }) }),
    ]);
    const n = lens.length * nHeads * headDim;
    expect(Array.from(await download(ctx, windowed, n))).toEqual(Array.from(await download(ctx, plain, n)));
  });

  for (const style of PREFILL_STYLES) {
    const PREFILL_HEADS: [number, number, number][] = [[1, 1, 8], [6, 2, 64], [3, 1, 12]];
    for (const heads of PREFILL_HEADS) {
      const name = `${heads[0]}/${heads[1]} heads, headDim ${heads[2]}`;
      it(`prefill, ${style}, ${name}: a 40-token chunk with 2 sinks and window 7 (tiles in the gap skipped)`, async () => {
        const { got, want } = await prefillCase(await styled(style), heads, [0], [[0, 0, 40]], 1000, false, { sinks: [2], window: [7] });
        expect(closeTo(got, want, F32_TOL)).toBeNull();
      });
      it(`prefill, ${style}, ${name}: two sequences' chunks in one query tile with different windows (3 + 1 sink, unbounded)`, async () => {
        const { got, want } = await prefillCase(await styled(style), heads, [17, 0], [[0, 17, 17], [1, 0, 5]], 1100, false, { sinks: [1, 0], window: [3, U] });
        expect(closeTo(got, want, F32_TOL)).toBeNull();
      });
    }
    it(`prefill, ${style}: window 1 (each query sees itself and the sinks) after a cached prefix, fallback device`, async () => {
      const { got, want } = await prefillCase(await styled(style, FALLBACK), [4, 2, 8], [20], [[0, 20, 17]], 1200, false, { sinks: [3], window: [1] });
      expect(closeTo(got, want, F32_TOL)).toBeNull();
    });
    it(`prefill, ${style}: a window at least as long as the sequence equals unbounded; interleaved sequences`, async () => {
      const chunks: [number, number, number][] = [[0, 3, 7], [1, 0, 1], [2, 16, 9]];
      const a = await prefillCase(await styled(style), [6, 2, 16], [3, 0, 16], chunks, 1300, true, { sinks: [0, 5, 0], window: [10, 1, 25] });
      const b = await prefillCase(await styled(style), [6, 2, 16], [3, 0, 16], chunks, 1300, true);
      expect(Array.from(a.got)).toEqual(Array.from(b.got));
      expect(closeTo(a.got, a.want, F32_TOL)).toBeNull();
    });
    for (const headDim of [8, 64]) {
      it(`prefill, ${style}, headDim ${headDim}: far-apart queries of one segment never read the blocks between their windows (NaN-poisoned, then NO_BLOCK)`, async () => {
        // one segment: positions 5 and 60 of sequence 0 (window 4: keys 2..5 and 57..60), then a
        // chunk of sequence 1 (sinks 2, window 3) whose blocks 1..2 are masked
        const w: KeyWindows = { sinks: [0, 2], window: [4, 3] };
        const chunks: [number, number, number][] = [[0, 5, 1], [0, 60, 1], [1, 50, 4]];
        for (const hole of ['poison', 'none'] as const) {
          const { got, want } = await prefillCase(await styled(style), [2, 1, headDim], [61, 50], chunks, 1400 + headDim, false, w, (fx) => {
            const id = hole === 'poison' ? poisonBlock(fx) : NO_BLOCK;
            holeBlocks(fx, 0, 1, 3, id); // positions 16..47
            holeBlocks(fx, 1, 1, 3, id); // positions 16..47: the chunk at 50..53 sees 0, 1 and 48..53
          });
          expect(closeTo(got, want, F32_TOL, hole)).toBeNull();
        }
      });
    }
  }
});

describe('attention guards', () => {
  it('reject bad shapes before dispatch, naming the shape', async () => {
    const ctx = await testGpu();
    const fx = makePagedFixture(9, [5, 3], 2, 8);
    const kv = uploadCache(ctx, fx);
    const q = upload(ctx, new Float32Array(2 * 4 * 8)), out = upload(ctx, new Float32Array(2 * 4 * 8));
    const lens = upload(ctx, new Uint32Array([5, 3]));
    const dec = { ...kv, q, out, seqLens: lens, nHeads: 4 };
    expect(() => attentionDecode(ctx, dec)).not.toThrow();
    expect(() => attentionDecode(ctx, { ...dec, nHeads: 3 })).toThrow(/nHeads = 3 is not a multiple of nKvHeads = 2/);
    expect(() => attentionDecode(ctx, { ...dec, nHeads: 6 })).toThrow(/q .*\[2, 6, 8\]/);
    expect(() => attentionDecode(ctx, { ...dec, headDim: 512 })).toThrow(/headDim = 512 exceeds the supported maximum 256/);
    expect(() => attentionDecode(ctx, { ...dec, nSeqs: 5 })).toThrow(ShapeError);
    expect(() => attentionDecode(ctx, { ...dec, out: q })).toThrow(/must not alias q/);
    const pre = { ...kv, q, out, tokenSeq: lens, tokenPos: lens, T: 2, nHeads: 4 };
    expect(() => attentionPrefill(ctx, pre)).not.toThrow();
    expect(() => attentionPrefill(ctx, { ...pre, T: 0 })).toThrow(/T = 0/);
    expect(() => attentionPrefill(ctx, { ...pre, T: 9 })).toThrow(/tokenSeq|q .*\[9, 4, 8\]/);
    expect(() => attentionPrefill(ctx, { ...pre, scale: NaN })).toThrow(/scale/);
    expect(() => attentionPrefill(ctx, { ...pre, maxBlocksPerSeq: 7 })).toThrow(/blockTable .*\[2, 7\]/);
  });

  it('reject a keyWindow smaller than [nSeqs, 2]', async () => {
    const ctx = await testGpu();
    const fx = makePagedFixture(10, [5, 3, 2, 4, 1], 2, 8);
    const kv = uploadCache(ctx, fx);
    const q = upload(ctx, new Float32Array(5 * 4 * 8)), out = upload(ctx, new Float32Array(5 * 4 * 8));
    const ids = upload(ctx, new Uint32Array(5));
    const small = upload(ctx, new Uint32Array(8)), fits = upload(ctx, new Uint32Array(10));
    const dec = { ...kv, q, out, seqLens: ids, nHeads: 4 };
    expect(() => attentionDecode(ctx, { ...dec, keyWindow: small })).toThrow(ShapeError);
    expect(() => attentionDecode(ctx, { ...dec, keyWindow: small })).toThrow(/attentionDecode: keyWindow .*\[5, 2\]/);
    expect(() => attentionDecode(ctx, { ...dec, keyWindow: fits })).not.toThrow();
    expect(() => attentionDecode(ctx, { ...dec, keyWindow: out })).toThrow(/keyWindow must not alias out/);
    const pre = { ...kv, q, out, tokenSeq: ids, tokenPos: ids, T: 5, nHeads: 4 };
    expect(() => attentionPrefill(ctx, { ...pre, keyWindow: small })).toThrow(/attentionPrefill: keyWindow .*\[5, 2\]/);
    expect(() => attentionPrefill(ctx, { ...pre, keyWindow: fits })).not.toThrow();
  });
});
