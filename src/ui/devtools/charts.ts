/**
 * The panel's nine charts as uPlot definitions: which series builder feeds each (series.ts), its
 * accessible name, and its uPlot options for a given width and palette. The element (element.ts)
 * creates them lazily, the first time the panel is expanded.
 */
import uPlot from 'uplot';
import type { StatsAggregator } from './aggregate.ts';
import { adapterSeries, costSeries, dpoSeries, frameSeries, gpuSeries, kvSeries, latencySeries, queueSeries, type ChartData } from './series.ts';

export type ChartId = 'gpu' | 'cost' | 'frames' | 'ttft' | 'tbt' | 'kv' | 'queues' | 'dpo' | 'adapter';

/** Colours read from the host's CSS custom properties (canvas strokes cannot use var()). */
export interface Palette {
  fg: string;
  grid: string;
  prefill: string;
  decode: string;
  finetune: string;
  other: string;
  planned: string;
  /** Inference (prefill + decode) in the cost model's chart; fine-tune there uses `finetune`. */
  inference: string;
  budget: string;
  /** The constant budget (no frame reports), the page's frame interval, its dropped frames. */
  budgetConstant: string;
  interval: string;
  drops: string;
  p50: string;
  p95: string;
  p99: string;
  slo: string;
  kvUsed: string;
  kvTotal: string;
  waiting: string;
  running: string;
  pairs: string;
  loss: string;
  accuracy: string;
  margin: string;
  version: string;
}

export const DEFAULT_PALETTE: Palette = {
  fg: '#c9d1d9',
  grid: 'rgba(201,209,217,0.12)',
  prefill: '#4e9af1',
  decode: '#3fb950',
  finetune: '#d29922',
  other: '#8b949e',
  planned: '#f0f6fc',
  inference: '#39c5cf',
  budget: '#f85149',
  budgetConstant: '#8b949e',
  interval: '#4e9af1',
  drops: '#d29922',
  p50: '#3fb950',
  p95: '#d29922',
  p99: '#db61a2',
  slo: '#f85149',
  kvUsed: '#4e9af1',
  kvTotal: '#8b949e',
  waiting: '#d29922',
  running: '#3fb950',
  pairs: '#a371f7',
  loss: '#f0883e',
  accuracy: '#3fb950',
  margin: '#a371f7',
  version: '#4e9af1',
};

export interface ChartSpec {
  id: ChartId;
  title: string;
  /** Accessible name of the plot (its numbers are in the text summary beside it). */
  ariaLabel: string;
  data(agg: StatsAggregator): ChartData;
  options(width: number, height: number, p: Palette): uPlot.Options;
}

const fmt = (digits: number, unit = '') => (_u: uPlot, v: number | null) => (v === null || v === undefined ? '—' : `${v.toFixed(digits)}${unit}`);
const timeAxis = (p: Palette): uPlot.Axis => ({ stroke: p.fg, grid: { stroke: p.grid, width: 1 }, ticks: { stroke: p.grid, width: 1 }, size: 28 });
const valueAxis = (p: Palette, label: string, scale = 'y', side: 0 | 1 | 2 | 3 = 3): uPlot.Axis => ({
  scale,
  side,
  label,
  stroke: p.fg,
  grid: { show: side === 3, stroke: p.grid, width: 1 },
  ticks: { stroke: p.grid, width: 1 },
  size: 44,
  labelSize: 14,
});
/** uPlot's default points: shown only while the series is sparse (a single point would be invisible otherwise). */
const line = (label: string, stroke: string, extra: Partial<uPlot.Series> = {}): uPlot.Series => ({ label, stroke, width: 1.5, ...extra });
/** Opaque fill: stacked bands are drawn tallest first, so each paints over the one above it exactly. */
const area = (label: string, color: string, extra: Partial<uPlot.Series> = {}): uPlot.Series => line(label, color, { fill: color, width: 1, ...extra });

function base(width: number, height: number, p: Palette, series: uPlot.Series[], axes: uPlot.Axis[], scales: uPlot.Scales = {}): uPlot.Options {
  return {
    width,
    height,
    scales: { x: { time: false }, ...scales },
    series: [{ label: 't', value: fmt(1, ' s') }, ...series],
    axes: [timeAxis(p), ...axes],
    cursor: { drag: { x: false, y: false } },
    legend: { live: true },
  };
}

/**
 * Legend value of a stacked band: its own height (this top minus the next one down), not the
 * cumulative top the data holds. `below` is the series index under it (null for the bottom band).
 */
const ownValue = (below: number | null) => (u: uPlot, v: number | null, _si: number, idx: number | null) => {
  if (v === null || idx === null) return '—';
  const under = below === null ? 0 : ((u.data[below][idx] as number | null) ?? 0);
  return `${(v - under).toFixed(2)} ms`;
};

