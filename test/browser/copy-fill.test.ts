import { describe, expect, it } from 'vitest';
import { copyF32, copyRef } from '../../src/kernels/copy.ts';
import { fillRef, fillUniform } from '../../src/kernels/fill.ts';
import { createStorage } from '../../src/gpu/buffers.ts';
import { ShapeError } from '../../src/gpu/errors.ts';
import { download, randomF32, run, testGpu, upload } from './gpu.ts';

/** First index where two f32 arrays differ bit for bit (NaN-safe), or -1. */
function firstBitDifference(a: Float32Array, b: Float32Array): number {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length), ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  if (ua.length !== ub.length) return Math.min(ua.length, ub.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return -1;
}

describe('copy', () => {
  // n % 4 covers the vec4 body alone, the scalar tail alone (n < 4) and both.
  // 16384 + 4 + 3: past one workgroup's 64 x 64 vec4s, so a second workgroup and a partial stride run.
  for (const n of [1, 3, 4, 7, 33, 100, 4099, 16384 + 7]) {
    it(`copies exactly, n=${n}`, async () => {
      const ctx = await testGpu();
      const src = randomF32(n, n);
      const sb = upload(ctx, src);
      const db = upload(ctx, new Float32Array(n + 5).fill(-7)); // larger: nothing past n may change
      const ds = copyF32(ctx, { src: sb, dst: db, n });
      expect(ds.map((d) => d.label)).toEqual([...(n >= 4 ? ['copy_f32x4_x64_wg64'] : []), ...(n % 4 ? ['copy_f32_wg64'] : [])]);
      await run(ctx, ds);
      const got = await download(ctx, db, n + 5);
      // A copy moves bits: exact equality, no tolerance.
      expect(firstBitDifference(got.subarray(0, n), copyRef(src, n))).toBe(-1);
      expect(Array.from(got.subarray(n))).toEqual([-7, -7, -7, -7, -7]);
    });
  }

  it('rejects bad shapes before dispatch', async () => {
    const ctx = await testGpu();
    const a = upload(ctx, new Float32Array(8)), b = upload(ctx, new Float32Array(5));
    expect(() => copyF32(ctx, { src: a, dst: b, n: 8 })).toThrow(ShapeError);
    expect(() => copyF32(ctx, { src: a, dst: b, n: 8 })).toThrow(/copyF32: dst .*\[8\]/);
    expect(() => copyF32(ctx, { src: a, dst: a, n: 8 })).toThrow(/alias/);
    expect(() => copyF32(ctx, { src: a, dst: b, n: 0 })).toThrow(/n = 0/);
  });
});

describe('uniform fill', () => {
  const cases = [
    { n: 1, seed: 0, lo: 0, hi: 1, first: 0 },
    { n: 7, seed: 1, lo: -1, hi: 1, first: 0 },
    { n: 33, seed: 0xffffffff, lo: -0.02, hi: 0.02, first: 5 },
    { n: 100, seed: 12345, lo: 3, hi: 3.5, first: 0 },
    { n: 4099, seed: 42, lo: -0.1, hi: 0.3, first: 2 ** 32 - 4099 }, // the top of the index space
  ];
  for (const c of cases) {
    it(`matches the reference bit for bit, n=${c.n} seed=${c.seed} first=${c.first}`, async () => {
      const ctx = await testGpu();
      const out = upload(ctx, new Float32Array(c.n));
      await run(ctx, fillUniform(ctx, { out, ...c }));
      const got = await download(ctx, out, c.n);
      // Integer hash + exact 24-bit u + IEEE f32 mul and add: the GPU must reproduce the CPU bits.
      const want = fillRef(c.n, c.seed, { lo: c.lo, hi: c.hi }, c.first);
      const bad = firstBitDifference(got, want);
      expect(bad, bad < 0 ? '' : `index ${bad}: got ${got[bad]}, want ${want[bad]}`).toBe(-1);
      for (const v of got) expect(v >= Math.fround(c.lo) && v <= Math.fround(c.hi)).toBe(true);
    });
  }

  it('a shard filled with `first` equals that slice of a whole fill', async () => {
    const ctx = await testGpu();
    const whole = createStorage(ctx, 1000 * 4, 'whole'), part = createStorage(ctx, 300 * 4, 'part');
    await run(ctx, fillUniform(ctx, { out: whole, n: 1000, seed: 9, lo: -1, hi: 1 }), fillUniform(ctx, { out: part, n: 300, seed: 9, lo: -1, hi: 1, first: 600 }));
    const w = await download(ctx, whole, 1000), p = await download(ctx, part, 300);
    expect(firstBitDifference(p, w.slice(600, 900))).toBe(-1);
  });

  it('rejects bad arguments before dispatch', async () => {
    const ctx = await testGpu();
    const out = upload(ctx, new Float32Array(4));
    expect(() => fillUniform(ctx, { out, n: 5, seed: 1, lo: 0, hi: 1 })).toThrow(ShapeError);
    expect(() => fillUniform(ctx, { out, n: 5, seed: 1, lo: 0, hi: 1 })).toThrow(/fillUniform: out .*\[5\]/);
    expect(() => fillUniform(ctx, { out, n: 4, seed: 1, lo: 1, hi: 1 })).toThrow(/range/);
    expect(() => fillUniform(ctx, { out, n: 4, seed: -1, lo: 0, hi: 1 })).toThrow(/seed/);
    expect(() => fillUniform(ctx, { out, n: 4, seed: 1, lo: 0, hi: 1, first: 2 ** 32 - 2 })).toThrow(/first/);
  });
});
