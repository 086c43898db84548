/**
 * Serving metrics of one `mace bench serve` run (one policy on one trace), from the stats stream's
 * records (src/scheduler/stats.ts) plus the two facts those records do not carry, which the replay
 * adds: when each request arrived, and each iteration's wall span and whether work was still queued
 * after it. All times are ms on one clock (the engine's performance.now()).
 *
 * Definitions (each one is tested in test/node/serve-metrics.test.ts):
 * - Percentiles are **nearest-rank**: the p-th percentile of n sorted samples is the sample at rank
 *   ceil(p/100 · n) (1-based), i.e. the smallest sample with at least p% of the samples at or below
 *   it. Always one of the samples; null when there are none.
 * - TTFT: arrival → first token, one sample per request that produced a token. TBT: every gap
 *   between consecutive tokens of every request, pooled (a long answer weighs more, as a user
 *   reading it feels more of its gaps).
 * - SLO attainment: the share of requests that met both targets: TTFT ≤ slo.ttftMs and the
 *   request's own TBT p95 ≤ slo.tbtMs (one slow gap in a long answer is forgiven; a stall that
 *   repeats is not; an answer of one token has no gap and meets the TBT target). Errored requests
 *   and requests without a token count as misses; aborted ones (the client left) are not counted.
 *   Targets are multiples of the unloaded latency measured at calibration: sloFromUnloaded.
 * - GPU busy fraction while work is pending: Σ measured GPU ms of all iterations ÷ the wall ms during
 *   which work was pending. Pending wall = the spans of iterations that ran work or had work queued,
 *   plus the gap after an iteration that left work queued (pendingAfter) up to the next iteration's
 *   start (or the run's end). Idle time with nothing to do is not counted; the engine's own CPU time
 *   between iterations while work waits is. With wall-clock timing (no timestamp queries) the GPU
 *   time includes submission overhead, so the fraction is an upper estimate: `timing` says which.
 * - Fine-tune steps: the optimizer steps finished within [startT, endT] (applied and skipped).
 * - Scheduler overhead: schedulerMs of every iteration: mean, p95 (nearest rank) and max.
 */
import type { FinetuneStats, IterationStats, PolicyName, RequestStats, SloTargets } from '../../src/scheduler/stats.ts';

/** A finished request as the replay records it: RequestStats (t = when it finished) plus its arrival. */
export interface ServeRequestRecord extends RequestStats {
  /** When the request was submitted (its trace time on the engine's clock). */
  arrivalT: number;
}

/** An iteration as the replay records it: IterationStats plus its wall span and what it left queued. */
export interface ServeIterationRecord extends IterationStats {
  /** Wall ms from t (plan start) to the iteration's results being committed. */
  wallMs: number;
  /** A request (waiting or running) or a fine-tune unit was still queued when the iteration ended. */
  pendingAfter: boolean;
}

/** Everything one run recorded. */
export interface ServeRunRecords {
  policy: PolicyName;
  /** The trace's retrain rate (share of answers that yield a pair), for the report's rows. */
  retrainRate: number;
  /** The run's wall span on the records' clock: replay start and end. */
  startT: number;
  endT: number;
  slo: SloTargets;
  requests: ServeRequestRecord[];
  iterations: ServeIterationRecord[];
  finetune: FinetuneStats[];
}

export interface Summary {
  count: number;
  mean: number | null;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  max: number | null;
}

export interface ServeMetrics {
  policy: PolicyName;
  retrainRate: number;
  wallS: number;
  requests: { finished: number; aborted: number; errored: number; outputTokens: number; outputTokensPerS: number };
  ttftMs: Summary;
  tbtMs: Summary;
  slo: { ttftMs: number; tbtMs: number; met: number; counted: number; attainment: number | null };
  finetune: { steps: number; applied: number; skipped: number; stepsPerMin: number; meanStepMs: number | null };
  gpu: { busyMs: number; pendingMs: number; busyFraction: number | null; timing: 'timestamp' | 'wall' | 'mixed' | 'none' };
  scheduler: { iterations: number; meanMs: number | null; p95Ms: number | null; maxMs: number | null };
}

