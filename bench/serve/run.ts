/**
 * The serving benchmark end to end: a model (synthetic, real shapes), the trace per retrain rate
 * (generated with shared arrivals, or given), every policy replayed on each (bench/serve/replay.ts),
 * then the table and the comparison against issue 5's targets (bench/serve/report.ts).
 */
import { describeGpu, type GpuContext } from '../../src/gpu/device.ts';
import type { WeightFormat } from '../../src/kernels/weights.ts';
import type { PolicyName, SloTargets } from '../../src/scheduler/stats.ts';
import { syntheticConfig, syntheticEngineModel, SYNTHETIC_MODEL_NAMES, type SyntheticModelId } from '../synthetic-model.ts';
import { DEFAULT_SLO_MULTIPLES, type ServeMetrics, type SloMultiples } from './metrics.ts';
import type { Ablation } from './ablation.ts';
import { calibrate, replayTrace, type ReplayResult } from './replay.ts';
import { compareServe, serveReport, serveRow, type ServeComparison, type ServeRow } from './report.ts';
import { generateTrace, summarizeTrace, validateTrace, type Trace, type TraceGeneratorParams, type TraceSummary } from './trace.ts';

export interface ServeBenchOptions {
  model: SyntheticModelId;
  format: WeightFormat;
  policies: PolicyName[];
  /** Retrain rates to generate traces at (ignored with `trace`). */
  rates: number[];
  /** A given trace (its realised retrain rate labels the rows). */
  trace?: Trace;
  /** Generator settings for the traces (seed, duration, load, lengths). */
  traceParams?: Partial<TraceGeneratorParams>;
  /** Per-submission GPU-time budget (every policy) as a multiple of the unloaded TBT. */
  budgetTbtMultiple: number;
  slo?: SloMultiples;
  rank: number;
  /** Fine-tune steps count over horizonFactor × the trace's duration (default 2). */
  horizonFactor?: number;
  env: 'chromium' | 'node';
  /** Extra mace runs, each with one mechanism off (default none). */
  ablations?: Ablation[];
  /** Most chats decoding at once (default 8). */
  maxSeqs?: number;
  /** Keep every run's raw records (ServeRun.records). */
  keepRecords?: boolean;
  /**
   * The unloaded latency to use instead of calibrating (the SLOs' unit and the budget's): runs of
   * one policy per process then get exactly the budget and SLOs of another run.
   */
  unloaded?: SloTargets;
  onProgress?: (message: string) => void;
}

export interface ServeRun extends Omit<ReplayResult, 'metrics'> {
  metrics: ServeMetrics;
  row: ServeRow;
}

export interface ServeBenchResult {
  model: string;
  format: WeightFormat;
  env: string;
  gpu: string;
  traces: { retrainRate: number; summary: TraceSummary; params: Trace['generator'] | null }[];
  runs: ServeRun[];
  comparisons: ServeComparison[];
  markdown: string;
}

export async function runServeBench(ctx: GpuContext, o: ServeBenchOptions): Promise<ServeBenchResult> {
  const config = syntheticConfig(o.model);
  const model = await syntheticEngineModel(ctx, config, o.format, 1);
  const given = o.trace === undefined ? undefined : validateTrace(o.trace, 'trace');
  const traces: { retrainRate: number; trace: Trace }[] = given
    ? [{ retrainRate: summarizeTrace(given).retrainRate, trace: given }]
    : o.rates.map((retrainRate) => ({ retrainRate, trace: generateTrace({ ...o.traceParams, retrainRate }) }));
  const runs: ServeRun[] = [];
  try {
    // One calibration for the whole benchmark: every policy and rate gets the same SLOs and budget.
    const base = { policy: 'mace' as PolicyName, ablation: null, retrainRate: 0, budgetTbtMultiple: o.budgetTbtMultiple, slo: o.slo ?? DEFAULT_SLO_MULTIPLES, rank: o.rank, kvBudgetBytes: 64 * 2 ** 20, maxSeqs: o.maxSeqs ?? 8, horizonFactor: o.horizonFactor ?? 2, keepRecords: o.keepRecords ?? false };
    const unloaded = o.unloaded ?? (await calibrate(ctx, model, traces[0].trace, base));
    o.onProgress?.(`${o.unloaded ? 'given' : 'calibration'}: unloaded TTFT ${unloaded.ttftMs.toFixed(1)} ms, TBT ${unloaded.tbtMs.toFixed(1)} ms`);
    for (const { retrainRate, trace } of traces) {
      const s = summarizeTrace(trace);
      o.onProgress?.(`trace @ ${Math.round(retrainRate * 100)}%: ${s.requests} requests, ${s.pairs} pairs over ${trace.durationS} s`);
      const variants: { policy: PolicyName; ablation: Ablation | null }[] = [...o.policies.map((policy) => ({ policy, ablation: null })), ...(o.ablations ?? []).map((ablation) => ({ policy: 'mace' as const, ablation }))];
      for (const { policy, ablation } of variants) {
        const r = await replayTrace(ctx, model, trace, { ...base, policy, ablation, retrainRate, unloaded, log: o.onProgress });
        const row = serveRow(r.metrics);
        o.onProgress?.(`  ${row.variant}: mixed ${row.mixedIterationFraction?.toFixed(2)}, TTFT p95 ${row.ttftP95?.toFixed(1)} ms, TBT p95 ${row.tbtP95?.toFixed(1)} ms, steps ${row.finetuneSteps}, busy ${row.busyFraction?.toFixed(2)}, scheduler ${row.schedulerMeanMs?.toFixed(3)} ms/iteration`);
        runs.push({ ...r, row });
      }
    }
  } finally {
    model.weights.destroy();
  }
  const metrics = runs.map((r) => r.metrics);
  const head = `Model ${SYNTHETIC_MODEL_NAMES[o.model]} (${o.format}, random weights, real shapes) on ${describeGpu(ctx)} (${o.env}); per-iteration GPU-time budget ${o.budgetTbtMultiple}× the unloaded TBT for every policy.\n\n`;
  return {
    model: SYNTHETIC_MODEL_NAMES[o.model], format: o.format, env: o.env, gpu: describeGpu(ctx),
    traces: traces.map(({ retrainRate, trace }) => ({ retrainRate, summary: summarizeTrace(trace), params: trace.generator ?? null })),
    runs, comparisons: compareServe(metrics), markdown: head + serveReport(metrics),
  };
}
