import { describe, expect, it } from 'vitest';
import { embedding, embeddingRef } from '../../src/kernels/embedding.ts';
import { dequantizeRef, packF16Ref, quantizeQ4Ref, rowScaleWords, rowWords, WEIGHT_FORMATS, type GpuWeight, type WeightFormat, type WeightShard } from '../../src/kernels/weights.ts';
import { uploadStorage } from '../../src/gpu/buffers.ts';
import { ShapeError } from '../../src/gpu/errors.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import { downloadU32, mulberry32, randomF32, run, testGpu, upload } from './gpu.ts';

/** A GpuWeight built from CPU-packed data, cut into shards of `rowsPerShard` rows; plus its dequantized rows. */
function makeTable(ctx: GpuContext, format: WeightFormat, N: number, K: number, rowsPerShard: number, seed: number): { w: GpuWeight; deq: Float32Array } {
  const f = randomF32(N * K, seed, 2);
  const data = format === 'f32' ? new Uint32Array(f.buffer) : format === 'f16' ? packF16Ref(f, N, K) : quantizeQ4Ref(f, N, K).data;
  const scales = format === 'q4' ? quantizeQ4Ref(f, N, K).scales : undefined;
  const dw = rowWords(format, K), sw = rowScaleWords(format, K);
  const shards: WeightShard[] = [];
  for (let r = 0; r < N; r += rowsPerShard) {
    const rows = Math.min(rowsPerShard, N - r);
    shards.push({
      rowStart: r,
      rows,
      data: uploadStorage(ctx, data.subarray(r * dw, (r + rows) * dw), `emb.${r}`),
      scales: scales && uploadStorage(ctx, scales.subarray(r * sw, (r + rows) * sw), `emb.scales.${r}`),
    });
  }
  return { w: { label: `emb_${format}`, format, N, K, shards }, deq: dequantizeRef(format, N, K, data, scales) };
}

function randomTokens(T: number, vocab: number, seed: number): Uint32Array {
  const r = mulberry32(seed);
  return Uint32Array.from({ length: T }, () => Math.floor(r() * vocab));
}

/** Read back f32 output as raw bits so the comparison is exact (and -0 vs 0 or NaN would show). */
async function readBits(ctx: GpuContext, buf: GPUBuffer, n: number): Promise<Uint32Array> {
  return downloadU32(ctx, buf, n);
}

describe('embedding gather', () => {
  for (const format of WEIGHT_FORMATS) {
    for (const [T, vocab, hidden, rowsPerShard] of [[1, 1, 1, 1], [3, 7, 33, 7], [7, 100, 64, 33], [5, 50, 100, 17]] as const) {
      it(`${format}: T=${T} vocab=${vocab} hidden=${hidden} shards of ${rowsPerShard} rows`, async () => {
        const ctx = await testGpu();
        const { w, deq } = makeTable(ctx, format, vocab, hidden, rowsPerShard, T * 31 + hidden);
        const tokens = randomTokens(T, vocab, T + vocab);
        tokens[T - 1] = vocab - 1; // the last row of the last shard
        const out = upload(ctx, new Float32Array(T * hidden).fill(123));
        await run(ctx, embedding(ctx, { tokens: upload(ctx, tokens), table: w, out, T }));
        // A gather copies values: bit-exact against dequantizeRef for every format.
        const want = embeddingRef(tokens, deq, vocab, hidden);
        expect(await readBits(ctx, out, T * hidden)).toEqual(new Uint32Array(want.buffer));
      });
    }
  }
  it('writes zeros for out-of-range ids (the reference agrees)', async () => {
    const ctx = await testGpu();
    const vocab = 10, hidden = 5;
    const { w, deq } = makeTable(ctx, 'q4', vocab, hidden, 4, 9);
    const tokens = Uint32Array.from([3, 10, 0xffffffff, 9, 11]);
    const out = upload(ctx, new Float32Array(tokens.length * hidden).fill(123));
    await run(ctx, embedding(ctx, { tokens: upload(ctx, tokens), table: w, out, T: tokens.length }));
    const want = embeddingRef(tokens, deq, vocab, hidden);
    expect(Array.from(want.subarray(hidden, 3 * hidden))).toEqual(new Array(2 * hidden).fill(0));
    expect(await readBits(ctx, out, tokens.length * hidden)).toEqual(new Uint32Array(want.buffer));
  });
  it('rejects bad shapes before dispatch', async () => {
    const ctx = await testGpu();
    const { w } = makeTable(ctx, 'f16', 8, 6, 3, 1);
    const tokens = upload(ctx, new Uint32Array(4)), out = upload(ctx, new Float32Array(4 * 6));
    expect(() => embedding(ctx, { tokens, table: w, out, T: 5 })).toThrow(ShapeError);
    expect(() => embedding(ctx, { tokens, table: w, out, T: 5 })).toThrow(/tokens.*\[5\]/);
    const small = upload(ctx, new Float32Array(4 * 5));
    expect(() => embedding(ctx, { tokens, table: w, out: small, T: 4 })).toThrow(/out.*\[4, 6\]/);
    const gap = { ...w, shards: [w.shards[0], w.shards[2]] };
    expect(() => embedding(ctx, { tokens, table: gap, out, T: 4 })).toThrow(/not contiguous at row 6/);
    const short = { ...w, shards: w.shards.slice(0, 2) };
    expect(() => embedding(ctx, { tokens, table: short, out, T: 4 })).toThrow(/cover 6 rows of \[8, 6\]/);
    const q4 = makeTable(ctx, 'q4', 4, 40, 4, 2).w;
    const noScales = { ...q4, shards: [{ ...q4.shards[0], scales: undefined }] };
    expect(() => embedding(ctx, { tokens, table: noScales, out: upload(ctx, new Float32Array(4 * 40)), T: 4 })).toThrow(/no scales/);
  });
});
