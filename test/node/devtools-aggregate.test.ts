/**
 * The panel's pure model: rings stay bounded, percentiles are exact nearest-rank values of the window,
 * GPU time splits by planned share (or by kind when timestamp-timed), the cost model's predicted vs
 * measured ms per kind and its median error follow the timing's rules, worker times move onto the page
 * clock, the decode rate follows its window, and the chart series / summary text read what was ingested.
 */
import { describe, expect, it } from 'vitest';
import { StatsAggregator, predictedVsMeasured, splitMeasured } from '../../src/ui/devtools/aggregate.ts';
import { DevtoolsOptionError } from '../../src/ui/devtools/errors.ts';
import { percentileOfSorted, windowPercentiles } from '../../src/ui/devtools/percentile.ts';
import { ColumnRing } from '../../src/ui/devtools/ring.ts';
import { adapterSeries, costSeries, dpoSeries, frameSeries, gpuSeries, kvSeries, latencySeries, queueSeries } from '../../src/ui/devtools/series.ts';
import { describeCharts, formatPercent, formatSummaryLine, summarize } from '../../src/ui/devtools/summary.ts';
import { iteration, request, session, step } from './devtools-fixtures.ts';

const agg = (options = {}) => new StatsAggregator({ pageTimeOrigin: 0, ...options });

describe('ColumnRing', () => {
  it('keeps the newest rows in order and counts what it dropped', () => {
    const r = new ColumnRing(['a', 'b'] as const, 3);
    for (let i = 1; i <= 5; i++) r.push({ a: i, b: 10 * i });
    expect(r.length).toBe(3);
    expect(r.dropped).toBe(2);
    expect(r.read('a')).toEqual([3, 4, 5]);
    expect(r.read('b')).toEqual([30, 40, 50]);
    expect(r.get('a', 0)).toBe(3);
    expect(r.last('b')).toBe(50);
    expect(() => r.get('a', 3)).toThrow(RangeError);
    r.clear();
    expect(r.length).toBe(0);
    expect(r.last('a')).toBeUndefined();
  });

  it('refuses a capacity that is not a positive integer, naming the option', () => {
    expect(() => new ColumnRing(['a'] as const, 0, 'iterations')).toThrow(DevtoolsOptionError);
    expect(() => new ColumnRing(['a'] as const, 2.5, 'iterations')).toThrow(/iterations/);
    expect(() => agg({ tbtSamples: -1 })).toThrow(/tbtSamples/);
    expect(() => agg({ rateWindowMs: 0 })).toThrow(/rateWindowMs/);
  });
});

describe('percentiles (nearest rank, exact)', () => {
  it('of 1..100 are the 50th, 95th and 99th values', () => {
    const values = Array.from({ length: 100 }, (_, i) => 100 - i); // unsorted on purpose
    expect(windowPercentiles(values)).toEqual({ p50: 50, p95: 95, p99: 99 });
    expect(values[0]).toBe(100); // the window itself is not sorted in place
  });

  it('of ten values: rank ceil(p·n/100)', () => {
    const sorted = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    expect(percentileOfSorted(sorted, 50)).toBe(5);
    expect(percentileOfSorted(sorted, 95)).toBe(10);
    expect(percentileOfSorted(sorted, 10)).toBe(1);
    expect(percentileOfSorted(sorted, 11)).toBe(2);
    expect(windowPercentiles([7])).toEqual({ p50: 7, p95: 7, p99: 7 });
    expect(windowPercentiles([])).toBeNull();
    expect(() => percentileOfSorted(sorted, 0)).toThrow(RangeError);
  });
});