/** Records the metrics cannot use: names the field, e.g. `requests[2].tbtMs[3]`. */
export class MetricsError extends Error {
  readonly code = 'bad-serve-records';
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super(`${field} ${detail}`);
    this.name = 'MetricsError';
  }
}

/** Nearest-rank percentile of samples (any order), p in (0, 100]; null for no samples. */
export function percentile(samples: readonly number[], p: number): number | null {
  if (!(p > 0 && p <= 100)) throw new MetricsError('p', `= ${p} must be in (0, 100]`);
  if (samples.length === 0) return null;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.ceil((p / 100) * sorted.length) - 1];
}

export function summarize(samples: readonly number[]): Summary {
  if (samples.length === 0) return { count: 0, mean: null, p50: null, p95: null, p99: null, max: null };
  return {
    count: samples.length,
    mean: samples.reduce((a, b) => a + b, 0) / samples.length,
    p50: percentile(samples, 50),
    p95: percentile(samples, 95),
    p99: percentile(samples, 99),
    max: Math.max(...samples),
  };
}

/** Multiples of the latency measured unloaded at calibration. */
export interface SloMultiples {
  ttft: number;
  tbt: number;
}

/** Default SLO multiples of the unloaded latency (the bench command's defaults; a parameter). */
export const DEFAULT_SLO_MULTIPLES: Readonly<SloMultiples> = Object.freeze({ ttft: 5, tbt: 2 });

export function sloFromUnloaded(unloaded: SloTargets, k: SloMultiples = DEFAULT_SLO_MULTIPLES): SloTargets {
  for (const [field, v] of [['unloaded.ttftMs', unloaded.ttftMs], ['unloaded.tbtMs', unloaded.tbtMs], ['k.ttft', k.ttft], ['k.tbt', k.tbt]] as const) {
    if (!(Number.isFinite(v) && v > 0)) throw new MetricsError(field, `= ${v} must be a finite number > 0`);
  }
  return { ttftMs: k.ttft * unloaded.ttftMs, tbtMs: k.tbt * unloaded.tbtMs };
}

// ---------------------------------------------------------------- input checks

const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

function need(ok: boolean, field: string, detail: string): void {
  if (!ok) throw new MetricsError(field, detail);
}

function checkRun(r: ServeRunRecords): void {
  need(finite(r.startT), 'startT', `= ${r.startT} must be a finite number`);
  need(finite(r.endT) && r.endT >= r.startT, 'endT', `= ${r.endT} must be a finite number >= startT (${r.startT})`);
  need(finite(r.retrainRate) && r.retrainRate >= 0 && r.retrainRate <= 1, 'retrainRate', `= ${r.retrainRate} must be in [0, 1]`);
  need(finite(r.slo?.ttftMs) && r.slo.ttftMs > 0, 'slo.ttftMs', `= ${r.slo?.ttftMs} must be a finite number > 0`);
  need(finite(r.slo?.tbtMs) && r.slo.tbtMs > 0, 'slo.tbtMs', `= ${r.slo?.tbtMs} must be a finite number > 0`);
  for (const k of ['requests', 'iterations', 'finetune'] as const) need(Array.isArray(r[k]), k, 'must be an array');
  r.requests.forEach((q, i) => {
    const f = `requests[${i}]`;
    need(finite(q.arrivalT), `${f}.arrivalT`, `= ${q.arrivalT} must be a finite number`);
    need(q.ttftMs === null || (finite(q.ttftMs) && q.ttftMs >= 0), `${f}.ttftMs`, `= ${q.ttftMs} must be null or a finite number >= 0`);
    need(Array.isArray(q.tbtMs), `${f}.tbtMs`, 'must be an array');
    q.tbtMs.forEach((g, j) => need(finite(g) && g >= 0, `${f}.tbtMs[${j}]`, `= ${g} must be a finite number >= 0`));
    need(Number.isInteger(q.completionTokens) && q.completionTokens >= 0, `${f}.completionTokens`, `= ${q.completionTokens} must be an integer >= 0`);
  });
  r.iterations.forEach((it, i) => {
    const f = `iterations[${i}]`;
    need(finite(it.t), `${f}.t`, `= ${it.t} must be a finite number`);
    need(i === 0 || it.t >= r.iterations[i - 1].t, `${f}.t`, `= ${it.t} is before iterations[${i - 1}].t = ${r.iterations[i - 1]?.t}: iterations must be in order`);
    for (const k of ['wallMs', 'measuredMs', 'schedulerMs'] as const) need(finite(it[k]) && it[k] >= 0, `${f}.${k}`, `= ${it[k]} must be a finite number >= 0`);
    need(typeof it.pendingAfter === 'boolean', `${f}.pendingAfter`, 'must be true or false');
  });
  r.finetune.forEach((s, i) => need(finite(s.t), `finetune[${i}].t`, `= ${s.t} must be a finite number`));
}

