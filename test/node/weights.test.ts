import { describe, expect, it } from 'vitest';
import { f16BitsToF32, f16Round, f32ToF16Bits } from '../../src/gpu/f16.ts';
import { dequantizeRef, matmulRef, packF16Ref, Q4_GROUP, quantizeQ4Ref, roundHalfEven, rowScaleWords, rowWords, weightBytes } from '../../src/kernels/weights.ts';
import { mulberry32, randomF32 } from '../util/random.ts';

const f32 = (v: number) => Math.fround(v);

describe('f16 conversion (src/gpu/f16.ts)', () => {
  it('round-trips every finite f16 value', () => {
    for (let h = 0; h < 0x10000; h++) {
      const exp = (h >>> 10) & 0x1f;
      if (exp === 0x1f) continue; // inf / NaN below
      const v = f16BitsToF32(h);
      // -0 and +0 keep their sign bit.
      expect(f32ToF16Bits(v)).toBe(h);
    }
  });

  it('rounds to nearest, ties to even', () => {
    const ulp1 = 2 ** -10; // f16 spacing in [1, 2)
    expect(f32ToF16Bits(1 + ulp1 / 2)).toBe(0x3c00); // tie, 1.0 is even
    expect(f32ToF16Bits(1 + (3 * ulp1) / 2)).toBe(0x3c02); // tie, 1 + 2 ulp is even
    expect(f32ToF16Bits(f32(1 + ulp1 / 2 + 2 ** -20))).toBe(0x3c01); // just above the tie
    expect(f32ToF16Bits(f32(1 + ulp1 / 2 - 2 ** -20))).toBe(0x3c00); // just below
    expect(f32ToF16Bits(-(1 + ulp1 / 2))).toBe(0xbc00);
    // Rounding up carries into the exponent: 2 - ulp/4... the largest value below 2 rounds to 2.
    expect(f32ToF16Bits(f32(2 - 2 ** -12))).toBe(0x4000);
  });

  it('handles subnormals, overflow and specials', () => {
    expect(f32ToF16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(f32ToF16Bits(2 ** -25)).toBe(0x0000); // tie between 0 and 2^-24: even is 0
    expect(f32ToF16Bits(f32(2 ** -25 * 1.0001))).toBe(0x0001);
    expect(f32ToF16Bits(3 * 2 ** -25)).toBe(0x0002); // tie between 1 and 2 subnormal steps: even is 2
    expect(f32ToF16Bits(2 ** -14 - 2 ** -24)).toBe(0x03ff); // largest subnormal
    expect(f32ToF16Bits(2 ** -14)).toBe(0x0400); // smallest normal
    expect(f32ToF16Bits(f32(2 ** -14 - 2 ** -26))).toBe(0x0400); // rounds up out of the subnormals
    expect(f32ToF16Bits(1e-10)).toBe(0);
    expect(f32ToF16Bits(-1e-10)).toBe(0x8000);
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // tie between 65504 and 65536 (inf) rounds to even: inf
    expect(f32ToF16Bits(65519)).toBe(0x7bff);
    expect(f32ToF16Bits(1e6)).toBe(0x7c00);
    expect(f32ToF16Bits(-Infinity)).toBe(0xfc00);
    expect(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN)))).toBe(true);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f16BitsToF32(0xfc00)).toBe(-Infinity);
  });

  it('f16Round picks the nearest f16 for random values', () => {
    const r = mulberry32(7);
    for (let i = 0; i < 2000; i++) {
      const v = f32((r() * 2 - 1) * 2 ** Math.floor(r() * 30 - 20));
      const got = f16Round(v);
      const h = f32ToF16Bits(v);
      // No other f16 is strictly closer: compare with both neighbours.
      for (const nb of [h - 1, h + 1]) {
        if ((nb & 0x7fff) >= 0x7c00 || nb < 0 || ((nb ^ h) & 0x8000) !== 0) continue;
        expect(Math.abs(f16BitsToF32(nb) - v)).toBeGreaterThanOrEqual(Math.abs(got - v));
      }
    }
  });
});