describe('GPU time split', () => {
  it('scales each kind’s planned time to the measured time', () => {
    expect(splitMeasured({ plannedMs: { prefill: 2, decode: 6, finetune: 0 }, measuredMs: 4 })).toEqual({ prefill: 1, decode: 3, finetune: 0, unattributed: 0 });
    expect(splitMeasured({ plannedMs: { prefill: 1, decode: 1, finetune: 2 }, measuredMs: 8 })).toEqual({ prefill: 2, decode: 2, finetune: 4, unattributed: 0 });
  });

  it('time with nothing planned belongs to no kind', () => {
    expect(splitMeasured({ plannedMs: { prefill: 0, decode: 0, finetune: 0 }, measuredMs: 3 })).toEqual({ prefill: 0, decode: 0, finetune: 0, unattributed: 3 });
  });

  it('with GPU ms per kind: fine-tune is its own, the inference pass splits by prefill : decode planned', () => {
    expect(splitMeasured({ plannedMs: { prefill: 2, decode: 6, finetune: 3 }, measuredMs: 7, gpuMs: { inference: 4, finetune: 3 } })).toEqual({ prefill: 1, decode: 3, finetune: 3, unattributed: 0 });
    expect(splitMeasured({ plannedMs: { prefill: 0, decode: 0, finetune: 1 }, measuredMs: 2, gpuMs: { inference: null, finetune: 2 } })).toEqual({ prefill: 0, decode: 0, finetune: 2, unattributed: 0 });
    // Inference time with no prefill or decode planned, and time outside both kinds' passes: no kind.
    expect(splitMeasured({ plannedMs: { prefill: 0, decode: 0, finetune: 0 }, measuredMs: 2, gpuMs: { inference: 1.5, finetune: null } })).toEqual({ prefill: 0, decode: 0, finetune: 0, unattributed: 2 });
  });
});

describe('predicted vs measured per kind', () => {
  const pm = (r: Parameters<typeof iteration>[0]) => predictedVsMeasured(iteration(r));

  it('timestamp timing: each kind’s own GPU ms, whatever else ran', () => {
    expect(pm({ decodeRows: 4, finetuneUnits: 2, plannedMs: { prefill: 0, decode: 3, finetune: 2 }, measuredMs: 6, timing: 'timestamp', gpuMs: { inference: 4, finetune: 2 } })).toEqual({
      inference: { predicted: 3, measured: 4 },
      finetune: { predicted: 2, measured: 2 },
    });
    expect(pm({ prefillTokens: 32, decodeRows: 1, plannedMs: { prefill: 2, decode: 1, finetune: 0 }, measuredMs: 2, timing: 'timestamp', gpuMs: { inference: 2, finetune: null }, slices: 3 })).toEqual({
      inference: { predicted: 3, measured: 2 },
      finetune: { predicted: null, measured: null },
    });
  });

  it('wall timing: measured only for an iteration of one kind in one submission', () => {
    expect(pm({ decodeRows: 2, plannedMs: { prefill: 0, decode: 1, finetune: 0 }, measuredMs: 1.25 })).toEqual({ inference: { predicted: 1, measured: 1.25 }, finetune: { predicted: null, measured: null } });
    expect(pm({ finetuneUnits: 3, plannedMs: { prefill: 0, decode: 0, finetune: 4 }, measuredMs: 5 })).toEqual({ inference: { predicted: null, measured: null }, finetune: { predicted: 4, measured: 5 } });
    expect(pm({ decodeRows: 2, finetuneUnits: 1, plannedMs: { prefill: 0, decode: 1, finetune: 1 }, measuredMs: 3 })).toEqual({ inference: { predicted: 1, measured: null }, finetune: { predicted: 1, measured: null } });
    expect(pm({ decodeRows: 2, plannedMs: { prefill: 0, decode: 2, finetune: 0 }, measuredMs: 8, slices: 2 })).toEqual({ inference: { predicted: 2, measured: null }, finetune: { predicted: null, measured: null } });
    expect(pm({ measuredMs: 0.5 })).toEqual({ inference: { predicted: null, measured: null }, finetune: { predicted: null, measured: null } });
  });
});

