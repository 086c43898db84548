/**
 * Priorities P(t) = base by kind + aging by waiting time (+ γ·L_DPO for fine-tuning). Running
 * decodes have no priority: they are always admitted first (stall-free batching).
 */
import type { FinetuneJobView, RequestView, SchedulerConfig } from './types.ts';

export function prefillPriority(r: RequestView, now: number, c: SchedulerConfig): number {
  return c.basePrefill + (c.agingPrefill * Math.max(0, now - r.arrivedAt)) / 1000;
}

/** A pair never trained counts with `freshLoss`, so new feedback is learnt first. */
export function finetunePriority(j: FinetuneJobView, now: number, c: SchedulerConfig): number {
  const loss = j.lastLoss === null || !Number.isFinite(j.lastLoss) ? c.freshLoss : j.lastLoss;
  return c.baseFinetune + (c.agingFinetune * Math.max(0, now - j.queuedAt)) / 1000 + c.gamma * loss;
}

/**
 * The job whose units may run: the started one (its activations are in the arena) or, when none
 * started, the highest priority among those with ready units (`fifo`: the first in queue order).
 * Ties go to the earlier job.
 */
export function pickJob(jobs: readonly FinetuneJobView[], now: number, c: SchedulerConfig, fifo: boolean): FinetuneJobView | null {
  const started = jobs.find((j) => j.started);
  if (started) return started.ready.length > 0 ? started : null;
  let best: FinetuneJobView | null = null;
  let bestP = -Infinity;
  for (const j of jobs) {
    if (j.ready.length === 0) continue;
    if (fifo) return j;
    const p = finetunePriority(j, now, c);
    if (p > bestP) {
      best = j;
      bestP = p;
    }
  }
  return best;
}
