/**
 * The devtools performance panel: `<mace-devtools>` (defined on import), the pure stats aggregation
 * it draws from, and the Chrome Performance-panel tracks.
 *
 *   import '…/src/ui/devtools/index.ts';
 *   const panel = document.createElement('mace-devtools');
 *   panel.engine = client;            // WorkerEngine: onStats(listener) => unsubscribe
 *   document.body.append(panel);
 */
import { defineMaceDevtools } from './element.ts';

export { MaceDevtoolsElement, defineMaceDevtools, type StatsSource, type PanelCost, type DevtoolsErrorDetail } from './element.ts';
export {
  StatsAggregator,
  splitMeasured,
  predictedVsMeasured,
  ITERATION_COLUMNS,
  LATENCY_COLUMNS,
  STEP_COLUMNS,
  type AggregatorOptions,
  type AdapterVersion,
  type CostKind,
  type KindCost,
  type CostError,
  type CostErrors,
} from './aggregate.ts';
export { ColumnRing, NumberRing } from './ring.ts';
export { percentileOfSorted, windowPercentiles, type Percentiles } from './percentile.ts';
export { validateStatsBatch } from './validate.ts';
export { StatsInputError, DevtoolsOptionError } from './errors.ts';
export { gpuSeries, costSeries, frameSeries, latencySeries, kvSeries, queueSeries, dpoSeries, adapterSeries, type ChartData, type Series } from './series.ts';
export { summarize, formatSummaryLine, formatMs, formatRate, formatPercent, describeCharts, type PanelSummary } from './summary.ts';
export {
  emitPerformanceTracks,
  planTrackEntries,
  PerformanceTracks,
  MEASURE_NAMES,
  TRACK_GROUP,
  type TrackEntry,
  type TrackEntryDetail,
  type TrackName,
  type MeasureTarget,
  type DevToolsColor,
  type PerformanceTracksOptions,
} from './tracks.ts';
export { CHARTS, DEFAULT_PALETTE, type ChartId, type ChartSpec, type Palette } from './charts.ts';
export { StatsLoad, type StatsLoadOptions } from './load.ts';
export { measurePanelCost, type PanelCostReport, type PanelCostOptions } from './cost.ts';

defineMaceDevtools();
