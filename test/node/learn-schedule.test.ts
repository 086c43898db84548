import { describe, expect, it } from 'vitest';
import { lrAt, lrMultiplier } from '../../src/learn/schedule.ts';
import { HyperparameterError } from '../../src/learn/errors.ts';

describe('learning-rate schedules (transformers get_*_schedule_with_warmup)', () => {
  it('linear: warmup from 0, then linear decay to 0 at totalSteps', () => {
    const s = { kind: 'linear' as const, baseLr: 1e-3, warmupSteps: 4, totalSteps: 12 };
    expect([0, 1, 2, 3, 4].map((t) => lrMultiplier(s, t))).toEqual([0, 0.25, 0.5, 0.75, 1]);
    expect(lrMultiplier(s, 8)).toBe(0.5);
    expect(lrMultiplier(s, 12)).toBe(0);
    expect(lrMultiplier(s, 20)).toBe(0); // clamped, never negative
    expect(lrAt(s, 2)).toBeCloseTo(5e-4, 15);
  });

  it('constant with warmup, and no warmup at all', () => {
    expect(lrMultiplier({ kind: 'constant', baseLr: 1, warmupSteps: 2, totalSteps: 0 }, 1)).toBe(0.5);
    expect(lrMultiplier({ kind: 'constant', baseLr: 1, warmupSteps: 2, totalSteps: 0 }, 100)).toBe(1);
    expect(lrMultiplier({ kind: 'linear', baseLr: 1, warmupSteps: 0, totalSteps: 10 }, 0)).toBe(1);
  });

  it('cosine: half a wave from 1 to 0 after warmup', () => {
    const s = { kind: 'cosine' as const, baseLr: 2, warmupSteps: 2, totalSteps: 10 };
    expect(lrMultiplier(s, 2)).toBe(1);
    expect(lrMultiplier(s, 6)).toBeCloseTo(0.5, 15);
    expect(lrMultiplier(s, 10)).toBeCloseTo(0, 15);
    expect(lrAt(s, 6)).toBeCloseTo(1, 14);
  });

  it('refuses bad settings with the field named', () => {
    const s = { kind: 'linear' as const, baseLr: 1, warmupSteps: 1, totalSteps: 5 };
    expect(() => lrAt({ ...s, baseLr: -1 }, 0)).toThrow(HyperparameterError);
    expect(() => lrAt({ ...s, warmupSteps: 1.5 }, 0)).toThrow(/warmupSteps/);
    expect(() => lrAt(s, -1)).toThrow(/step/);
    expect(() => lrAt({ ...s, kind: 'exp' as never }, 0)).toThrow(/kind/);
  });
});
