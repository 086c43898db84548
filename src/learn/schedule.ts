/**
 * Learning-rate schedules with linear warmup, as transformers' get_*_schedule_with_warmup (the
 * LambdaLR multiplier times the base lr). `step` counts scheduler steps taken before this optimizer
 * step, so the first update uses step 0: with warmup that lr is 0, exactly as in HF's Trainer.
 *
 *   warmup (step < warmupSteps): lr · step / max(1, warmupSteps)
 *   'constant': lr
 *   'linear':   lr · max(0, (total − step) / max(1, total − warmup))
 *   'cosine':   lr · max(0, ½(1 + cos(π · 2·cycles · progress))), progress = (step − warmup)/max(1, total − warmup)
 */
import { HyperparameterError } from './errors.ts';

export type ScheduleKind = 'constant' | 'linear' | 'cosine';

export interface LrSchedule {
  kind: ScheduleKind;
  baseLr: number;
  warmupSteps: number;
  /** Total optimizer steps (needed by 'linear' and 'cosine'; ignored by 'constant'). */
  totalSteps: number;
  /** Cosine cycles (HF default 0.5: one half-wave from lr down to 0). */
  numCycles?: number;
}

export function validateSchedule(s: LrSchedule): void {
  if (!(Number.isFinite(s.baseLr) && s.baseLr >= 0)) throw new HyperparameterError('schedule.baseLr', `= ${s.baseLr}; it must be a finite number >= 0`);
  if (!(Number.isInteger(s.warmupSteps) && s.warmupSteps >= 0)) throw new HyperparameterError('schedule.warmupSteps', `= ${s.warmupSteps}; it must be an integer >= 0`);
  if (!(Number.isInteger(s.totalSteps) && s.totalSteps >= 0)) throw new HyperparameterError('schedule.totalSteps', `= ${s.totalSteps}; it must be an integer >= 0`);
  if (!['constant', 'linear', 'cosine'].includes(s.kind)) throw new HyperparameterError('schedule.kind', `'${String(s.kind)}' is not constant, linear or cosine`);
  const cycles = s.numCycles ?? 0.5;
  if (!(Number.isFinite(cycles) && cycles > 0)) throw new HyperparameterError('schedule.numCycles', `= ${cycles}; it must be a finite number > 0`);
}

/** The multiplier of the base lr at scheduler step `step` (HF's lr_lambda). */
export function lrMultiplier(s: LrSchedule, step: number): number {
  validateSchedule(s);
  if (!(Number.isInteger(step) && step >= 0)) throw new HyperparameterError('step', `= ${step}; it must be an integer >= 0`);
  if (step < s.warmupSteps) return step / Math.max(1, s.warmupSteps);
  if (s.kind === 'constant') return 1;
  const rest = Math.max(1, s.totalSteps - s.warmupSteps);
  if (s.kind === 'linear') return Math.max(0, (s.totalSteps - step) / rest);
  const progress = (step - s.warmupSteps) / rest;
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 2 * (s.numCycles ?? 0.5) * progress)));
}

/** The learning rate of the optimizer step that follows `step` scheduler steps. */
export function lrAt(s: LrSchedule, step: number): number {
  return s.baseLr * lrMultiplier(s, step);
}
