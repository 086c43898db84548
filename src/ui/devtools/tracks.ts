/**
 * Chrome DevTools Performance-panel tracks (extensibility API, Chrome 128+): each iteration's GPU time
 * becomes one `performance.measure` per task kind on the "prefill", "decode" and "fine-tune" tracks of
 * the "mace-web" track group, and each DPO optimizer step one more on "fine-tune". Browsers without
 * the API keep the measures as plain user timings.
 *
 * Placement: an iteration's measured time starts at its plan time `t`; the kinds present follow one
 * another inside it (prefill, decode, fine-tune), each lasting its planned share of the measured time
 * (the same split the panel's GPU chart stacks). A step ends at its record's time and lasts durationMs.
 * Times come from the worker's clock: pageTime = t + batch.timeOrigin - performance.timeOrigin.
 */
import type { FinetuneStats, IterationStats, StatsBatch, TaskKind } from '../../scheduler/stats.ts';
import { splitMeasured } from './aggregate.ts';
import { DevtoolsOptionError } from './errors.ts';
import { formatMs } from './summary.ts';
import { validateStatsBatch } from './validate.ts';

/** The DevTools palette (named tokens only; arbitrary CSS colours are not accepted). */
export type DevToolsColor =
  | 'primary' | 'primary-light' | 'primary-dark'
  | 'secondary' | 'secondary-light' | 'secondary-dark'
  | 'tertiary' | 'tertiary-light' | 'tertiary-dark'
  | 'error';

export type TrackName = 'prefill' | 'decode' | 'fine-tune';
export const TRACK_GROUP = 'mace-web';

export interface TrackEntryDetail {
  devtools: {
    dataType: 'track-entry';
    track: TrackName;
    trackGroup: typeof TRACK_GROUP;
    color: DevToolsColor;
    /** Key/value rows of the entry's summary in DevTools. */
    properties: [string, string][];
    tooltipText: string;
  };
}

/** Measure names, fixed so that our own entries can be cleared by name (and only ours). */
export const MEASURE_NAMES = {
  prefill: 'mace-web prefill',
  decode: 'mace-web decode',
  finetune: 'mace-web fine-tune',
  step: 'mace-web DPO step',
} as const;

/** One measure to emit: times on the page clock (ms since performance.timeOrigin). */
export interface TrackEntry {
  name: string;
  start: number;
  end: number;
  detail: TrackEntryDetail;
}

const KINDS: { kind: TaskKind; track: TrackName; color: DevToolsColor; count: keyof IterationStats; unit: string }[] = [
  { kind: 'prefill', track: 'prefill', color: 'primary', count: 'prefillTokens', unit: 'tokens' },
  { kind: 'decode', track: 'decode', color: 'secondary', count: 'decodeRows', unit: 'rows' },
  { kind: 'finetune', track: 'fine-tune', color: 'tertiary', count: 'finetuneUnits', unit: 'units' },
];

function detail(track: TrackName, color: DevToolsColor, properties: [string, string][], tooltipText: string): TrackEntryDetail {
  return { devtools: { dataType: 'track-entry', track, trackGroup: TRACK_GROUP, color, properties, tooltipText } };
}

function iterationEntries(r: IterationStats, start: number, out: TrackEntry[]): void {
  const share = splitMeasured(r);
  const overBudget = r.measuredMs > r.budgetMs;
  let cursor = start;
  for (const k of KINDS) {
    const count = r[k.count] as number;
    if (count === 0 && r.plannedMs[k.kind] === 0) continue; // kind absent from this iteration
    const ms = share[k.kind];
    const properties: [string, string][] = [
      ['iteration', String(r.iteration)],
      [k.unit, String(count)],
      ['share of measured', formatMs(ms)],
      ['planned', formatMs(r.plannedMs[k.kind])],
      ['iteration measured', `${formatMs(r.measuredMs)} (${r.timing})`],
      ['budget', Number.isFinite(r.budgetMs) ? formatMs(r.budgetMs) : 'none'],
      ['over budget', overBudget ? 'yes' : 'no'],
      ['slices', String(r.slices)],
      ['KV blocks', `${r.kvBlocksUsed}/${r.kvBlocksTotal}`],
    ];
    out.push({
      name: MEASURE_NAMES[k.kind],
      start: cursor,
      end: cursor + ms,
      detail: detail(k.track, k.color, properties, `${k.track} · ${count} ${k.unit} · ${formatMs(ms)} (iteration ${r.iteration})`),
    });
    cursor += ms;
  }
}

