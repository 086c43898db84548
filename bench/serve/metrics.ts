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
 * - Colocation: of the iterations that ran decodes, the share that also ran fine-tune units
 *   (mixedIterationFraction): how often learning shared the GPU with chat instead of waiting for a gap.
 * - Fine-tune tokens: Σ over the finished steps of the tokens of their two sequences (prompt +
 *   response each): training work done, comparable across unit granularities.
 * - Stage breakdown (the MACE paper's latency breakdown): GPU ms spent on prefill, decode and
 *   fine-tune work, in total, per finished request (prefill, decode) and per fine-tune step. With
 *   timestamp timing each iteration's inference and fine-tune GPU ms are measured apart; the
 *   inference ms of an iteration holding both prefill chunks and decodes (one forward pass) is split
 *   between them in the ratio of their predicted ms. With wall timing the whole iteration is split
 *   by predicted ms.
 * - Cost-model error per kind: median over iterations of |predicted − measured| / measured, for
 *   decode (iterations whose inference rows are all decodes), prefill (iterations with a prefill
 *   chunk: the whole inference pass) and fine-tune (the fine-tune passes). Timestamp timing measures
 *   each kind on its own; with wall timing only iterations holding one kind count.
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
  /** The scheduler ablation this run used (bench/serve/ablation.ts), absent: none. */
  ablation?: string | null;
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
  ablation: string | null;
  retrainRate: number;
  wallS: number;
  requests: { finished: number; aborted: number; errored: number; outputTokens: number; outputTokensPerS: number };
  ttftMs: Summary;
  tbtMs: Summary;
  slo: { ttftMs: number; tbtMs: number; met: number; counted: number; attainment: number | null };
  finetune: { steps: number; applied: number; skipped: number; stepsPerMin: number; meanStepMs: number | null; tokens: number };
  gpu: { busyMs: number; pendingMs: number; busyFraction: number | null; timing: 'timestamp' | 'wall' | 'mixed' | 'none' };
  scheduler: { iterations: number; meanMs: number | null; p95Ms: number | null; maxMs: number | null };
  colocation: { decodeIterations: number; mixedIterations: number; mixedIterationFraction: number | null };
  stages: StageBreakdown;
  costError: Record<'decode' | 'prefill' | 'finetune', { count: number; median: number | null }>;
}

/** GPU ms by stage (see the file comment). */
export interface StageBreakdown {
  prefillMs: number;
  decodeMs: number;
  finetuneMs: number;
  prefillMsPerRequest: number | null;
  decodeMsPerRequest: number | null;
  finetuneMsPerStep: number | null;
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

const hasDecode = (it: IterationStats) => it.decodeRows > 0;

/** Of the iterations that ran decodes, how many also ran fine-tune units. */
export function colocation(iterations: readonly IterationStats[]): ServeMetrics['colocation'] {
  const decodeIterations = iterations.filter(hasDecode).length;
  const mixedIterations = iterations.filter((it) => hasDecode(it) && it.finetuneUnits > 0).length;
  return { decodeIterations, mixedIterations, mixedIterationFraction: decodeIterations ? mixedIterations / decodeIterations : null };
}

/** An iteration's measured GPU ms by stage (see the file comment). */
export function stageMs(it: IterationStats): { prefill: number; decode: number; finetune: number } {
  const p = it.plannedMs;
  const share = (part: number, whole: number, ms: number) => (whole > 0 ? (ms * part) / whole : 0);
  if (it.timing === 'timestamp' && it.gpuMs) {
    const inf = it.gpuMs.inference ?? 0;
    const pd = p.prefill + p.decode;
    const onlyPrefill = it.decodeRows === 0, onlyDecode = it.prefillTokens === 0;
    const prefill = onlyPrefill ? inf : onlyDecode ? 0 : share(p.prefill, pd, inf);
    return { prefill, decode: inf - prefill, finetune: it.gpuMs.finetune ?? 0 };
  }
  const total = p.prefill + p.decode + p.finetune;
  const kinds = [it.prefillTokens > 0, it.decodeRows > 0, it.finetuneUnits > 0].filter(Boolean).length;
  if (kinds === 1) return { prefill: it.prefillTokens > 0 ? it.measuredMs : 0, decode: it.decodeRows > 0 ? it.measuredMs : 0, finetune: it.finetuneUnits > 0 ? it.measuredMs : 0 };
  return { prefill: share(p.prefill, total, it.measuredMs), decode: share(p.decode, total, it.measuredMs), finetune: share(p.finetune, total, it.measuredMs) };
}

function stages(iterations: readonly IterationStats[], requests: number, steps: number): StageBreakdown {
  let prefillMs = 0, decodeMs = 0, finetuneMs = 0;
  for (const it of iterations) {
    const m = stageMs(it);
    prefillMs += m.prefill;
    decodeMs += m.decode;
    finetuneMs += m.finetune;
  }
  return {
    prefillMs, decodeMs, finetuneMs,
    prefillMsPerRequest: requests ? prefillMs / requests : null,
    decodeMsPerRequest: requests ? decodeMs / requests : null,
    finetuneMsPerStep: steps ? finetuneMs / steps : null,
  };
}

const median = (xs: readonly number[]) => (xs.length === 0 ? null : [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]);

/** Relative prediction errors of the cost model per kind (see the file comment). */
export function costErrors(iterations: readonly IterationStats[]): ServeMetrics['costError'] {
  const errs: Record<'decode' | 'prefill' | 'finetune', number[]> = { decode: [], prefill: [], finetune: [] };
  const add = (k: keyof typeof errs, pred: number, measured: number | null) => {
    if (measured !== null && measured > 0) errs[k].push(Math.abs(pred - measured) / measured);
  };
  for (const it of iterations) {
    const p = it.plannedMs;
    const inference: keyof typeof errs | null = it.prefillTokens > 0 ? 'prefill' : it.decodeRows > 0 ? 'decode' : null;
    if (it.timing === 'timestamp' && it.gpuMs) {
      if (inference) add(inference, p.prefill + p.decode, it.gpuMs.inference);
      if (it.finetuneUnits > 0) add('finetune', p.finetune, it.gpuMs.finetune);
    } else if (it.slices === 1) {
      if (inference && it.finetuneUnits === 0) add(inference, p.prefill + p.decode, it.measuredMs);
      if (!inference && it.finetuneUnits > 0) add('finetune', p.finetune, it.measuredMs);
    }
  }
  const out = {} as ServeMetrics['costError'];
  for (const k of ['decode', 'prefill', 'finetune'] as const) out[k] = { count: errs[k].length, median: median(errs[k]) };
  return out;
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
    ablation: r.ablation ?? null,
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
      tokens: steps.reduce((a, x) => a + x.tokens, 0),
    },
    gpu: { busyMs, pendingMs, busyFraction: pendingMs > 0 ? busyMs / pendingMs : null, timing: timingOf(r.iterations) },
    scheduler: { iterations: sched.length, meanMs: s.mean, p95Ms: s.p95, maxMs: s.max },
    colocation: colocation(r.iterations),
    stages: stages(r.iterations, counted.length, steps.length),
    costError: costErrors(r.iterations),
  };
}
