/**
 * KV pruning policies: which cached positions a sequence's attention keeps as it grows. Pure
 * bookkeeping (no GPU calls).
 *
 * - Sinks + window (StreamingLLM): a query at position q attends to positions p < sinks and
 *   q − window < p ≤ q. The rule is positional, so the attention kernels apply it as a mask
 *   (src/kernels/attention.ts) and a whole 16-token block can be freed once every position in it is
 *   out of reach of every later query (`deadBlocks`): memory saved, tokens never recomputed.
 * - Heavy hitters (H2O, Zhang et al. 2023): per layer and KV head, keep `recent` newest positions and
 *   the `budget − recent` older ones with the most attention accumulated so far (summed over the
 *   query heads of the group and over past queries); when a new position overflows the budget, the
 *   non-recent position with the least accumulated attention is evicted. The kept set differs per
 *   layer and head and depends on attention values, so it is not a positional mask: `HeavyHitters` is
 *   the exact bookkeeping, used by the CPU pruning experiment (bench/prune.ts); the GPU kernels do
 *   not implement it (they would need per-head gather lists and the attention sums read back).
 */
import { BLOCK_SIZE } from './layout.ts';

/** Attention sinks + recent window of one sequence (window counts the query's own position). */
export interface SinksWindow {
  sinks: number;
  window: number;
}

export class PruningError extends Error {
  readonly code = 'bad-kv-pruning';
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super(`kv pruning: ${field} ${detail}`);
    this.name = 'PruningError';
  }
}

/** Check a sinks/window pair (field names the request or option it came from). */
export function checkSinksWindow(w: SinksWindow, field: string): SinksWindow {
  if (!Number.isInteger(w.sinks) || w.sinks < 0) throw new PruningError(`${field}.sinks`, `= ${w.sinks} must be an integer >= 0`);
  if (!Number.isInteger(w.window) || w.window < 1) throw new PruningError(`${field}.window`, `= ${w.window} must be an integer >= 1 (the query's own position)`);
  return w;
}

/** Whether a query at `q` attends to position `p` under `w` (the kernels' mask). */
export function attends(p: number, q: number, w: SinksWindow): boolean {
  return p <= q && (p < w.sinks || p > q - w.window);
}

/**
 * Logical blocks of a sequence no query at `nextQuery` or later can attend to: every position of the
 * block is at or past `sinks` and at most nextQuery − window. Returns the block indices in [from, to).
 */
export function deadBlocks(nextQuery: number, w: SinksWindow, from = 0): number[] {
  const firstFree = Math.ceil(w.sinks / BLOCK_SIZE); // blocks holding a sink stay
  const reachable = nextQuery - w.window + 1; // positions >= this are still in some later window
  const lastDead = Math.floor(reachable / BLOCK_SIZE) - 1; // block b is dead when 16b + 15 < reachable
  const out: number[] = [];
  for (let b = Math.max(from, firstFree); b <= lastDead; b++) out.push(b);
  return out;
}

/**
 * H2O's kept sets for one sequence: per (layer, KV head) the positions kept, their accumulated
 * attention, and the eviction when a new position overflows the budget.
 */
export class HeavyHitters {
  /** Per (layer, kv head): kept positions in increasing order. */
  private readonly kept: number[][];
  /** Per (layer, kv head): accumulated attention by position. */
  private readonly score: Map<number, number>[];

  constructor(
    readonly groups: number,
    readonly budget: number,
    readonly recent: number,
  ) {
    if (!Number.isInteger(budget) || budget < 1) throw new PruningError('budget', `= ${budget} must be a positive integer`);
    if (!Number.isInteger(recent) || recent < 1 || recent > budget) throw new PruningError('recent', `= ${recent} must be an integer in [1, budget = ${budget}]`);
    this.kept = Array.from({ length: groups }, () => []);
    this.score = Array.from({ length: groups }, () => new Map());
  }

  /** Positions group `g` (layer × nKvHeads + head) attends to now. */
  positions(g: number): readonly number[] {
    return this.kept[g];
  }

  /** A new position enters every group (before its attention runs: a query sees itself). */
  add(position: number): void {
    for (let g = 0; g < this.groups; g++) {
      this.kept[g].push(position);
      this.score[g].set(position, 0);
    }
  }

  /** Attention weights of one query head over `positions(g)` (same order), accumulated. */
  accumulate(g: number, weights: ArrayLike<number>): void {
    const kept = this.kept[g];
    const s = this.score[g];
    for (let i = 0; i < kept.length; i++) s.set(kept[i], s.get(kept[i])! + weights[i]);
  }

  /** After a step's attention: evict, per group, the weakest non-recent position while over budget. */
  evict(newest: number): void {
    for (let g = 0; g < this.groups; g++) {
      const kept = this.kept[g];
      const s = this.score[g];
      while (kept.length > this.budget) {
        let worst = -1;
        for (let i = 0; i < kept.length; i++) {
          if (kept[i] > newest - this.recent) break; // the recent ones are never evicted (kept is sorted)
          if (worst < 0 || s.get(kept[i])! < s.get(kept[worst])!) worst = i;
        }
        if (worst < 0) break; // cannot happen with recent <= budget
        s.delete(kept[worst]);
        kept.splice(worst, 1);
      }
    }
  }
}
