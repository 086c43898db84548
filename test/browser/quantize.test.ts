import { describe, expect, it } from 'vitest';
import { buildWeight, uploadWeight } from '../../src/kernels/quantize.ts';
import { packF16Ref, quantizeQ4Ref, rowScaleWords, rowWords, type GpuWeight } from '../../src/kernels/weights.ts';
import { ShapeError } from '../../src/gpu/errors.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import { download, downloadU32, mulberry32, randomF32, testGpu, upload } from './gpu.ts';

/** The stored words of a weight, shards concatenated: data, and scales for q4. */
async function readWeight(ctx: GpuContext, w: GpuWeight): Promise<{ data: Uint32Array; scales: Uint32Array }> {
  const dw = rowWords(w.format, w.K), sw = rowScaleWords(w.format, w.K);
  const data = new Uint32Array(w.N * dw), scales = new Uint32Array(w.N * sw);
  for (const s of w.shards) {
    data.set(await downloadU32(ctx, s.data, s.rows * dw), s.rowStart * dw);
    if (s.scales) scales.set(await downloadU32(ctx, s.scales, s.rows * sw), s.rowStart * sw);
  }
  return { data, scales };
}

/** Random weights with the awkward cases mixed in: f16 subnormals, exact f16 ties, zeros, an all-zero group. */
function nastyWeights(N: number, K: number, seed: number): Float32Array {
  const w = randomF32(N * K, seed);
  const r = mulberry32(seed + 99);
  for (let i = 0; i < w.length; i++) {
    const u = r();
    if (u < 0.05) w[i] *= 1e-5; // f16 subnormals after packing
    else if (u < 0.08) w[i] = Math.round(w[i] * 2048) / 2048 + 1 / 4096; // exactly between two f16 values: ties to even
    else if (u < 0.1) w[i] = 0;
  }
  // An all-zero group (scale 0, every q = 7) in the first row.
  for (let k = 0; k < Math.min(K, 32); k++) w[k] = 0;
  return w;
}

const SHAPES: [number, number][] = [[1, 1], [1, 7], [3, 33], [7, 100], [33, 64], [5, 257]];