export const CHARTS: readonly ChartSpec[] = [
  {
    id: 'gpu',
    title: 'GPU time per iteration (ms), by task kind, against the budget',
    ariaLabel: 'Chart: GPU time per iteration stacked by prefill, decode and fine-tune, with the planned time and the budget',
    data: gpuSeries,
    options: (w, h, p) =>
      base(
        w,
        h,
        p,
        [
          area('other', p.other, { value: ownValue(2) }),
          area('fine-tune', p.finetune, { value: ownValue(3) }),
          area('decode', p.decode, { value: ownValue(4) }),
          area('prefill', p.prefill, { value: ownValue(null) }),
          line('planned', p.planned, { dash: [4, 3], width: 1, value: fmt(2, ' ms') }),
          line('budget', p.budget, { value: fmt(2, ' ms') }),
        ],
        [valueAxis(p, 'ms')],
        { y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      ),
  },
  {
    id: 'cost',
    title: 'Cost model: predicted vs measured GPU time (ms) per kind',
    ariaLabel:
      'Chart: per iteration, the cost model’s predicted GPU time (dashed) and the measured GPU time (solid) of inference (prefill and decode) and of fine-tune work; with wall timing only iterations of one kind are measured',
    data: costSeries,
    options: (w, h, p) =>
      base(
        w,
        h,
        p,
        [
          // spanGaps: each line joins the iterations where its kind ran (and, for measured, was measured).
          line('inference predicted', p.inference, { dash: [4, 3], width: 1, spanGaps: true, value: fmt(2, ' ms') }),
          line('inference measured', p.inference, { spanGaps: true, value: fmt(2, ' ms') }),
          line('fine-tune predicted', p.finetune, { dash: [4, 3], width: 1, spanGaps: true, value: fmt(2, ' ms') }),
          line('fine-tune measured', p.finetune, { spanGaps: true, value: fmt(2, ' ms') }),
        ],
        [valueAxis(p, 'ms')],
        { y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      ),
  },
  {
    id: 'frames',
    title: 'Budget per submission (ms) from the page’s frames, and frames dropped',
    ariaLabel: 'Chart: the GPU budget each iteration was planned under, from the page’s frames or the constant fallback, with the frame interval (left axis, ms) and the frames the page dropped (right axis)',
    data: frameSeries,
    options: (w, h, p) => {
      const stepped = uPlot.paths.stepped!({ align: 1 });
      return base(
        w,
        h,
        p,
        [
          line('budget (frames)', p.budget, { paths: stepped, value: fmt(2, ' ms') }),
          line('budget (constant)', p.budgetConstant, { paths: stepped, dash: [4, 3], value: fmt(2, ' ms') }),
          line('frame interval', p.interval, { width: 1, value: fmt(1, ' ms') }),
          line('dropped', p.drops, { scale: 'drops', paths: uPlot.paths.bars!({ size: [0.6, 8] }), fill: p.drops, value: fmt(0) }),
        ],
        [valueAxis(p, 'ms'), valueAxis(p, 'dropped', 'drops', 1)],
        { y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] }, drops: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
      );
    },
  },
  ...(['ttft', 'tbt'] as const).map(
    (which): ChartSpec => ({
      id: which,
      title: `${which.toUpperCase()} percentiles (ms) against the SLO`,
      ariaLabel: `Chart: ${which === 'ttft' ? 'time to first token' : 'time between tokens'} p50, p95 and p99 over a sliding window, with the SLO`,
      data: (agg) => latencySeries(agg, which),
      options: (w, h, p) =>
        base(
          w,
          h,
          p,
          [line('p50', p.p50, { value: fmt(1, ' ms') }), line('p95', p.p95, { value: fmt(1, ' ms') }), line('p99', p.p99, { value: fmt(1, ' ms') }), line('SLO', p.slo, { dash: [6, 4], value: fmt(0, ' ms') })],
          [valueAxis(p, 'ms')],
          { y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
        ),
    }),
  ),
  {
    id: 'kv',
    title: 'KV cache blocks',
    ariaLabel: 'Chart: KV cache blocks used and total',
    data: kvSeries,
    options: (w, h, p) => base(w, h, p, [area('used', p.kvUsed, { value: fmt(0) }), line('total', p.kvTotal, { value: fmt(0) })], [valueAxis(p, 'blocks')], { y: { range: (_u, _min, max) => [0, Math.max(1, max)] } }),
  },
  {
    id: 'queues',
    title: 'Queue depths',
    ariaLabel: 'Chart: waiting and running requests and pending preference pairs',
    data: queueSeries,
    options: (w, h, p) => {
      const stepped = uPlot.paths.stepped!({ align: 1 });
      return base(
        w,
        h,
        p,
        [line('waiting', p.waiting, { paths: stepped, value: fmt(0) }), line('running', p.running, { paths: stepped, value: fmt(0) }), line('pending pairs', p.pairs, { paths: stepped, value: fmt(0) })],
        [valueAxis(p, 'count')],
        { y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
      );
    },
  },
  {
    id: 'dpo',
    title: 'DPO loss, reward accuracy and margin per step',
    ariaLabel: 'Chart: DPO loss and reward margin (left axis) and reward accuracy (right axis, 0 to 1) per optimizer step',
    data: dpoSeries,
    options: (w, h, p) =>
      base(
        w,
        h,
        p,
        [line('loss', p.loss, { value: fmt(4) }), line('accuracy', p.accuracy, { scale: 'acc', value: fmt(2) }), line('margin', p.margin, { value: fmt(3) })],
        [valueAxis(p, 'loss / margin'), valueAxis(p, 'accuracy', 'acc', 1)],
        { acc: { range: [0, 1] } },
      ),
  },
  {
    id: 'adapter',
    title: 'Adapter version',
    ariaLabel: 'Chart: version of the adapter being trained after each optimizer step',
    data: adapterSeries,
    options: (w, h, p) =>
      base(w, h, p, [line('version', p.version, { paths: uPlot.paths.stepped!({ align: 1 }), value: fmt(0) })], [valueAxis(p, 'version')], { y: { range: (_u, _min, max) => [0, Math.max(1, max + 1)] } }),
  },
];
