/**
 * F16/BF16 -> f32 on the GPU against the bit-level CPU reference: every one of the 65536 half
 * patterns (so all subnormals, both zeros, infinities and NaN payloads) plus odd element counts.
 * Tolerance: none, the u32 patterns must be identical.
 */
import { describe, expect, it } from 'vitest';
import { createStorage, readU32, uploadStorage } from '../../src/gpu/buffers.ts';
import { ShapeError } from '../../src/gpu/errors.ts';
import { f16BitsToF32 } from '../../src/gpu/f16.ts';
import { convertHalfRef, convertHalfToF32, halfToF32Bits, type HalfDtype } from '../../src/kernels/convert.ts';
import { mulberry32, run, testGpu } from './gpu.ts';

/** Halves packed two per word, as the loader writes them; odd n leaves the last high half zero. */
function packWords(halves: Uint16Array): Uint32Array {
  const w = new Uint32Array(Math.ceil(halves.length / 2));
  new Uint16Array(w.buffer).set(halves);
  return w;
}

function firstMismatch(got: Uint32Array, want: Uint32Array): string | null {
  for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) return `element ${i}: got 0x${got[i].toString(16)}, want 0x${want[i].toString(16)}`;
  return null;
}

describe('convertHalfRef', () => {
  it('agrees with the value-level f16 decoder on every non-NaN pattern and keeps NaN payloads', () => {
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    for (let h = 0; h < 0x10000; h++) {
      const bits = halfToF32Bits(h, 'F16');
      u[0] = bits;
      const v = f16BitsToF32(h);
      if (Number.isNaN(v)) {
        expect(Number.isNaN(f[0])).toBe(true);
        expect((bits >>> 13) & 0x3ff).toBe(h & 0x3ff); // payload kept
      } else if (!Object.is(f[0], v)) throw new Error(`f16 0x${h.toString(16)}: ${f[0]} != ${v}`);
    }
    expect(halfToF32Bits(0x0001, 'F16')).toBe(0x33800000); // smallest subnormal 2^-24
    expect(halfToF32Bits(0x3f80, 'BF16')).toBe(0x3f800000); // 1.0
    expect(halfToF32Bits(0xff81, 'BF16')).toBe(0xff810000); // NaN payload kept
  });
});

describe('convertHalfToF32 (GPU)', () => {
  for (const dtype of ['F16', 'BF16'] as HalfDtype[]) {
    it(`${dtype}: all 65536 patterns, bit-exact`, async () => {
      const ctx = await testGpu();
      const halves = Uint16Array.from({ length: 0x10000 }, (_, i) => i);
      const src = uploadStorage(ctx, packWords(halves), 'halves');
      const dst = createStorage(ctx, halves.length * 4, 'f32');
      await run(ctx, convertHalfToF32(ctx, { src, dst, n: halves.length, dtype }));
      expect(firstMismatch(await readU32(ctx, dst, halves.length), convertHalfRef(halves, dtype))).toBeNull();
      src.destroy();
      dst.destroy();
    });

    it(`${dtype}: odd counts write exactly n elements`, async () => {
      const ctx = await testGpu();
      const rnd = mulberry32(7);
      for (const n of [1, 3, 1023, 2049]) {
        const halves = Uint16Array.from({ length: n }, () => Math.floor(rnd() * 0x10000));
        const src = uploadStorage(ctx, packWords(halves), 'halves');
        const dst = uploadStorage(ctx, new Uint32Array(n + 3).fill(0xdeadbeef), 'f32 + guard');
        await run(ctx, convertHalfToF32(ctx, { src, dst, n, dtype }));
        const got = await readU32(ctx, dst, n + 3);
        expect(firstMismatch(got.subarray(0, n), convertHalfRef(halves, dtype)), `n=${n}`).toBeNull();
        expect([...got.subarray(n)]).toEqual([0xdeadbeef, 0xdeadbeef, 0xdeadbeef]);
        src.destroy();
        dst.destroy();
      }
    });
  }

  it('rejects bad shapes before dispatch', async () => {
    const ctx = await testGpu();
    const src = createStorage(ctx, 16, 'src');
    const dst = createStorage(ctx, 16, 'dst');
    expect(() => convertHalfToF32(ctx, { src, dst, n: 5, dtype: 'F16' })).toThrow(ShapeError);
    expect(() => convertHalfToF32(ctx, { src, dst, n: 0, dtype: 'F16' })).toThrow(ShapeError);
    expect(() => convertHalfToF32(ctx, { src, dst: src, n: 2, dtype: 'BF16' })).toThrow(ShapeError);
    expect(() => convertHalfToF32(ctx, { src, dst, n: 2, dtype: 'F32' as HalfDtype })).toThrow(/not F16 or BF16/);
    src.destroy();
    dst.destroy();
  });
});
