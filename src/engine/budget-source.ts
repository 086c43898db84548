/**
 * Which budget an engine plans under (SchedulerOptions.budget): the page's frames through a
 * FrameBudget (src/scheduler/frame-budget.ts), with `budgetMs` as its fallback, or `budgetMs` alone.
 * Precedence: an explicit `budget` wins; without one, an explicit `budgetMs` means 'constant' (a
 * caller who chose a number keeps it: benchmarks, tests) and no `budgetMs` means 'frames'.
 */
import { FrameBudget, FrameBudgetOptionError } from '../scheduler/frame-budget.ts';
import { EngineOptionsError } from './errors.ts';
import type { SchedulerOptions } from './types.ts';

/** The engine's FrameBudget, or null for a constant budget; bad options name their field. */
export function frameBudgetFor(o: SchedulerOptions | undefined, fallbackMs: number): FrameBudget | null {
  const mode = o?.budget ?? (o?.budgetMs === undefined ? 'frames' : 'constant');
  if (mode !== 'frames' && mode !== 'constant') throw new EngineOptionsError('scheduler.budget', `= ${JSON.stringify(mode)} is not 'frames' or 'constant'`);
  if (mode === 'constant') return null;
  if (o?.frames !== undefined && (typeof o.frames !== 'object' || o.frames === null)) throw new EngineOptionsError('scheduler.frames', 'must be an object of FrameBudgetOptions');
  try {
    return new FrameBudget(fallbackMs, o?.frames);
  } catch (e) {
    if (e instanceof FrameBudgetOptionError) throw new EngineOptionsError(`scheduler.frames.${e.option}`, e.detail);
    throw e;
  }
}
