import { describe, expect, it } from 'vitest';
import { ropeInvFreq, ropeRef, UnsupportedRopeScalingError } from '../../src/kernels/rope.ts';

// Llama-3.2-1B: head_dim 64, rope_theta 500000, rope_scaling llama3 (factor 32, low 1, high 4, original 8192).
const LLAMA32 = { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
// Wavelength thresholds: 8192 / high = 2048 and 8192 / low = 8192. wavelen_i = 2π · 500000^(i/32),
// so i <= 14 is high-frequency (wavelen < 2048), 15..17 are smoothed, i >= 18 is low-frequency.
const f32 = Math.fround;

describe('ropeInvFreq', () => {
  it('without scaling is 1 / theta^(2i/d)', () => {
    const f = ropeInvFreq(8, 10000, null);
    // 10000^(-0), 10000^(-1/4) = 0.1, 10000^(-1/2) = 0.01, 10000^(-3/4) = 0.001
    expect(Array.from(f)).toEqual([1, f32(0.1), f32(0.01), f32(0.001)]);
    expect(Array.from(ropeInvFreq(8, 10000, { rope_type: 'default' }))).toEqual(Array.from(f));
  });

  it("'linear' (and the legacy 'type' key) divides by factor", () => {
    const want = [1 / 4, f32(0.1 / 4), f32(0.01 / 4), f32(0.001 / 4)];
    expect(Array.from(ropeInvFreq(8, 10000, { rope_type: 'linear', factor: 4 }))).toEqual(want);
    expect(Array.from(ropeInvFreq(8, 10000, { type: 'linear', factor: 4 }))).toEqual(want);
  });

  describe('llama3 (Llama-3.2-1B config)', () => {
    const f = ropeInvFreq(64, 500000, LLAMA32);
    const close = (got: number, want: number) => expect(Math.abs(got - want)).toBeLessThanOrEqual(1e-6 * want);
    it('has headDim/2 entries', () => expect(f.length).toBe(32));
    it('keeps high frequencies unchanged (wavelen < 2048)', () => {
      expect(f[0]).toBe(1); // 500000^0; wavelen 2π
      close(f[1], 0.6636012376960885); // 500000^(-1/32); wavelen 9.47
      close(f[10], 0.016560440080994446); // 500000^(-10/32); wavelen 379.4
      close(f[14], 0.0032114459947525913); // 500000^(-14/32); wavelen 1956.5, just below 2048
    });
    it('divides low frequencies by factor 32 (wavelen > 8192)', () => {
      close(f[18], 0.000622772421914596 / 32); // 500000^(-18/32); wavelen 10089
      close(f[31], 3.0138581521391708e-6 / 32); // 500000^(-31/32); wavelen 2.08e6
    });
    it('smooths in between: f · ((1 - s)/32 + s), s = (8192/wavelen - 1)/3', () => {
      // i = 16: f = 1/√500000 = 0.0014142135623730951, wavelen = 2π·√500000 = 4442.88, s = 0.281283
      const s16 = (8192 / (2 * Math.PI * Math.sqrt(500000)) - 1) / 3;
      expect(s16).toBeCloseTo(0.28128260516325104, 12);
      close(f[16], 0.00042955679655936815);
      close(f[16], (1 / Math.sqrt(500000)) * ((1 - s16) / 32 + s16));
      close(f[15], 0.001290547928209264); // wavelen 2948.3, s = 0.59285
      close(f[17], 9.70828780262767e-5); // wavelen 6695.1, s = 0.07453
      // The smoothed values lie strictly between the two regimes.
      for (const i of [15, 16, 17]) {
        const base = 1 / 500000 ** ((2 * i) / 64);
        expect(f[i]).toBeLessThan(base);
        expect(f[i]).toBeGreaterThan(base / 32);
      }
    });
  });

  it('rejects unknown rope types with a typed error naming the field and value', () => {
    expect(() => ropeInvFreq(64, 500000, { rope_type: 'yarn', factor: 4 })).toThrow(UnsupportedRopeScalingError);
    expect(() => ropeInvFreq(64, 500000, { rope_type: 'yarn', factor: 4 })).toThrow(/rope_scaling\.rope_type = "yarn"/);
    expect(() => ropeInvFreq(64, 500000, { type: 'dynamic', factor: 4 })).toThrow(/rope_scaling\.rope_type = "dynamic"/);
    const err = (() => {
      try {
        ropeInvFreq(64, 500000, { rope_type: 'longrope' });
      } catch (e) {
        return e;
      }
      return null;
    })() as UnsupportedRopeScalingError;
    expect(err).toBeInstanceOf(UnsupportedRopeScalingError);
    expect(err).toBeInstanceOf(Error);
    expect(err.field).toBe('rope_scaling.rope_type');
    expect(err.value).toBe('longrope');
    expect(() => ropeInvFreq(64, 500000, { rope_type: 'llama3', factor: 32 })).toThrow(/rope_scaling\.low_freq_factor/);
    expect(() => ropeInvFreq(64, 500000, { rope_type: 'linear' })).toThrow(/rope_scaling\.factor/);
    expect(() => ropeInvFreq(63, 500000)).toThrow(RangeError);
  });
});

describe('ropeRef', () => {
  it('rotates pairs (j, j + d/2) by pos · invFreq[j] (rotate_half convention)', () => {
    // headDim 4: pairs (0, 2) and (1, 3); invFreq [1, 0.5]; one q head, one k head, position 1 and 2.
    const invFreq = Float32Array.from([1, 0.5]);
    const q = Float32Array.from([1, 0, 0, 1, /* t=1 */ 1, 2, 3, 4]);
    const k = Float32Array.from([0, 1, 1, 0, /* t=1 */ 1, 1, 1, 1]);
    const out = ropeRef(q, k, Uint32Array.from([1, 2]), invFreq, { T: 2, nHeads: 1, nKvHeads: 1, headDim: 4 });
    const c1 = Math.cos(1), s1 = Math.sin(1), c05 = Math.cos(0.5), s05 = Math.sin(0.5), c2 = Math.cos(2), s2 = Math.sin(2);
    const want = (a: number, b: number, c: number, s: number) => [a * c - b * s, b * c + a * s];
    const [q0, q2] = want(1, 0, c1, s1), [q1, q3] = want(0, 1, c05, s05);
    const [q4, q6] = want(1, 3, c2, s2), [q5, q7] = want(2, 4, c1, s1);
    const expectArr = (got: Float32Array, exp: number[]) => exp.forEach((v, i) => expect(got[i]).toBeCloseTo(v, 6));
    expectArr(out.q, [q0, q1, q2, q3, q4, q5, q6, q7]);
    const [k0, k2] = want(0, 1, c1, s1), [k1, k3] = want(1, 0, c05, s05);
    expectArr(out.k.subarray(0, 4), [k0, k1, k2, k3]);
    expect(Array.from(q)).toEqual([1, 0, 0, 1, 1, 2, 3, 4]); // inputs untouched
  });
  it('position 0 is the identity', () => {
    const q = Float32Array.from([0.5, -1, 2, 3]);
    const out = ropeRef(q, q, Uint32Array.from([0]), Float32Array.from([1, 0.01]), { T: 1, nHeads: 1, nKvHeads: 1, headDim: 4 });
    expect(Array.from(out.q)).toEqual(Array.from(q));
  });
});