// ---------------------------------------------------------------- the metrics

/** Whether a request met the SLO (see the file comment). */
export function meetsSlo(q: RequestStats, slo: SloTargets): boolean {
  if (q.finishReason === 'error' || q.ttftMs === null || q.ttftMs > slo.ttftMs) return false;
  const p95 = percentile(q.tbtMs, 95);
  return p95 === null || p95 <= slo.tbtMs;
}

const ranWork = (it: IterationStats) => it.prefillTokens + it.decodeRows + it.finetuneUnits > 0;
const queued = (it: IterationStats) => it.waitingRequests + it.runningRequests + it.pendingPairs > 0;

/** Wall ms during which work was pending (see the file comment). */
export function pendingWallMs(iterations: readonly ServeIterationRecord[], endT: number): number {
  let ms = 0;
  iterations.forEach((it, i) => {
    if (ranWork(it) || queued(it)) ms += it.wallMs;
    if (it.pendingAfter) {
      const next = i + 1 < iterations.length ? iterations[i + 1].t : endT;
      ms += Math.max(0, next - (it.t + it.wallMs));
    }
  });
  return ms;
}

function timingOf(iterations: readonly IterationStats[]): ServeMetrics['gpu']['timing'] {
  const kinds = new Set(iterations.filter(ranWork).map((it) => it.timing));
  if (kinds.size === 0) return 'none';
  return kinds.size > 1 ? 'mixed' : [...kinds][0];
}

export function serveMetrics(r: ServeRunRecords): ServeMetrics {
  checkRun(r);
  const wallS = (r.endT - r.startT) / 1000;
  const counted = r.requests.filter((q) => q.finishReason !== 'abort');
  const outputTokens = r.requests.reduce((a, q) => a + q.completionTokens, 0);
  const met = counted.filter((q) => meetsSlo(q, r.slo)).length;
  const steps = r.finetune.filter((s) => s.t >= r.startT && s.t <= r.endT);
  const skipped = steps.filter((s) => s.skipped).length;
  const busyMs = r.iterations.reduce((a, it) => a + it.measuredMs, 0);
  const pendingMs = pendingWallMs(r.iterations, r.endT);
  const sched = r.iterations.map((it) => it.schedulerMs);
  const s = summarize(sched);
  return {
    policy: r.policy,
    retrainRate: r.retrainRate,
    wallS,
    requests: {
      finished: r.requests.filter((q) => q.finishReason === 'stop' || q.finishReason === 'length').length,
      aborted: r.requests.length - counted.length,
      errored: r.requests.filter((q) => q.finishReason === 'error').length,
      outputTokens,
      outputTokensPerS: wallS > 0 ? outputTokens / wallS : 0,
    },
    ttftMs: summarize(r.requests.flatMap((q) => (q.ttftMs === null ? [] : [q.ttftMs]))),
    tbtMs: summarize(r.requests.flatMap((q) => q.tbtMs)),
    slo: { ttftMs: r.slo.ttftMs, tbtMs: r.slo.tbtMs, met, counted: counted.length, attainment: counted.length ? met / counted.length : null },
    finetune: {
      steps: steps.length,
      applied: steps.length - skipped,
      skipped,
      stepsPerMin: wallS > 0 ? steps.length / (wallS / 60) : 0,
      meanStepMs: steps.length ? steps.reduce((a, x) => a + x.durationMs, 0) / steps.length : null,
    },
    gpu: { busyMs, pendingMs, busyFraction: pendingMs > 0 ? busyMs / pendingMs : null, timing: timingOf(r.iterations) },
    scheduler: { iterations: sched.length, meanMs: s.mean, p95Ms: s.p95, maxMs: s.max },
  };
}
