import { describe, expect, it } from 'vitest';
import { rope, ropeInvFreq, ropeRef, uploadRopeInvFreq } from '../../src/kernels/rope.ts';
import { ShapeError } from '../../src/gpu/errors.ts';
import { closeTo, download, mulberry32, randomF32, run, testGpu, upload } from './gpu.ts';

const LLAMA32 = { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };

// Both sides rotate by the same f32 angle. The GPU reduces it by pi/2 in f32 (Cody-Waite, exact
// to ~1e-9 for angles below 2e5) and evaluates its own f32 sin/cos polynomials (~1 ulp); the
// reference uses f64 cos/sin of that angle. With inputs in [-2, 2] the outputs agree to a few
// 1e-7 at any position we test (up to 1e5; 2.4e-7 seen on SwiftShader): 1e-6 absolute.
const TOL = { atol: 1e-6, rtol: 0 };

function randomPositions(T: number, max: number, seed: number): Uint32Array {
  const r = mulberry32(seed);
  return Uint32Array.from({ length: T }, () => Math.floor(r() * max));
}

describe('rope', () => {
  const cases = [
    { T: 1, nHeads: 1, nKvHeads: 1, headDim: 2, maxPos: 10, theta: 10000, scaling: null },
    { T: 3, nHeads: 4, nKvHeads: 2, headDim: 8, maxPos: 100, theta: 10000, scaling: { rope_type: 'linear', factor: 2 } },
    { T: 7, nHeads: 3, nKvHeads: 1, headDim: 64, maxPos: 5000, theta: 500000, scaling: LLAMA32 },
    { T: 5, nHeads: 2, nKvHeads: 2, headDim: 64, maxPos: 100000, theta: 500000, scaling: LLAMA32 },
  ];
  for (const c of cases) {
    it(`matches the reference, T=${c.T} heads=${c.nHeads}/${c.nKvHeads} headDim=${c.headDim} positions < ${c.maxPos}`, async () => {
      const ctx = await testGpu();
      const shape = { T: c.T, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headDim };
      const q = randomF32(c.T * c.nHeads * c.headDim, c.T + c.headDim, 2);
      const k = randomF32(c.T * c.nKvHeads * c.headDim, c.T + c.headDim + 1, 2);
      const pos = randomPositions(c.T, c.maxPos, c.maxPos);
      pos[0] = c.maxPos - 1; // always test the largest position of the case
      const invFreq = ropeInvFreq(c.headDim, c.theta, c.scaling);
      const qb = upload(ctx, q), kb = upload(ctx, k);
      await run(ctx, rope(ctx, { q: qb, k: kb, positions: upload(ctx, pos), invFreq: uploadRopeInvFreq(ctx, invFreq), ...shape }));
      const want = ropeRef(q, k, pos, invFreq, shape);
      expect(closeTo(await download(ctx, qb, q.length), want.q, TOL, 'q')).toBeNull();
      expect(closeTo(await download(ctx, kb, k.length), want.k, TOL, 'k')).toBeNull();
    });
  }
  it('rejects bad shapes before dispatch', async () => {
    const ctx = await testGpu();
    const q = upload(ctx, new Float32Array(2 * 4 * 8)), k = upload(ctx, new Float32Array(2 * 2 * 8));
    const pos = upload(ctx, new Uint32Array(4)), inv = uploadRopeInvFreq(ctx, ropeInvFreq(8, 10000));
    const args = { q, k, positions: pos, invFreq: inv, T: 2, nHeads: 4, nKvHeads: 2, headDim: 8 };
    expect(() => rope(ctx, args)).not.toThrow();
    expect(() => rope(ctx, { ...args, nKvHeads: 4 })).toThrow(ShapeError);
    expect(() => rope(ctx, { ...args, nKvHeads: 4 })).toThrow(/k.*\[2, 4, 8\]/);
    expect(() => rope(ctx, { ...args, T: 5, nHeads: 1, nKvHeads: 1, headDim: 2 })).toThrow(/positions.*\[5\]/);
    expect(() => rope(ctx, { ...args, headDim: 7, nHeads: 1, nKvHeads: 1 })).toThrow(/headDim = 7/);
    expect(() => rope(ctx, { ...args, nHeads: 1, nKvHeads: 1, headDim: 16 })).toThrow(/invFreq.*\[8\]/);
  });
});