describe('weight layouts (src/kernels/weights.ts)', () => {
  it('roundHalfEven rounds ties to even like WGSL round()', () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, 2.6, -2.6, 7].map(roundHalfEven)).toEqual([0, 2, 2, -0, -2, -2, 2, 3, -3, 7]);
  });

  it('sizes rows per format, including odd K and K not a multiple of 32', () => {
    expect(rowWords('f32', 33)).toBe(33);
    expect(rowWords('f16', 33)).toBe(17);
    expect(rowWords('q4', 33)).toBe(8); // 2 groups * 4 words
    expect(rowScaleWords('q4', 33)).toBe(1);
    expect(rowScaleWords('q4', 96)).toBe(2); // 3 groups -> 2 words
    expect(rowScaleWords('f16', 96)).toBe(0);
    expect(weightBytes('q4', 10, 64)).toBe(10 * (8 + 1) * 4);
  });

  for (const K of [1, 2, 7, 33, 64, 100]) {
    it(`packs f16 and unpacks it back to f16-rounded values, K=${K}`, () => {
      const N = 3;
      const w = randomF32(N * K, K);
      w[0] = 1e-6; // f16 subnormal
      const packed = packF16Ref(w, N, K);
      expect(packed.length).toBe(N * Math.ceil(K / 2));
      const back = dequantizeRef('f16', N, K, packed);
      for (let i = 0; i < N * K; i++) expect(back[i]).toBe(f16Round(w[i]));
      // Odd K: the padding half of each row's last word is 0.
      if (K % 2) for (let n = 0; n < N; n++) expect(packed[n * Math.ceil(K / 2) + (K >> 1)] >>> 16).toBe(0);
      // Element 2j in the low half.
      expect(packed[0] & 0xffff).toBe(f32ToF16Bits(w[0]));
    });
  }

  for (const K of [1, 31, 32, 33, 64, 100, 257]) {
    it(`quantizes q4 within half a step per element and pads past K, K=${K}`, () => {
      const N = 4;
      const w = randomF32(N * K, K + 1);
      const { data, scales } = quantizeQ4Ref(w, N, K);
      const G = Math.ceil(K / Q4_GROUP);
      expect(data.length).toBe(N * G * 4);
      expect(scales.length).toBe(N * Math.ceil(G / 2));
      const back = dequantizeRef('q4', N, K, data, scales);
      for (let n = 0; n < N; n++) {
        for (let g = 0; g < G; g++) {
          let maxAbs = 0;
          for (let k = g * Q4_GROUP; k < Math.min(K, (g + 1) * Q4_GROUP); k++) maxAbs = Math.max(maxAbs, Math.abs(w[n * K + k]));
          const s = f16BitsToF32((scales[n * Math.ceil(G / 2) + (g >> 1)] >>> ((g & 1) * 16)) & 0xffff);
          expect(s).toBe(f16Round(maxAbs / 7));
          for (let k = g * Q4_GROUP; k < Math.min(K, (g + 1) * Q4_GROUP); k++) expect(Math.abs(back[n * K + k] - w[n * K + k])).toBeLessThanOrEqual(s / 2 + maxAbs * 2 ** -10);
          // Nibbles past K hold q = 7 (value 0).
          for (let e = K - g * Q4_GROUP; e < Q4_GROUP; e++) {
            if (e < 0) continue;
            expect((data[n * G * 4 + g * 4 + (e >> 3)] >>> ((e & 7) * 4)) & 15).toBe(7);
          }
        }
      }
    });
  }

  it('quantizes an all-zero group to scale 0 and q = 7', () => {
    const K = 64;
    const w = randomF32(K, 1);
    w.fill(0, 32, 64);
    const { data, scales } = quantizeQ4Ref(w, 1, K);
    expect(scales[0] >>> 16).toBe(0);
    for (let j = 4; j < 8; j++) expect(data[j]).toBe(0x77777777);
    expect(Array.from(dequantizeRef('q4', 1, K, data, scales).subarray(32))).toEqual(new Array(32).fill(0));
  });

  it('quantizes the group maximum to ±7 and ties to even', () => {
    const w = new Float32Array(32);
    w.set([7, -7, 0.5, 1.5, 2.5, -2.5]); // scale 1: exact ties
    const { data, scales } = quantizeQ4Ref(w, 1, 32);
    expect(f16BitsToF32(scales[0] & 0xffff)).toBe(1);
    expect(Array.from(dequantizeRef('q4', 1, 32, data, scales).subarray(0, 6))).toEqual([7, -7, 0, 2, 2, -2]);
  });

  it('matmulRef computes x · Wᵀ', () => {
    // x [2, 3], W [2, 3]
    const y = matmulRef(new Float32Array([1, 2, 3, 4, 5, 6]), new Float32Array([1, 0, 0, 0, 1, 1]), 2, 2, 3);
    expect(Array.from(y)).toEqual([1, 5, 4, 11]);
  });
});
