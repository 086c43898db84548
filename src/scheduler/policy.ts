/**
 * When fine-tuning may run, per policy (the planner's `finetuneAllowed`). Explicit state, no
 * clock of its own: the engine passes `now` and the counts each iteration.
 *
 * - mace, sync: whenever pairs are pending (sync then runs them before any inference).
 * - inference-only: never.
 * - periodic (as Ekya): windows. A window opens every `periodMs` or as soon as `pairsTrigger`
 *   pairs are pending, and stays open until the steps pending at its opening are done; inside it,
 *   fine-tuning takes only what inference leaves.
 */
import type { PolicyName } from './stats.ts';

export interface PeriodicOptions {
  /** A window opens at most this often when fewer than `pairsTrigger` pairs are pending (ms). */
  periodMs: number;
  /** ...or as soon as this many steps are pending. */
  pairsTrigger: number;
}

export const DEFAULT_PERIODIC: PeriodicOptions = { periodMs: 30_000, pairsTrigger: 8 };

export const POLICIES: readonly PolicyName[] = ['mace', 'inference-only', 'periodic', 'sync'];

export function isPolicy(x: unknown): x is PolicyName {
  return typeof x === 'string' && (POLICIES as readonly string[]).includes(x);
}

export class FinetuneGate {
  private windowOpen = false;
  /** Steps done when the window must close. */
  private closeAtSteps = 0;
  private lastWindowEnd: number;

  constructor(
    readonly policy: PolicyName,
    readonly periodic: PeriodicOptions = DEFAULT_PERIODIC,
    start = 0,
  ) {
    this.lastWindowEnd = start;
  }

  /** May fine-tune units run now? `pending`: steps queued; `stepsDone`: steps finished so far. */
  allowed(now: number, pending: number, stepsDone: number): boolean {
    if (this.policy === 'inference-only') return false;
    if (this.policy !== 'periodic') return pending > 0;
    if (this.windowOpen && (stepsDone >= this.closeAtSteps || pending === 0)) {
      this.windowOpen = false;
      this.lastWindowEnd = now;
    }
    if (!this.windowOpen && pending > 0 && (pending >= this.periodic.pairsTrigger || now - this.lastWindowEnd >= this.periodic.periodMs)) {
      this.windowOpen = true;
      this.closeAtSteps = stepsDone + pending;
    }
    return this.windowOpen;
  }

  get open(): boolean {
    return this.windowOpen;
  }
}
