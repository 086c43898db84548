/**
 * Performance-panel entries: the detail.devtools shape of Chrome's extensibility API, each kind's
 * planned share of the iteration laid end to end on its own track, steps ending at their record time,
 * worker → page clock mapping, and the bounded timeline buffer.
 */
import { performance as nodePerformance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import type { StatsBatch } from '../../src/scheduler/stats.ts';
import { DevtoolsOptionError } from '../../src/ui/devtools/errors.ts';
import { MEASURE_NAMES, PerformanceTracks, planTrackEntries, type MeasureTarget, type TrackEntryDetail } from '../../src/ui/devtools/tracks.ts';
import { iteration, request, session, step } from './devtools-fixtures.ts';

/** Records every measure and clear, with a page whose timeOrigin is 500. */
class Recorder implements MeasureTarget {
  readonly timeOrigin = 500;
  readonly measures: { name: string; start: number; end: number; detail: TrackEntryDetail }[] = [];
  readonly cleared: string[] = [];
  measure(name: string, options: { start: number; end: number; detail: TrackEntryDetail }): void {
    this.measures.push({ name, ...options });
  }
  clearMeasures(name?: string): void {
    this.cleared.push(name ?? '*');
  }
}

const mixed: StatsBatch = {
  timeOrigin: 1000,
  records: [
    session(),
    // Timestamp-timed: the inference pass's 4 GPU ms split between prefill and decode by plan (1 : 3).
    iteration({ iteration: 7, t: 100, prefillTokens: 64, decodeRows: 3, plannedMs: { prefill: 2, decode: 6, finetune: 0 }, measuredMs: 4, timing: 'timestamp', gpuMs: { inference: 4, finetune: null }, kvBlocksUsed: 9, kvBlocksTotal: 64 }),
    request({ t: 105 }),
    iteration({ iteration: 8, t: 110, decodeRows: 3, finetuneUnits: 2, plannedMs: { prefill: 0, decode: 1, finetune: 3 }, measuredMs: 20, budgetMs: 16 }),
    step({ t: 140, step: 5, durationMs: 30, adapterVersion: 4, loss: 0.25 }),
  ],
};

describe('planTrackEntries', () => {
  it('one entry per kind present, laid end to end within the measured time, on the page clock', () => {
    const entries = planTrackEntries(mixed, 500); // page time = t + 1000 - 500
    expect(entries.map((e) => [e.name, e.detail.devtools.track, e.start, e.end])).toEqual([
      [MEASURE_NAMES.prefill, 'prefill', 600, 601],
      [MEASURE_NAMES.decode, 'decode', 601, 604],
      [MEASURE_NAMES.decode, 'decode', 610, 615],
      [MEASURE_NAMES.finetune, 'fine-tune', 615, 630],
      [MEASURE_NAMES.step, 'fine-tune', 610, 640],
    ]);
  });

  it('detail.devtools has the extensibility API’s shape', () => {
    const [prefill, , decode, finetune, dpo] = planTrackEntries(mixed, 500);
    expect(prefill.detail).toEqual({
      devtools: {
        dataType: 'track-entry',
        track: 'prefill',
        trackGroup: 'mace-web',
        color: 'primary',
        properties: [
          ['iteration', '7'],
          ['tokens', '64'],
          ['share of measured', '1.0 ms'],
          ['planned', '2.0 ms'],
          ['iteration measured', '4.0 ms (timestamp)'],
          ['budget', '16 ms'],
          ['over budget', 'no'],
          ['slices', '1'],
          ['KV blocks', '9/64'],
        ],
        tooltipText: 'prefill · 64 tokens · 1.0 ms (iteration 7)',
      },
    });
    expect(decode.detail.devtools.color).toBe('secondary');
    expect(decode.detail.devtools.properties).toContainEqual(['over budget', 'yes']);
    expect(finetune.detail.devtools.color).toBe('tertiary');
    expect(dpo.detail.devtools.color).toBe('tertiary-dark');
    expect(dpo.detail.devtools.tooltipText).toBe('DPO step 5 · loss 0.2500 · feedback v4');
    expect(dpo.detail.devtools.properties).toContainEqual(['adapter', 'feedback v4']);
  });

  it('a skipped step is red; an iteration with nothing planned still shows the kinds it ran', () => {
    const entries = planTrackEntries({ timeOrigin: 0, records: [step({ t: 50, skipped: true, loss: NaN, durationMs: 10 }), iteration({ t: 60, decodeRows: 1, measuredMs: 2 })] }, 0);
    expect(entries[0].detail.devtools.color).toBe('error');
    expect(entries[0].detail.devtools.tooltipText).toBe('DPO step 1 skipped (non-finite gradients)');
    expect(entries[1]).toMatchObject({ name: MEASURE_NAMES.decode, start: 60, end: 60 }); // no planned share to draw
    expect(entries).toHaveLength(2);
  });

  it('drops entries before the page’s time origin and clamps one that straddles it', () => {
    const entries = planTrackEntries({ timeOrigin: 0, records: [iteration({ t: 10, decodeRows: 1, plannedMs: { prefill: 0, decode: 1, finetune: 0 }, measuredMs: 5 }), step({ t: 30, durationMs: 40 })] }, 20);
    expect(entries.map((e) => [e.name, e.start, e.end])).toEqual([[MEASURE_NAMES.step, 0, 10]]);
  });

  it('refuses a malformed batch, naming the field', () => {
    expect(() => planTrackEntries({ timeOrigin: 0, records: [{ ...iteration(), slices: null }] } as unknown as StatsBatch, 0)).toThrow(/records\[0\]\.slices/);
  });
});

describe('PerformanceTracks', () => {
  it('measures on the target’s clock and clears only its own names when the buffer bound is reached', () => {
    const target = new Recorder();
    const tracks = new PerformanceTracks({ target, maxBuffered: 6 });
    expect(tracks.emit(mixed)).toBe(5);
    expect(target.measures[0]).toMatchObject({ name: MEASURE_NAMES.prefill, start: 600, end: 601 });
    expect(tracks.buffered).toBe(5);
    expect(target.cleared).toEqual([]);
    tracks.emit(mixed); // 5 + 5 > 6: ours are cleared first
    expect(target.cleared.sort()).toEqual(Object.values(MEASURE_NAMES).sort());
    expect(tracks.buffered).toBe(5);
    expect(target.measures).toHaveLength(10);
  });

  it('refuses a bad bound or a target without measure()', () => {
    expect(() => new PerformanceTracks({ target: new Recorder(), maxBuffered: 0 })).toThrow(DevtoolsOptionError);
    expect(() => new PerformanceTracks({ target: {} as MeasureTarget })).toThrow(/target/);
  });

  it('works with a real Performance timeline (Node’s), detail included', () => {
    const tracks = new PerformanceTracks({ target: nodePerformance as unknown as MeasureTarget });
    const now = nodePerformance.now();
    tracks.emit({ timeOrigin: nodePerformance.timeOrigin, records: [iteration({ t: now, decodeRows: 2, plannedMs: { prefill: 0, decode: 3, finetune: 0 }, measuredMs: 3 })] });
    const [m] = nodePerformance.getEntriesByName(MEASURE_NAMES.decode, 'measure') as PerformanceMeasure[];
    expect(m.startTime).toBeCloseTo(now, 6);
    expect(m.duration).toBeCloseTo(3, 6);
    expect((m.detail as TrackEntryDetail).devtools.trackGroup).toBe('mace-web');
    tracks.clear();
    expect(nodePerformance.getEntriesByName(MEASURE_NAMES.decode, 'measure')).toEqual([]);
  });
});
