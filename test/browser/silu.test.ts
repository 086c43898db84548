import { describe, expect, it } from 'vitest';
import { siluGate, siluGateRef, siluRef } from '../../src/kernels/silu.ts';
import { ShapeError } from '../../src/gpu/errors.ts';
import { closeTo, download, randomF32, run, testGpu, upload } from './gpu.ts';

// f32: the GPU's exp is accurate to a few ulp (WGSL allows 3 + 2|x| ulp), the division another
// ulp or two; the reference runs in f64. rtol 2e-6 covers that, atol the values near 0.
const TOL = { atol: 1e-7, rtol: 2e-6 };

describe('silu gate', () => {
  for (const n of [1, 7, 100, 1000, 4099]) {
    it(`matches the reference, n=${n}`, async () => {
      const ctx = await testGpu();
      const g = randomF32(n, n, 8), u = randomF32(n, n + 1, 2);
      const out = upload(ctx, new Float32Array(n));
      await run(ctx, siluGate(ctx, { gate: upload(ctx, g), up: upload(ctx, u), out, n }));
      expect(closeTo(await download(ctx, out, n), siluGateRef(g, u), TOL)).toBeNull();
    });
  }
  it('stays finite for huge |gate| (no exp overflow)', async () => {
    const ctx = await testGpu();
    const g = Float32Array.from([-1e30, -1000, -100, -88.8, -89, 88.8, 100, 1000, 1e30, 0, -0]);
    const u = new Float32Array(g.length).fill(1.5);
    const out = upload(ctx, new Float32Array(g.length));
    await run(ctx, siluGate(ctx, { gate: upload(ctx, g), up: upload(ctx, u), out, n: g.length }));
    const got = await download(ctx, out, g.length);
    expect(Array.from(got).every(Number.isFinite)).toBe(true);
    expect(closeTo(got, siluGateRef(g, u), { atol: 1e-30, rtol: 2e-6 })).toBeNull();
    expect(siluRef(-1e30)).toBe(-0);
    expect(siluRef(1e30)).toBe(1e30);
  });
  it('rejects bad shapes before dispatch', async () => {
    const ctx = await testGpu();
    const a = upload(ctx, new Float32Array(8)), b = upload(ctx, new Float32Array(4)), c = upload(ctx, new Float32Array(8));
    expect(() => siluGate(ctx, { gate: a, up: b, out: c, n: 8 })).toThrow(ShapeError);
    expect(() => siluGate(ctx, { gate: a, up: b, out: c, n: 8 })).toThrow(/up.*\[8\]/);
    expect(() => siluGate(ctx, { gate: a, up: c, out: a, n: 8 })).toThrow(/alias/);
    expect(() => siluGate(ctx, { gate: a, up: c, out: c, n: 0 })).toThrow(/n = 0/);
  });
});