describe('StatsAggregator', () => {
  it('moves worker times onto the page clock and stacks GPU time in the series', () => {
    const a = new StatsAggregator({ pageTimeOrigin: 400 });
    a.ingest({
      timeOrigin: 1000,
      records: [
        iteration({ iteration: 1, t: 50, plannedMs: { prefill: 2, decode: 6, finetune: 0 }, measuredMs: 4, prefillTokens: 32, decodeRows: 2 }),
        iteration({ iteration: 2, t: 100, plannedMs: { prefill: 0, decode: 1, finetune: 3 }, measuredMs: 8, budgetMs: Infinity, decodeRows: 1, finetuneUnits: 2 }),
      ],
    });
    expect(a.iterations.read('t')).toEqual([650, 700]);
    const [x, total, upToFinetune, upToDecode, prefill, planned, budget] = gpuSeries(a);
    expect(x).toEqual([0.65, 0.7]);
    expect(total).toEqual([4, 8]);
    expect(upToFinetune).toEqual([4, 8]);
    expect(upToDecode).toEqual([4, 2]);
    expect(prefill).toEqual([1, 0]);
    expect(planned).toEqual([8, 4]);
    expect(budget).toEqual([16, null]); // no per-frame budget: a gap, not an infinite line
  });

  it('the cost chart with timestamp timing: predicted vs measured per kind and the median error', () => {
    const a = agg();
    const ts = (r: Parameters<typeof iteration>[0]) => iteration({ timing: 'timestamp', ...r });
    a.ingest({
      timeOrigin: 0,
      records: [
        ts({ t: 1000, prefillTokens: 32, plannedMs: { prefill: 2, decode: 0, finetune: 0 }, measuredMs: 2.5, gpuMs: { inference: 2.5, finetune: null } }),
        ts({ t: 2000, decodeRows: 4, finetuneUnits: 2, plannedMs: { prefill: 0, decode: 3, finetune: 2 }, measuredMs: 6, gpuMs: { inference: 4, finetune: 2 } }),
        ts({ t: 3000, decodeRows: 4, plannedMs: { prefill: 0, decode: 3, finetune: 0 }, measuredMs: 3, gpuMs: { inference: 3, finetune: null } }),
        ts({ t: 4000, measuredMs: 0.5, gpuMs: { inference: null, finetune: null } }), // nothing of either kind ran
      ],
    });
    expect(costSeries(a)).toEqual([
      [1, 2, 3, 4],
      [2, 3, 3, null], // inference predicted
      [2.5, 4, 3, null], // inference measured
      [null, 2, null, null], // fine-tune predicted: only where units ran
      [null, 2, null, null], // fine-tune measured
    ]);
    // errors: inference 0.5/2.5, 1/4, 0 -> median 0.2; fine-tune 0.
    expect(a.costErrors()).toEqual({ inference: { median: 0.2, samples: 3 }, finetune: { median: 0, samples: 1 }, iterations: 4, wallIterations: 0, unmeasured: 0 });
    expect(describeCharts(a).cost).toBe('Cost model median |predicted − measured| / measured: inference 20% over 3 iterations, fine-tune 0.0% over 1 iteration (GPU ms per kind from timestamp queries).');
    // The stacked GPU chart uses the same per-kind GPU ms: iteration 2 is 4 ms decode + 2 ms fine-tune.
    const [, total, upToFinetune, upToDecode, prefill] = gpuSeries(a);
    expect([total, upToFinetune, upToDecode, prefill]).toEqual([
      [2.5, 6, 3, 0.5],
      [2.5, 6, 3, 0],
      [2.5, 4, 3, 0],
      [2.5, 0, 0, 0],
    ]);
  });

  it('the cost chart with wall timing: only iterations of one kind in one submission are measured', () => {
    const a = agg();
    a.ingest({
      timeOrigin: 0,
      records: [
        iteration({ t: 1000, decodeRows: 2, plannedMs: { prefill: 0, decode: 1, finetune: 0 }, measuredMs: 1.25 }),
        iteration({ t: 2000, finetuneUnits: 3, plannedMs: { prefill: 0, decode: 0, finetune: 4 }, measuredMs: 5 }),
        iteration({ t: 3000, decodeRows: 2, finetuneUnits: 1, plannedMs: { prefill: 0, decode: 1, finetune: 1 }, measuredMs: 3 }), // mixed
        iteration({ t: 4000, decodeRows: 2, plannedMs: { prefill: 0, decode: 2, finetune: 0 }, measuredMs: 8, slices: 2 }), // sliced
        iteration({ t: 5000, decodeRows: 2, plannedMs: { prefill: 0, decode: 1, finetune: 0 }, measuredMs: 0 }), // 0 ms: drawn, no relative error
        iteration({ t: 6000, decodeRows: 1, plannedMs: { prefill: 0, decode: 1.5, finetune: 0 }, measuredMs: 1 }),
      ],
    });
    expect(costSeries(a)).toEqual([
      [1, 2, 3, 4, 5, 6],
      [1, null, 1, 2, 1, 1.5],
      [1.25, null, null, null, 0, 1],
      [null, 4, 1, null, null, null],
      [null, 5, null, null, null, null],
    ]);
    // inference errors 0.2 and 0.5: the nearest-rank median of two is the lower.
    expect(a.costErrors()).toEqual({ inference: { median: 0.2, samples: 2 }, finetune: { median: 0.2, samples: 1 }, iterations: 6, wallIterations: 6, unmeasured: 2 });
    expect(describeCharts(a).cost).toBe(
      'Cost model median |predicted − measured| / measured: inference 20% over 2 iterations, fine-tune 20% over 1 iteration (wall timing in 6 of 6 iterations: there only an iteration of one kind in one submission is measured; 2 were not).',
    );
  });

  it('the median error is over the kept iterations and follows new ones; clear forgets it', () => {
    const a = agg({ iterations: 2 });
    const it = (t: number, measuredMs: number) => iteration({ t, decodeRows: 1, plannedMs: { prefill: 0, decode: 1, finetune: 0 }, measuredMs });
    a.ingest({ timeOrigin: 0, records: [it(1, 2), it(2, 1.25)] });
    expect(a.costErrors().inference).toEqual({ median: 0.2, samples: 2 }); // 0.5 and 0.2
    a.ingest({ timeOrigin: 0, records: [it(3, 1)] }); // the 0.5 slides out
    expect(a.costErrors().inference).toEqual({ median: 0, samples: 2 });
    a.ingest({ timeOrigin: 0, records: [iteration({ t: 4, finetuneUnits: 1, plannedMs: { prefill: 0, decode: 0, finetune: 1 }, measuredMs: 1, timing: 'timestamp', gpuMs: { inference: null, finetune: 0.8 } })] });
    const e = a.costErrors();
    expect(e.inference).toEqual({ median: 0, samples: 1 });
    expect(e.finetune.samples).toBe(1);
    expect(e.finetune.median).toBeCloseTo(0.25, 12);
    expect([e.iterations, e.wallIterations]).toEqual([2, 1]);
    expect(describeCharts(a).cost).toBe('Cost model median |predicted − measured| / measured: inference 0.0% over 1 iteration, fine-tune 25% over 1 iteration (wall timing in 1 of 2 iterations: there only an iteration of one kind in one submission is measured; 0 were not).');
    a.clear();
    expect(a.costErrors()).toEqual({ inference: { median: null, samples: 0 }, finetune: { median: null, samples: 0 }, iterations: 0, wallIterations: 0, unmeasured: 0 });
    expect(describeCharts(a).cost).toBe('No iteration yet.');
    a.ingest({ timeOrigin: 0, records: [iteration({ t: 5 })] }); // idle: nothing of either kind
    expect(describeCharts(a).cost).toBe('Cost model median |predicted − measured| / measured: inference — over 0 iterations, fine-tune — over 0 iterations (wall timing in 1 of 1 iterations: there only an iteration of one kind in one submission is measured; 0 were not).');
  });

  it('percentages: one decimal under 10%', () => {
    expect([formatPercent(0.2), formatPercent(0.0512), formatPercent(1.5), formatPercent(0), formatPercent(null), formatPercent(NaN)]).toEqual(['20%', '5.1%', '150%', '0.0%', '—', '—']);
  });

  it('the frames chart: budget split by source, the frame interval and the drops', () => {
    const a = agg();
    a.ingest({
      timeOrigin: 0,
      records: [
        iteration({ t: 1000, budgetMs: 8, budgetSource: 'constant' }),
        iteration({ t: 2000, budgetMs: 8.5, budgetSource: 'frames', frameIntervalMs: 17, frameDrops: 0 }),
        iteration({ t: 3000, budgetMs: 5.95, budgetSource: 'frames', frameIntervalMs: 17, frameDrops: 3 }),
        iteration({ t: 4000, budgetMs: 50, budgetSource: 'frames', frameIntervalMs: null, frameDrops: 0 }),
        iteration({ t: 5000, budgetMs: Infinity, budgetSource: 'constant' }),
      ],
    });
    expect(frameSeries(a)).toEqual([
      [1, 2, 3, 4, 5],
      [null, 8.5, 5.95, 50, null],
      [8, null, null, null, null], // Infinity (no budget): a gap
      [null, 17, 17, null, null],
      [0, 0, 3, 0, 0],
    ]);
    expect(describeCharts(a).frames).toBe('Budget none, the constant (no fresh frame report from the page); 1 of 5 iterations were planned while the page dropped frames.');
  });

  it('the frames sentence says where the latest budget came from', () => {
    const words = (r: Parameters<typeof iteration>[0]) => {
      const a = agg();
      a.ingest({ timeOrigin: 0, records: [iteration(r)] });
      return describeCharts(a).frames;
    };
    expect(words({ budgetMs: 5.95, budgetSource: 'frames', frameIntervalMs: 1000 / 60, frameDrops: 2 })).toBe(
      'Budget 6.0 ms from the page’s frames (17 ms frame interval, 2 dropped in the last report); 1 of 1 iterations were planned while the page dropped frames.',
    );
    expect(words({ budgetMs: 50, budgetSource: 'frames', frameIntervalMs: null })).toBe('Budget 50 ms from the page’s frames (the page is hidden: nothing is drawn); 0 of 1 iterations were planned while the page dropped frames.');
    expect(words({ budgetMs: 8, budgetSource: 'constant' })).toBe('Budget 8.0 ms, the constant (no fresh frame report from the page); 0 of 1 iterations were planned while the page dropped frames.');
    expect(describeCharts(agg()).frames).toBe('No iteration yet.');
  });

  it('KV and queue series follow the iterations', () => {
    const a = agg();
    a.ingest({
      timeOrigin: 0,
      records: [
        iteration({ t: 1000, kvBlocksUsed: 10, kvBlocksTotal: 64, waitingRequests: 3, runningRequests: 2, pendingPairs: 1 }),
        iteration({ t: 2000, kvBlocksUsed: 24, kvBlocksTotal: 64, waitingRequests: 0, runningRequests: 4, pendingPairs: 0 }),
      ],
    });
    expect(kvSeries(a)).toEqual([[1, 2], [10, 24], [64, 64]]);
    expect(queueSeries(a)).toEqual([[1, 2], [3, 0], [2, 4], [1, 0]]);
  });

  it('keeps at most `iterations` rows however long it streams', () => {
    const a = agg({ iterations: 5 });
    for (let i = 1; i <= 50; i++) a.ingest({ timeOrigin: 0, records: [iteration({ iteration: i, t: i * 10 })] });
    expect(a.iterations.length).toBe(5);
    expect(a.iterations.read('iteration')).toEqual([46, 47, 48, 49, 50]);
    expect(a.totals.iterations).toBe(50);
  });

  it('latency percentiles slide over the last samples, one point per finished request', () => {
    const a = agg({ ttftSamples: 4, tbtSamples: 5 });
    a.ingest({ timeOrigin: 0, records: [session({ slo: { ttftMs: 300, tbtMs: 50 } })] });
    a.ingest({
      timeOrigin: 0,
      records: [request({ id: 'a', t: 1000, ttftMs: 100, tbtMs: [10, 20] }), request({ id: 'b', t: 1500, ttftMs: 400, tbtMs: [30] })],
    });
    expect(a.latency.read('t')).toEqual([1000, 1500]);
    expect(a.latency.read('ttftP95')).toEqual([100, 400]);
    expect(a.latency.read('tbtP50')).toEqual([10, 20]);
    expect(a.percentiles()).toEqual({ ttft: { p50: 100, p95: 400, p99: 400 }, tbt: { p50: 20, p95: 30, p99: 30 } });
    a.ingest({
      timeOrigin: 0,
      records: [
        request({ id: 'c', t: 2000, ttftMs: 200, tbtMs: [40, 50, 60, 70, 80, 90, 100] }), // more gaps than the window holds
        request({ id: 'd', t: 2100, ttftMs: null, tbtMs: [], finishReason: 'abort' }),
        request({ id: 'e', t: 2200, ttftMs: 300, tbtMs: [] }),
        request({ id: 'f', t: 2300, ttftMs: 50, tbtMs: [] }),
      ],
    });
    expect(a.ttftWindow.values()).toEqual([400, 200, 300, 50]); // 100 slid out; the aborted request had no TTFT
    expect(a.tbtWindow.values()).toEqual([60, 70, 80, 90, 100]);
    expect(a.latency.read('t')).toEqual([1000, 1500, 2000, 2100, 2200, 2300]);
    // ttft windows: [100] [100,400] [100,400,200] (same) [100,400,200,300] [400,200,300,50]
    expect(a.latency.read('ttftP50')).toEqual([100, 100, 200, 200, 200, 200]);
    expect(a.latency.read('ttftP99')).toEqual([100, 400, 400, 400, 400, 400]);
    expect(a.latency.read('tbtP99')).toEqual([20, 30, 100, 100, 100, 100]);
    expect(a.latency.read('tbtP50').at(-1)).toBe(80);
    expect(a.totals.finish).toEqual({ stop: 5, length: 0, abort: 1, error: 0 });
    const [x, p50, p95, p99, slo] = latencySeries(a, 'ttft');
    expect(x).toEqual([1, 1.5, 2, 2.1, 2.2, 2.3]);
    expect([p50, p95, p99]).toEqual([
      [100, 100, 200, 200, 200, 200],
      [100, 400, 400, 400, 400, 400],
      [100, 400, 400, 400, 400, 400],
    ]);
    expect(slo).toEqual([300, 300, 300, 300, 300, 300]);
    expect(latencySeries(a, 'tbt')[4]).toEqual([50, 50, 50, 50, 50, 50]);
  });

  it('a window with no TTFT yet is a gap in the series', () => {
    const a = agg();
    a.ingest({ timeOrigin: 0, records: [request({ t: 10, ttftMs: null, tbtMs: [5], finishReason: 'error' })] });
    const [, p50] = latencySeries(a, 'ttft');
    expect(p50).toEqual([null]);
    expect(latencySeries(a, 'tbt')[1]).toEqual([5]);
    expect(latencySeries(a, 'tbt')[4]).toEqual([null]); // no session: no SLO line
  });

  it('decode rate: rows of the iterations in the window over the window', () => {
    const a = agg({ rateWindowMs: 500 });
    a.ingest({ timeOrigin: 0, records: [0, 100, 200].map((t) => iteration({ t, decodeRows: 2, measuredMs: 10 })) });
    expect(a.decodeTokensPerSecond(250)).toBe(24); // 6 tokens since the first iteration, 250 ms ago
    a.ingest({ timeOrigin: 0, records: [300, 400, 500, 600, 700, 800, 900].map((t) => iteration({ t, decodeRows: 2, measuredMs: 10 })) });
    expect(a.decodeTokensPerSecond(1000)).toBe(20); // iterations at 500..900: 10 tokens in 0.5 s
    expect(a.decodeTokensPerSecond(5000)).toBe(0); // idle: falls to 0
    expect(agg().decodeTokensPerSecond(100)).toBeNull();
  });

  it('decode rate counts only from the oldest kept iteration when the ring dropped some inside the window', () => {
    const a = agg({ rateWindowMs: 1000, iterations: 3 });
    a.ingest({ timeOrigin: 0, records: [0, 100, 200, 300, 400].map((t) => iteration({ t, decodeRows: 1, measuredMs: 0 })) });
    expect(a.decodeTokensPerSecond(500)).toBe(10); // 3 kept tokens (200, 300, 400) over 500 - 200 = 300 ms
  });

  it('DPO steps, adapter versions and their series', () => {
    const a = agg();
    a.ingest({
      timeOrigin: 0,
      records: [
        step({ t: 1000, step: 1, adapterVersion: 1, loss: 0.69, 'rewards/accuracies': 0.5, 'rewards/margins': 0.1 }),
        step({ t: 2000, step: 2, adapterVersion: 1, loss: NaN, 'rewards/accuracies': NaN, 'rewards/margins': NaN, skipped: true }),
        step({ t: 3000, step: 3, adapterVersion: 2, loss: 0.5, 'rewards/accuracies': 1, 'rewards/margins': 0.4 }),
        step({ t: 3500, adapter: 'other', step: 1, adapterVersion: 7 }),
      ],
    });
    expect(dpoSeries(a)).toEqual([[1, 2, 3, 3.5], [0.69, null, 0.5, 0.6931], [0.5, null, 1, 1], [0.1, null, 0.4, 0.2]]);
    expect(adapterSeries(a)).toEqual([[1, 2, 3, 3.5], [1, 1, 2, 7]]);
    expect(a.steps.read('skipped')).toEqual([0, 1, 0, 0]);
    expect(a.adapters()).toEqual([
      { name: 'feedback', version: 2, t: 3000 },
      { name: 'other', version: 7, t: 3500 },
    ]);
    expect(a.currentAdapter()).toEqual({ name: 'other', version: 7, t: 3500 });
    a.ingest({ timeOrigin: 0, records: [step({ t: 4000, step: 4, adapterVersion: 3 })] });
    expect(a.currentAdapter()).toEqual({ name: 'feedback', version: 3, t: 4000 });
  });

  it('a malformed batch throws naming the field and applies none of its records', () => {
    const a = agg();
    const bad = { timeOrigin: 0, records: [iteration({ t: 5 }), { ...iteration({ t: 6 }), measuredMs: 'fast' }] };
    // @ts-expect-error: a wrong type on purpose
    expect(() => a.ingest(bad)).toThrow(/records\[1\]\.measuredMs/);
    expect(a.iterations.length).toBe(0);
    expect(a.totals.batches).toBe(0);
  });

  it('clear forgets everything', () => {
    const a = agg();
    a.ingest({ timeOrigin: 0, records: [session(), iteration({ t: 1, decodeRows: 1 }), request({ t: 2 }), step({ t: 3 })] });
    a.clear();
    expect([a.iterations.length, a.latency.length, a.steps.length, a.ttftWindow.length, a.session, a.currentAdapter(), a.decodeTokensPerSecond(10)]).toEqual([0, 0, 0, 0, null, null, null]);
    expect(a.totals).toEqual({ batches: 0, iterations: 0, requests: 0, steps: 0, completionTokens: 0, finish: { stop: 0, length: 0, abort: 0, error: 0 } });
  });
});

