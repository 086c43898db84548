/** The engine's scheduler options: defaults, tuning overrides and their typed refusals. */
import { describe, expect, it } from 'vitest';
import { resolveScheduler } from '../../src/engine/limits.ts';
import { EngineOptionsError } from '../../src/engine/errors.ts';
import { defaultSchedulerConfig } from '../../src/scheduler/types.ts';

describe('resolveScheduler', () => {
  it('takes the defaults, overrides what tuning names, and budget 0 as no budget', () => {
    const { config } = resolveScheduler({ budgetMs: 0, tuning: { decodeStretch: Infinity, finetuneStarveMs: 500 } });
    expect(config).toEqual({ ...defaultSchedulerConfig('mace', Infinity), decodeStretch: Infinity, finetuneStarveMs: 500 });
  });

  it('refuses an unknown tuning setting, a non-number and a negative share or wait, naming the field', () => {
    const refused = (o: Parameters<typeof resolveScheduler>[0]) => {
      try {
        resolveScheduler(o);
      } catch (e) {
        expect(e).toBeInstanceOf(EngineOptionsError);
        return (e as Error).message;
      }
      throw new Error('accepted');
    };
    expect(refused({ tuning: { decodeStrech: 0.5 } as never })).toMatch(/scheduler\.tuning\.decodeStrech.*not a scheduler setting.*decodeStretch/);
    expect(refused({ tuning: { budgetMs: 3 } as never })).toMatch(/scheduler\.tuning\.budgetMs/);
    expect(refused({ tuning: { decodeStretch: '0.5' } as never })).toMatch(/scheduler\.tuning\.decodeStretch.*must be a number/);
    expect(refused({ tuning: { decodeStretch: -0.1 } })).toMatch(/scheduler\.tuning\.decodeStretch = -0\.1 must be >= 0/);
    expect(refused({ tuning: { finetuneStarveMs: -1 } })).toMatch(/scheduler\.tuning\.finetuneStarveMs/);
    expect(refused({ tuning: { finetuneShare: -1 } })).toMatch(/scheduler\.tuning\.finetuneShare/);
  });
});
