import { describe, expect, it } from 'vitest';
import { ADAMW_DEFAULTS, adamwStepRef, gradNormRef } from '../../src/kernels/adamw.ts';

const fresh = (p: number[]) => ({ params: Float32Array.from(p), m: new Float32Array(p.length), v: new Float32Array(p.length), step: 0, skipped: 0 });

describe('AdamW CPU reference (torch.optim.AdamW + clip_grad_norm_)', () => {
  it('one step by hand: p=1, g=0.5, lr=0.1, wd=0.01, no clipping', () => {
    const r = adamwStepRef(fresh([1]), [0.5], 0.1, { ...ADAMW_DEFAULTS, weightDecay: 0.01, maxGradNorm: 0 });
    // decay: 1·(1 − 0.001) = 0.999; m = 0.05, v = 0.00025; bc1 = 0.1, bc2 = 0.001
    // update = (0.1/0.1)·0.05 / (sqrt(0.00025)/sqrt(0.001) + 1e-8) = 0.05 / 0.50000001
    expect(r.state.m[0]).toBeCloseTo(0.05, 7);
    expect(r.state.v[0]).toBeCloseTo(0.00025, 9);
    expect(r.state.params[0]).toBeCloseTo(0.999 - 0.05 / 0.50000001, 6);
    expect(r.state.step).toBe(1);
    expect(r.gradNorm).toBe(0.5);
  });

  it('clips by the global norm: g=[3,4] with max 1 scales by 1/(5+1e-6)', () => {
    const h = { ...ADAMW_DEFAULTS, weightDecay: 0, maxGradNorm: 1 };
    const r = adamwStepRef(fresh([0, 0]), [3, 4], 0.1, h);
    const c = 1 / (5 + 1e-6);
    expect(r.gradNorm).toBe(5);
    expect(r.state.m[0]).toBeCloseTo(0.1 * 3 * c, 7);
    expect(r.state.v[1]).toBeCloseTo(0.001 * (4 * c) ** 2, 9);
    // No clipping below the threshold: the same gradients with max 10 keep m = 0.1·g.
    expect(adamwStepRef(fresh([0, 0]), [3, 4], 0.1, { ...h, maxGradNorm: 10 }).state.m[0]).toBeCloseTo(0.3, 7);
  });

  it('a non-finite gradient skips: state unchanged, counted, step not advanced', () => {
    const s = adamwStepRef(fresh([1, 2]), [0.1, 0.2], 0.1, ADAMW_DEFAULTS).state;
    const r = adamwStepRef(s, [NaN, 0.2], 0.1, ADAMW_DEFAULTS);
    expect(r.skipped).toBe(true);
    expect(Array.from(r.state.params)).toEqual(Array.from(s.params));
    expect(Array.from(r.state.m)).toEqual(Array.from(s.m));
    expect(r.state).toMatchObject({ step: 1, skipped: 1 });
    expect(gradNormRef([Infinity, 1])).toBe(Infinity);
  });
});
