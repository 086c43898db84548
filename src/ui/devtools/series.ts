/**
 * Chart series from the aggregator's rings, in uPlot's column layout ([x, y1, y2, ...], x ascending,
 * null = gap). x is seconds on the page clock for every chart, so the charts line up in time.
 * Non-finite values (a budget of Infinity, a skipped step's NaN loss, a window with no sample) become
 * gaps rather than spikes.
 */
import type { StatsAggregator } from './aggregate.ts';

export type Series = (number | null)[];
/** uPlot's AlignedData shape: x first. */
export type ChartData = Series[];

const gap = (v: number): number | null => (Number.isFinite(v) ? v : null);
const seconds = (ms: number[]): number[] => ms.map((t) => t / 1000);

/**
 * GPU time per iteration, stacked by kind (prefill at the bottom, then decode, fine-tune and time no
 * kind planned), as cumulative tops; then the planned total (the cost model's prediction) and the budget.
 * Layout: [x, total=measured, prefill+decode+finetune, prefill+decode, prefill, planned, budget].
 */
export function gpuSeries(agg: StatsAggregator): ChartData {
  const it = agg.iterations;
  const n = it.length;
  const total: Series = new Array(n);
  const upToFinetune: Series = new Array(n);
  const upToDecode: Series = new Array(n);
  const prefill: Series = new Array(n);
  const planned: Series = new Array(n);
  const budget: Series = new Array(n);
  for (let i = 0; i < n; i++) {
    const p = it.get('gpuPrefill', i);
    const d = p + it.get('gpuDecode', i);
    const f = d + it.get('gpuFinetune', i);
    prefill[i] = p;
    upToDecode[i] = d;
    upToFinetune[i] = f;
    total[i] = f + it.get('gpuUnattributed', i);
    planned[i] = it.get('plannedPrefill', i) + it.get('plannedDecode', i) + it.get('plannedFinetune', i);
    budget[i] = gap(it.get('budgetMs', i));
  }
  return [seconds(it.read('t')), total, upToFinetune, upToDecode, prefill, planned, budget];
}

/**
 * The budget each plan was packed under and the page's frames behind it:
 * [x, budget from frames, budget when constant, frame interval, frames dropped]. The budget is split
 * by source (a gap where the other one applied), so the chart shows when the page drove it.
 */
export function frameSeries(agg: StatsAggregator): ChartData {
  const it = agg.iterations;
  const n = it.length;
  const fromFrames: Series = new Array(n);
  const constant: Series = new Array(n);
  for (let i = 0; i < n; i++) {
    const b = gap(it.get('budgetMs', i));
    const frames = it.get('budgetFromFrames', i) === 1;
    fromFrames[i] = frames ? b : null;
    constant[i] = frames ? null : b;
  }
  return [seconds(it.read('t')), fromFrames, constant, it.read('frameIntervalMs').map(gap), it.read('frameDrops')];
}

/**
 * The cost model's predicted against the measured GPU ms per kind (aggregate.ts predictedVsMeasured):
 * [x, inference predicted, inference measured, fine-tune predicted, fine-tune measured]. A gap where
 * the kind did not run, and a measured gap where it ran unmeasured (wall timing: a mixed or sliced
 * iteration).
 */
export function costSeries(agg: StatsAggregator): ChartData {
  const it = agg.iterations;
  return [
    seconds(it.read('t')),
    it.read('predictedInference').map(gap),
    it.read('measuredInference').map(gap),
    it.read('predictedFinetune').map(gap),
    it.read('measuredFinetune').map(gap),
  ];
}

/** Percentiles of one latency over time against its SLO: [x, p50, p95, p99, slo]. */
export function latencySeries(agg: StatsAggregator, which: 'ttft' | 'tbt'): ChartData {
  const l = agg.latency;
  const slo = agg.session ? agg.session.slo[which === 'ttft' ? 'ttftMs' : 'tbtMs'] : null;
  const p50 = l.read(which === 'ttft' ? 'ttftP50' : 'tbtP50').map(gap);
  const p95 = l.read(which === 'ttft' ? 'ttftP95' : 'tbtP95').map(gap);
  const p99 = l.read(which === 'ttft' ? 'ttftP99' : 'tbtP99').map(gap);
  return [seconds(l.read('t')), p50, p95, p99, new Array<number | null>(l.length).fill(slo)];
}

/** KV blocks: [x, used, used+free (= total)], drawn as stacked areas. */
export function kvSeries(agg: StatsAggregator): ChartData {
  const it = agg.iterations;
  return [seconds(it.read('t')), it.read('kvUsed'), it.read('kvTotal')];
}

/** Queue depths after planning: [x, waiting requests, running requests, pending preference pairs]. */
export function queueSeries(agg: StatsAggregator): ChartData {
  const it = agg.iterations;
  return [seconds(it.read('t')), it.read('waiting'), it.read('running'), it.read('pendingPairs')];
}

/** DPO metrics per optimizer step: [x, loss, rewards/accuracies, rewards/margins]. */
export function dpoSeries(agg: StatsAggregator): ChartData {
  const s = agg.steps;
  return [seconds(s.read('t')), s.read('loss').map(gap), s.read('accuracy').map(gap), s.read('margin').map(gap)];
}

/** The trained adapter's version after each step: [x, version]. */
export function adapterSeries(agg: StatsAggregator): ChartData {
  const s = agg.steps;
  return [seconds(s.read('t')), s.read('adapterVersion')];
}