describe('weight conversion on the GPU', () => {
  for (const [N, K] of SHAPES) {
    it(`packs f16 bit-exactly, N=${N} K=${K}`, async () => {
      const ctx = await testGpu();
      const w = nastyWeights(N, K, N * 131 + K);
      const gw = await uploadWeight(ctx, w, N, K, 'f16', 'test');
      // Bit-exact: the GPU packer is integer arithmetic on the f32 bits, same rules as f32ToF16Bits.
      expect(Array.from((await readWeight(ctx, gw)).data)).toEqual(Array.from(packF16Ref(w, N, K)));
    });

    it(`quantizes q4 bit-exactly, N=${N} K=${K}`, async () => {
      const ctx = await testGpu();
      const w = nastyWeights(N, K, N * 7 + K);
      const gw = await uploadWeight(ctx, w, N, K, 'q4', 'test');
      const got = await readWeight(ctx, gw);
      const want = quantizeQ4Ref(w, N, K);
      expect(Array.from(got.scales)).toEqual(Array.from(want.scales));
      // The GPU corrects WGSL's inexact division with exact midpoint comparisons, so nibbles match
      // exactly too (the brief allowed rare mismatches at w/scale ties; we count them and want 0).
      let mismatches = 0;
      for (let i = 0; i < want.data.length; i++) for (let t = 0; t < 8; t++) if (((got.data[i] >>> (4 * t)) & 15) !== ((want.data[i] >>> (4 * t)) & 15)) mismatches++;
      expect(mismatches).toBe(0);
    });
  }

  it('quantizes exact w/scale ties to even', async () => {
    const ctx = await testGpu();
    // max|w| = 7 gives scale 1, so w = ±0.5, ±1.5, ±2.5 are exact ties: q - 7 must be 0, ±2, ±2.
    const K = 32;
    const w = new Float32Array(K);
    w.set([7, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 6.5, -6.5, 3.4999998, 3.5000002]);
    const got = await readWeight(ctx, await uploadWeight(ctx, w, 1, K, 'q4', 'ties'));
    expect(Array.from(got.data)).toEqual(Array.from(quantizeQ4Ref(w, 1, K).data));
    expect(Array.from(got.scales)).toEqual(Array.from(quantizeQ4Ref(w, 1, K).scales));
  });

  it('quantizes scales at f16 rounding midpoints exactly', async () => {
    const ctx = await testGpu();
    // max|w| = 7 * (midpoint of two neighbouring f16 values): the scale rounds to the even one.
    const N = 64, K = 32;
    const w = new Float32Array(N * K);
    for (let n = 0; n < N; n++) w[n * K] = 7 * (1 + (2 * n + 1) / 2048) * 2 ** ((n % 9) - 6);
    const got = await readWeight(ctx, await uploadWeight(ctx, w, N, K, 'q4', 'mid'));
    expect(Array.from(got.scales)).toEqual(Array.from(quantizeQ4Ref(w, N, K).scales));
  });

  for (const format of ['f32', 'f16', 'q4'] as const) {
    it(`splits a weight over shards under a small binding cap (${format})`, async () => {
      const ctx = await testGpu({ limitsCap: { maxStorageBufferBindingSize: 4096 } });
      const N = 70, K = 100;
      const w = nastyWeights(N, K, 5);
      const gw = await uploadWeight(ctx, w, N, K, format, 'split');
      expect(gw.shards.length).toBeGreaterThan(1);
      for (const s of gw.shards) expect(s.data.size).toBeLessThanOrEqual(4096);
      const got = await readWeight(ctx, gw);
      if (format === 'f32') expect(Array.from(new Float32Array(got.data.buffer))).toEqual(Array.from(w));
      if (format === 'f16') expect(Array.from(got.data)).toEqual(Array.from(packF16Ref(w, N, K)));
      if (format === 'q4') {
        const want = quantizeQ4Ref(w, N, K);
        expect(Array.from(got.data)).toEqual(Array.from(want.data));
        expect(Array.from(got.scales)).toEqual(Array.from(want.scales));
      }
    });
  }

  it('builds from rows already on the GPU and frees nothing it does not own', async () => {
    const ctx = await testGpu();
    const N = 9, K = 40;
    const w = randomF32(N * K, 3);
    const calls: [number, number][] = [];
    const gw = await buildWeight(ctx, N, K, 'q4', 'gpu-rows', (r, n) => {
      calls.push([r, n]);
      return upload(ctx, w.subarray(r * K, (r + n) * K));
    });
    expect(calls).toEqual([[0, N]]);
    const got = await readWeight(ctx, gw);
    expect(Array.from(got.data)).toEqual(Array.from(quantizeQ4Ref(w, N, K).data));
    const f32 = await buildWeight(ctx, N, K, 'f32', 'gpu-rows', () => upload(ctx, w));
    expect(Array.from(await download(ctx, f32.shards[0].data, N * K))).toEqual(Array.from(w));
  });

  it('rejects bad shapes and short sources before dispatch', async () => {
    const ctx = await testGpu();
    await expect(uploadWeight(ctx, new Float32Array(10), 0, 10, 'f16', 'w')).rejects.toThrow(/N = 0/);
    await expect(uploadWeight(ctx, new Float32Array(10), 3, 4, 'q4', 'w')).rejects.toThrow(ShapeError);
    await expect(uploadWeight(ctx, new Float32Array(10), 3, 4, 'q4', 'w')).rejects.toThrow(/\[3, 4\]/);
    await expect(buildWeight(ctx, 4, 8, 'f16', 'w', () => upload(ctx, new Float32Array(8)))).rejects.toThrow(/\[4, 8\]/);
  });
});
