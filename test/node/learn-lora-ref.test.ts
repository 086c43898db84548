import { describe, expect, it } from 'vitest';
import { loraBackwardRef, loraForwardRef, loraScale } from '../../src/kernels/lora.ts';
import { ShapeError } from '../../src/gpu/errors.ts';
import { randomF32 } from '../util/random.ts';

describe('LoRA CPU references', () => {
  it('forward by hand: x=[1,2], A=[[1,0],[0,1]] (r=2), B=[[1,2],[3,4],[5,6]], scale 0.5', () => {
    const d = loraForwardRef(new Float32Array([1, 2]), new Float32Array([1, 0, 0, 1]), new Float32Array([1, 2, 3, 4, 5, 6]), 1, 2, 3, 2, 0.5);
    // h = [1, 2]; h·Bᵀ = [5, 11, 17]; × 0.5
    expect(Array.from(d)).toEqual([2.5, 5.5, 8.5]);
  });

  it('PEFT scaling: alpha/r, alpha/sqrt(r) with rsLoRA', () => {
    expect(loraScale(8, 16, false)).toBe(2);
    expect(loraScale(16, 16, true)).toBe(4);
  });

  it('backward matches central finite differences of L = Σ dy ⊙ forward', () => {
    const M = 3, inDim = 5, outDim = 4, r = 2, scale = 1.5;
    const x = randomF32(M * inDim, 1), A = randomF32(r * inDim, 2), B = randomF32(outDim * r, 3), dy = randomF32(M * outDim, 4);
    const { dx, dA, dB } = loraBackwardRef(x, A, B, dy, M, inDim, outDim, r, scale);
    // Loss in f64 from the f32 forward: perturb one entry by ±eps (f32 arrays: eps big enough to be representable).
    const loss = (xx: Float32Array, AA: Float32Array, BB: Float32Array) => loraForwardRef(xx, AA, BB, M, inDim, outDim, r, scale).reduce((s, v, i) => s + v * dy[i], 0);
    const eps = 1e-2;
    const fd = (arr: Float32Array, i: number, f: () => number) => {
      const keep = arr[i];
      arr[i] = keep + eps;
      const up = f();
      arr[i] = keep - eps;
      const down = f();
      arr[i] = keep;
      return (up - down) / (2 * eps);
    };
    const f = () => loss(x, A, B);
    // The loss is bilinear in each of x, A, B separately: central differences are exact up to f32 rounding.
    for (let i = 0; i < x.length; i++) expect(dx[i]).toBeCloseTo(fd(x, i, f), 3);
    for (let i = 0; i < A.length; i++) expect(dA[i]).toBeCloseTo(fd(A, i, f), 3);
    for (let i = 0; i < B.length; i++) expect(dB[i]).toBeCloseTo(fd(B, i, f), 3);
  });

  it('refuses arrays shorter than their shapes', () => {
    expect(() => loraForwardRef(new Float32Array(3), new Float32Array(4), new Float32Array(6), 2, 2, 3, 2, 1)).toThrow(ShapeError);
    expect(() => loraBackwardRef(new Float32Array(4), new Float32Array(4), new Float32Array(6), new Float32Array(5), 2, 2, 3, 2, 1)).toThrow(/dy/);
  });
});