function stepEntry(r: FinetuneStats, end: number): TrackEntry {
  const properties: [string, string][] = [
    ['step', String(r.step)],
    ['adapter', `${r.adapter} v${r.adapterVersion}`],
    ['loss', String(r.loss)],
    ['rewards/accuracies', String(r['rewards/accuracies'])],
    ['rewards/margins', String(r['rewards/margins'])],
    ['grad_norm', String(r.grad_norm)],
    ['learning_rate', String(r.learning_rate)],
    ['skipped', r.skipped ? 'yes' : 'no'],
  ];
  const tip = r.skipped ? `DPO step ${r.step} skipped (non-finite gradients)` : `DPO step ${r.step} · loss ${r.loss.toFixed(4)} · ${r.adapter} v${r.adapterVersion}`;
  return { name: MEASURE_NAMES.step, start: end - r.durationMs, end, detail: detail('fine-tune', r.skipped ? 'error' : 'tertiary-dark', properties, tip) };
}

/**
 * The measures a batch maps to, on the clock of a page whose performance.timeOrigin is
 * `pageTimeOrigin`. Entries that end before the page's time origin (a replay of an older trace) are
 * dropped; one that straddles it starts at 0 (performance.measure refuses negative times).
 */
export function planTrackEntries(batch: StatsBatch, pageTimeOrigin: number): TrackEntry[] {
  validateStatsBatch(batch);
  const offset = batch.timeOrigin - pageTimeOrigin;
  const out: TrackEntry[] = [];
  for (const r of batch.records) {
    if (r.type === 'iteration') iterationEntries(r, r.t + offset, out);
    else if (r.type === 'finetune') out.push(stepEntry(r, r.t + offset));
  }
  return out.filter((e) => e.end >= 0).map((e) => (e.start < 0 ? { ...e, start: 0 } : e));
}

/** The part of `Performance` the tracks use (a page's `performance`, or a recorder in tests). */
export interface MeasureTarget {
  readonly timeOrigin: number;
  measure(name: string, options: { start: number; end: number; detail: TrackEntryDetail }): unknown;
  clearMeasures(name?: string): void;
}

export interface PerformanceTracksOptions {
  target?: MeasureTarget;
  /**
   * Our measures allowed in the page's performance timeline before we clear them (default 3000). A
   * DevTools recording receives each measure when it is made, so clearing the timeline buffer does not
   * remove anything from a trace; it only stops the page's entry list from growing without bound.
   */
  maxBuffered?: number;
}

/** Emits batches as Performance-panel entries and keeps the page's timeline buffer bounded. */
export class PerformanceTracks {
  private readonly target: MeasureTarget;
  readonly maxBuffered: number;
  private count = 0;

  constructor(options: PerformanceTracksOptions = {}) {
    const target = options.target ?? (globalThis.performance as unknown as MeasureTarget | undefined);
    if (!target || typeof target.measure !== 'function') throw new DevtoolsOptionError('target', 'needs a Performance with measure() and clearMeasures()');
    this.target = target;
    const max = options.maxBuffered ?? 3000;
    if (!Number.isInteger(max) || max < 1) throw new DevtoolsOptionError('maxBuffered', `must be an integer ≥ 1, got ${max}`);
    this.maxBuffered = max;
  }

  /** Our measures currently in the timeline buffer (as far as we made and cleared them). */
  get buffered(): number {
    return this.count;
  }

  /** Emits the batch's entries; returns how many. */
  emit(batch: StatsBatch): number {
    const entries = planTrackEntries(batch, this.target.timeOrigin);
    if (this.count + entries.length > this.maxBuffered) this.clear();
    for (const e of entries) this.target.measure(e.name, { start: e.start, end: e.end, detail: e.detail });
    this.count += entries.length;
    return entries.length;
  }

  /** Removes every measure this module names from the page's timeline buffer. */
  clear(): void {
    for (const name of Object.values(MEASURE_NAMES)) this.target.clearMeasures(name);
    this.count = 0;
  }
}

let shared: PerformanceTracks | null = null;

/** Emits a batch on this page's own `performance` (one shared buffer bound); returns the entries made. */
export function emitPerformanceTracks(batch: StatsBatch): number {
  shared ??= new PerformanceTracks();
  return shared.emit(batch);
}
