/**
 * Exact percentiles over a window of samples: a sorted copy and the nearest-rank definition (the
 * smallest sample with at least p% of the window at or below it). Every reported value is a latency
 * that really happened; nothing is interpolated or estimated by a sketch.
 */

/** Nearest-rank percentile of an ascending array; p in (0, 100]. */
export function percentileOfSorted(sorted: ArrayLike<number>, p: number): number {
  if (!(p > 0 && p <= 100)) throw new RangeError(`percentile ${p} outside (0, 100]`);
  const n = sorted.length;
  if (n === 0) throw new RangeError('percentile of an empty window');
  const rank = Math.ceil((p / 100) * n); // 1-based
  return sorted[Math.min(n, Math.max(1, rank)) - 1];
}

export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
}

/** p50/p95/p99 of a window (not modified), or null when it holds no sample. */
export function windowPercentiles(values: ArrayLike<number>): Percentiles | null {
  if (values.length === 0) return null;
  const sorted = Float64Array.from(values).sort(); // typed-array sort is numeric
  return { p50: percentileOfSorted(sorted, 50), p95: percentileOfSorted(sorted, 95), p99: percentileOfSorted(sorted, 99) };
}