describe('summary text', () => {
  it('before any data, every figure is a dash', () => {
    expect(formatSummaryLine(summarize(agg(), 0))).toBe('— tok/s · TTFT p95 — · KV — · adapter —');
  });

  it('one line with tok/s, TTFT p95, KV use and the adapter version', () => {
    const a = agg({ rateWindowMs: 1000 });
    a.ingest({
      timeOrigin: 0,
      records: [
        session({ slo: { ttftMs: 500, tbtMs: 80 } }),
        iteration({ t: 0, decodeRows: 4, measuredMs: 5, kvBlocksUsed: 120, kvBlocksTotal: 512 }),
        iteration({ t: 500, decodeRows: 8, measuredMs: 5, kvBlocksUsed: 128, kvBlocksTotal: 512 }),
        request({ t: 600, ttftMs: 84.4, tbtMs: [12, 14] }),
        step({ t: 700, adapter: 'feedback', adapterVersion: 3 }),
      ],
    });
    const s = summarize(a, 1000);
    expect(s.tokensPerSecond).toBe(12);
    expect(s.ttftSloMs).toBe(500);
    expect(formatSummaryLine(s)).toBe('12.0 tok/s · TTFT p95 84 ms · KV 128/512 (25%) · adapter feedback v3');
    const words = describeCharts(a);
    expect(words.gpu).toBe('Last of 2 iterations: 5.0 ms measured against a 16 ms budget (prefill 0.0 ms, decode 0.0 ms, fine-tune 0.0 ms); 0 of 2 over budget.');
    expect(words.ttft).toBe('TTFT p50 84 ms, p95 84 ms, p99 84 ms against a 500 ms SLO.');
    expect(words.tbt).toBe('TBT p50 12 ms, p95 14 ms, p99 14 ms against a 80 ms SLO.');
    expect(words.kv).toBe('KV blocks: 128 used, 384 free of 512.');
    expect(words.dpo).toBe('DPO step 1: loss 0.6931, reward accuracy 1.00, margin 0.200.');
    expect(words.adapter).toBe('Adapter versions: feedback v3.');
    // With the poisoning guard, the record says which version serves.
    a.ingest({ timeOrigin: 0, records: [step({ adapter: 'feedback', adapterVersion: 5, servingVersion: 3 })] });
    expect(describeCharts(a).adapter).toBe('Adapter versions: feedback v5 (serving v3: the guard rolled back the newer).');
    a.ingest({ timeOrigin: 0, records: [step({ adapter: 'feedback', adapterVersion: 6, servingVersion: 6 })] });
    expect(describeCharts(a).adapter).toBe('Adapter versions: feedback v6.');
    expect(() => a.ingest({ timeOrigin: 0, records: [step({ servingVersion: -1 })] })).toThrow('servingVersion');
  });
});
