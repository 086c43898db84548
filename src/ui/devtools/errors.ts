/**
 * Typed errors of the devtools panel. Stats arrive from another thread (or a replayed trace file), so a
 * malformed record is reported with the exact field path (`records[3].plannedMs.decode`) instead of
 * turning into NaN on a chart.
 */

/** A StatsBatch (or one of its records) that does not match src/scheduler/stats.ts. */
export class StatsInputError extends Error {
  readonly code = 'bad-stats-input';
  constructor(
    /** Path of the offending field inside the batch, e.g. `records[2].measuredMs`. */
    readonly field: string,
    detail: string,
  ) {
    super(`stats batch: ${field} ${detail}`);
    this.name = 'StatsInputError';
  }
}

/** A panel or aggregator option out of range (capacity 0, negative window...): names the option. */
export class DevtoolsOptionError extends Error {
  readonly code = 'bad-devtools-option';
  constructor(
    readonly option: string,
    detail: string,
  ) {
    super(`devtools option ${option} ${detail}`);
    this.name = 'DevtoolsOptionError';
  }
}
