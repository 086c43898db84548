/**
 * StatsAggregator: the panel's model, with no DOM. It folds the stats stream (src/scheduler/stats.ts)
 * into fixed-size rings that the charts and the summary read:
 *   - per iteration: GPU time split by task kind, budget and where it came from (the page's frames:
 *     their interval and drops), KV blocks, queue depths, and the cost model's predicted against
 *     measured GPU ms per kind (inference, fine-tune) with its median relative error;
 *   - per finished request: exact TTFT / TBT percentiles over a sliding window of samples;
 *   - per DPO step: loss, rewards, accuracy, adapter version.
 * Every time is moved onto the page's clock when it arrives (pageTime = t + batch.timeOrigin -
 * pageTimeOrigin), so records from a worker, the page itself or a replayed trace share one axis.
 */
import type { FinetuneStats, IterationStats, MemoryStats, PrefixStats, RequestStats, SessionStats, StatsBatch } from '../../scheduler/stats.ts';
import { DevtoolsOptionError } from './errors.ts';
import { percentileOfSorted, windowPercentiles, type Percentiles } from './percentile.ts';
import { ColumnRing, NumberRing } from './ring.ts';
import { validateStatsBatch } from './validate.ts';

export interface AggregatorOptions {
  /** Iterations kept for the charts (default 600: ten seconds at 60 iterations/s). */
  iterations?: number;
  /** DPO steps kept (default 600). */
  steps?: number;
  /** Percentile points kept for the latency charts (default 600). */
  latencyPoints?: number;
  /** Sliding window of TTFT samples, one per request (default 256). */
  ttftSamples?: number;
  /** Sliding window of TBT samples, one per token gap (default 4096). */
  tbtSamples?: number;
  /** Window of the decode-rate figure, ms (default 3000). */
  rateWindowMs?: number;
  /** performance.timeOrigin of the page the panel draws on (default: this realm's). */
  pageTimeOrigin?: number;
}

export const ITERATION_COLUMNS = [
  't', 'iteration', 'measuredMs', 'plannedPrefill', 'plannedDecode', 'plannedFinetune',
  'gpuPrefill', 'gpuDecode', 'gpuFinetune', 'gpuUnattributed', 'budgetMs',
  'kvUsed', 'kvTotal', 'waiting', 'running', 'pendingPairs',
  'prefillTokens', 'decodeRows', 'finetuneUnits', 'slices', 'schedulerMs',
  'budgetFromFrames', 'frameDrops', 'frameIntervalMs',
  'predictedInference', 'measuredInference', 'predictedFinetune', 'measuredFinetune', 'timestampTiming',
] as const;
export type IterationColumn = (typeof ITERATION_COLUMNS)[number];

/** One point per finished request (the windows' percentiles as it left them); NaN where a window is empty. */
export const LATENCY_COLUMNS = ['t', 'ttftP50', 'ttftP95', 'ttftP99', 'tbtP50', 'tbtP95', 'tbtP99'] as const;
export type LatencyColumn = (typeof LATENCY_COLUMNS)[number];

export const STEP_COLUMNS = [
  't', 'step', 'loss', 'accuracy', 'margin', 'rewardChosen', 'rewardRejected',
  'gradNorm', 'learningRate', 'adapterVersion', 'skipped', 'durationMs',
] as const;
export type StepColumn = (typeof STEP_COLUMNS)[number];

/** The latest version seen of one adapter. */
export interface AdapterVersion {
  name: string;
  version: number;
  /** Page time of the step that reported it. */
  t: number;
  /** The version serving when a poisoning guard decides (null: the base model); absent: `version` serves. */
  serving?: number | null;
}

/** Adapter names remembered (the least recently updated is forgotten beyond this). */
const MAX_ADAPTERS = 16;

function positive(option: string, v: number): number {
  if (!(Number.isFinite(v) && v > 0)) throw new DevtoolsOptionError(option, `must be a finite number > 0, got ${v}`);
  return v;
}

/**
 * How one iteration's measured GPU time divides among the kinds. With GPU ms per kind (timestamp
 * queries) fine-tune is its own measured time and the inference pass's time is split between prefill
 * and decode by their planned share (they run as one forward pass); without (wall timing) the whole
 * measured time is split by each kind's planned share.
 */
export function splitMeasured(it: Pick<IterationStats, 'plannedMs' | 'measuredMs'> & Partial<Pick<IterationStats, 'gpuMs'>>): { prefill: number; decode: number; finetune: number; unattributed: number } {
  const { prefill, decode, finetune } = it.plannedMs;
  if (it.gpuMs) {
    const inference = it.gpuMs.inference ?? 0;
    const ft = it.gpuMs.finetune ?? 0;
    const rest = Math.max(0, it.measuredMs - inference - ft);
    const pd = prefill + decode;
    // Inference time with no prefill or decode planned belongs to no kind, like untimed time.
    if (pd === 0) return { prefill: 0, decode: 0, finetune: ft, unattributed: inference + rest };
    return { prefill: (inference * prefill) / pd, decode: (inference * decode) / pd, finetune: ft, unattributed: rest };
  }
  const planned = prefill + decode + finetune;
  // No planned work but time measured (e.g. a submission of bookkeeping only): it belongs to no kind.
  if (planned === 0) return { prefill: 0, decode: 0, finetune: 0, unattributed: it.measuredMs };
  const scale = it.measuredMs / planned;
  return { prefill: prefill * scale, decode: decode * scale, finetune: finetune * scale, unattributed: 0 };
}

/** The two kinds the cost model predicts and timestamp queries time apart: the forward pass (prefill + decode) and fine-tuning. */
export type CostKind = 'inference' | 'finetune';

/** One kind in one iteration: the cost model's predicted GPU ms and the measured ms (null: the kind did not run / was not measured). */
export interface KindCost {
  predicted: number | null;
  measured: number | null;
}

/**
 * The cost model's prediction against the measurement for each kind of one iteration. A kind ran when
 * the iteration held its work (prefill tokens or decode rows; fine-tune units); its prediction is the
 * plan's (plannedMs.prefill + plannedMs.decode, plannedMs.finetune). Measured: with timestamp timing
 * each kind's own GPU ms (gpuMs); with wall timing only an iteration that held one kind and ran as one
 * submission is measured (its measuredMs, the wall time, is that kind's), as the cost model itself
 * learns; a mixed or sliced wall-timed iteration has a prediction and no measurement.
 */
export function predictedVsMeasured(
  it: Pick<IterationStats, 'plannedMs' | 'measuredMs' | 'gpuMs' | 'slices' | 'prefillTokens' | 'decodeRows' | 'finetuneUnits'>,
): Record<CostKind, KindCost> {
  const ranInference = it.prefillTokens + it.decodeRows > 0;
  const ranFinetune = it.finetuneUnits > 0;
  const p = it.plannedMs;
  let inference: number | null = null;
  let finetune: number | null = null;
  if (it.gpuMs) {
    inference = ranInference ? it.gpuMs.inference : null;
    finetune = ranFinetune ? it.gpuMs.finetune : null;
  } else if (it.slices === 1 && ranInference !== ranFinetune) {
    if (ranInference) inference = it.measuredMs;
    else finetune = it.measuredMs;
  }
  return {
    inference: { predicted: ranInference ? p.prefill + p.decode : null, measured: inference },
    finetune: { predicted: ranFinetune ? p.finetune : null, measured: finetune },
  };
}

/** Median relative error |predicted − measured| / measured of one kind over the kept iterations. */
export interface CostError {
  /** Nearest-rank median; null when no iteration of that kind was measured (above 0 ms). */
  median: number | null;
  /** Iterations it is the median of. */
  samples: number;
}

export interface CostErrors {
  inference: CostError;
  finetune: CostError;
  /** Iterations kept (the window the errors are over). */
  iterations: number;
  /** Of those, timed by wall clock (no GPU ms per kind). */
  wallIterations: number;
  /** Of those, iterations where a kind ran but was not measured (wall timing: mixed or sliced). */
  unmeasured: number;
}

export class StatsAggregator {
  readonly iterations: ColumnRing<IterationColumn>;
  readonly latency: ColumnRing<LatencyColumn>;
  readonly steps: ColumnRing<StepColumn>;
  readonly ttftWindow: NumberRing;
  readonly tbtWindow: NumberRing;
  readonly rateWindowMs: number;
  readonly pageTimeOrigin: number;
  /** The latest session record, its time on the page clock; null before the first. */
  session: SessionStats | null = null;
  /** The latest GPU memory record (live buffers by owner), its time on the page clock; null before the first. */
  memory: MemoryStats | null = null;
  /** The latest prefix-cache record (cumulative counts), its time on the page clock; null before the first. */
  prefix: PrefixStats | null = null;
  /** How the newest iteration's time was measured. */
  timing: IterationStats['timing'] | null = null;
  /** Totals since the last clear (not windowed). */
  readonly totals = { batches: 0, iterations: 0, requests: 0, steps: 0, completionTokens: 0, finish: { stop: 0, length: 0, abort: 0, error: 0 } };
  /** Page time of the first iteration since the last clear (start of the decode-rate window). */
  private firstIterationT: number | null = null;
  private readonly adapterVersions = new Map<string, AdapterVersion>();
  /** Percentiles of the windows as of the last request batch (the windows change only then). */
  private current: { ttft: Percentiles | null; tbt: Percentiles | null } = { ttft: null, tbt: null };
  /** costErrors() as of the last iteration (null: not computed since the rings changed). */
  private costCache: CostErrors | null = null;

  constructor(options: AggregatorOptions = {}) {
    this.iterations = new ColumnRing(ITERATION_COLUMNS, options.iterations ?? 600, 'iterations');
    this.latency = new ColumnRing(LATENCY_COLUMNS, options.latencyPoints ?? 600, 'latencyPoints');
    this.steps = new ColumnRing(STEP_COLUMNS, options.steps ?? 600, 'steps');
    this.ttftWindow = new NumberRing(options.ttftSamples ?? 256, 'ttftSamples');
    this.tbtWindow = new NumberRing(options.tbtSamples ?? 4096, 'tbtSamples');
    this.rateWindowMs = positive('rateWindowMs', options.rateWindowMs ?? 3000);
    const origin = options.pageTimeOrigin ?? globalThis.performance?.timeOrigin ?? 0;
    if (!Number.isFinite(origin)) throw new DevtoolsOptionError('pageTimeOrigin', `must be finite, got ${origin}`);
    this.pageTimeOrigin = origin;
  }

  /** Validates the whole batch first (StatsInputError naming the field), then applies its records in order. */
  ingest(batch: StatsBatch): void {
    validateStatsBatch(batch);
    const offset = batch.timeOrigin - this.pageTimeOrigin;
    for (const r of batch.records) {
      const t = r.t + offset;
      switch (r.type) {
        case 'iteration':
          this.addIteration(r, t);
          break;
        case 'request':
          this.addRequest(r, t);
          break;
        case 'finetune':
          this.addStep(r, t);
          break;
        case 'session':
          this.session = { ...r, slo: { ...r.slo }, t };
          break;
        case 'memory':
          this.memory = { ...r, byOwner: { ...r.byOwner }, t };
          break;
        case 'prefix':
          this.prefix = { ...r, t };
          break;
      }
    }
    this.totals.batches++;
  }

  private addIteration(r: IterationStats, t: number): void {
    const gpu = splitMeasured(r);
    const cost = predictedVsMeasured(r);
    this.iterations.push({
      t,
      iteration: r.iteration,
      measuredMs: r.measuredMs,
      plannedPrefill: r.plannedMs.prefill,
      plannedDecode: r.plannedMs.decode,
      plannedFinetune: r.plannedMs.finetune,
      gpuPrefill: gpu.prefill,
      gpuDecode: gpu.decode,
      gpuFinetune: gpu.finetune,
      gpuUnattributed: gpu.unattributed,
      budgetMs: r.budgetMs,
      kvUsed: r.kvBlocksUsed,
      kvTotal: r.kvBlocksTotal,
      waiting: r.waitingRequests,
      running: r.runningRequests,
      pendingPairs: r.pendingPairs,
      prefillTokens: r.prefillTokens,
      decodeRows: r.decodeRows,
      finetuneUnits: r.finetuneUnits,
      slices: r.slices,
      schedulerMs: r.schedulerMs,
      // 1: the budget came from the page's frames, 0: the constant. A missing interval is NaN (a gap).
      budgetFromFrames: r.budgetSource === 'frames' ? 1 : 0,
      frameDrops: r.frameDrops,
      frameIntervalMs: r.frameIntervalMs ?? NaN,
      // NaN: the kind did not run (no prediction) or was not measured.
      predictedInference: cost.inference.predicted ?? NaN,
      measuredInference: cost.inference.measured ?? NaN,
      predictedFinetune: cost.finetune.predicted ?? NaN,
      measuredFinetune: cost.finetune.measured ?? NaN,
      timestampTiming: r.timing === 'timestamp' ? 1 : 0,
    });
    this.costCache = null;
    this.timing = r.timing;
    if (this.firstIterationT === null) this.firstIterationT = t;
    this.totals.iterations++;
  }

  private addRequest(r: RequestStats, t: number): void {
    if (r.ttftMs !== null) this.ttftWindow.push(r.ttftMs);
    // Only the newest `capacity` gaps can stay in the window; skip the rest without touching the ring.
    const from = Math.max(0, r.tbtMs.length - this.tbtWindow.capacity);
    for (let i = from; i < r.tbtMs.length; i++) this.tbtWindow.push(r.tbtMs[i]);
    this.totals.requests++;
    this.totals.completionTokens += r.completionTokens;
    this.totals.finish[r.finishReason]++;
    // A sort of each window per request (≤ 4096 numbers): requests finish a few times a second at most.
    this.addLatencyPoint(t);
  }

  private addLatencyPoint(t: number): void {
    const ttft = windowPercentiles(this.ttftWindow.values());
    const tbt = windowPercentiles(this.tbtWindow.values());
    this.current = { ttft, tbt };
    this.latency.push({
      t,
      ttftP50: ttft?.p50 ?? NaN,
      ttftP95: ttft?.p95 ?? NaN,
      ttftP99: ttft?.p99 ?? NaN,
      tbtP50: tbt?.p50 ?? NaN,
      tbtP95: tbt?.p95 ?? NaN,
      tbtP99: tbt?.p99 ?? NaN,
    });
  }

  private addStep(r: FinetuneStats, t: number): void {
    this.steps.push({
      t,
      step: r.step,
      loss: r.loss,
      accuracy: r['rewards/accuracies'],
      margin: r['rewards/margins'],
      rewardChosen: r['rewards/chosen'],
      rewardRejected: r['rewards/rejected'],
      gradNorm: r.grad_norm,
      learningRate: r.learning_rate,
      adapterVersion: r.adapterVersion,
      skipped: r.skipped ? 1 : 0,
      durationMs: r.durationMs,
    });
    // Re-insert so the Map's order is least-recently-updated first.
    this.adapterVersions.delete(r.adapter);
    this.adapterVersions.set(r.adapter, { name: r.adapter, version: r.adapterVersion, t, ...(r.servingVersion !== undefined ? { serving: r.servingVersion } : {}) });
    if (this.adapterVersions.size > MAX_ADAPTERS) this.adapterVersions.delete(this.adapterVersions.keys().next().value!);
    this.totals.steps++;
  }

  /**
   * Current TTFT and TBT percentiles of the sliding windows (null: no sample yet). Computed when
   * requests arrive, not here: the panel asks every frame, the windows change far less often.
   */
  percentiles(): { ttft: Percentiles | null; tbt: Percentiles | null } {
    return { ttft: this.current.ttft && { ...this.current.ttft }, tbt: this.current.tbt && { ...this.current.tbt } };
  }

  /**
   * Decoded tokens per second: decode rows of the iterations that started in the last rateWindowMs
   * before `now` (page ms), over that window; over the time since the first iteration when the stream
   * is younger than the window, or since the oldest kept iteration when the ring dropped some inside
   * it. Null before any iteration; falls to 0 when the engine goes idle.
   */
  decodeTokensPerSecond(now: number): number | null {
    if (this.firstIterationT === null || this.iterations.length === 0) return null;
    const n = this.iterations.length;
    const newestEnd = this.iterations.get('t', n - 1) + this.iterations.get('measuredMs', n - 1);
    const end = Math.max(now, newestEnd);
    let start = Math.max(end - this.rateWindowMs, this.firstIterationT);
    if (this.iterations.dropped > 0) start = Math.max(start, this.iterations.get('t', 0));
    let tokens = 0;
    for (let i = n - 1; i >= 0; i--) {
      const t = this.iterations.get('t', i);
      if (t < start) break;
      tokens += this.iterations.get('decodeRows', i);
    }
    const elapsed = end - start;
    return elapsed > 0 ? (tokens * 1000) / elapsed : null;
  }

  /**
   * The cost model's median relative error per kind over the kept iterations (the window the charts
   * show), with the rules of predictedVsMeasured; an iteration measured at 0 ms has no relative
   * error and is left out. Computed on demand, at most once per new iteration.
   */
  costErrors(): CostErrors {
    if (this.costCache) return { ...this.costCache, inference: { ...this.costCache.inference }, finetune: { ...this.costCache.finetune } };
    const it = this.iterations;
    const n = it.length;
    const errs: Record<CostKind, number[]> = { inference: [], finetune: [] };
    let wallIterations = 0;
    let unmeasured = 0;
    for (let i = 0; i < n; i++) {
      if (it.get('timestampTiming', i) === 0) wallIterations++;
      let missing = false;
      for (const [kind, pc, mc] of [['inference', 'predictedInference', 'measuredInference'], ['finetune', 'predictedFinetune', 'measuredFinetune']] as const) {
        const p = it.get(pc, i);
        if (Number.isNaN(p)) continue;
        const m = it.get(mc, i);
        if (Number.isNaN(m)) missing = true;
        else if (m > 0) errs[kind].push(Math.abs(p - m) / m);
      }
      if (missing) unmeasured++;
    }
    const of = (xs: number[]): CostError => ({ median: xs.length ? percentileOfSorted(Float64Array.from(xs).sort(), 50) : null, samples: xs.length });
    this.costCache = { inference: of(errs.inference), finetune: of(errs.finetune), iterations: n, wallIterations, unmeasured };
    return this.costErrors();
  }

  /** Latest version of every adapter seen (least recently updated first). */
  adapters(): AdapterVersion[] {
    return [...this.adapterVersions.values()].map((a) => ({ ...a }));
  }

  /** The adapter whose step came last, or null before any step. */
  currentAdapter(): AdapterVersion | null {
    let last: AdapterVersion | undefined;
    for (const a of this.adapterVersions.values()) last = a;
    return last ? { ...last } : null;
  }

  /** Forget everything (a new model was loaded, or the user pressed clear). */
  clear(): void {
    this.iterations.clear();
    this.latency.clear();
    this.steps.clear();
    this.ttftWindow.clear();
    this.tbtWindow.clear();
    this.adapterVersions.clear();
    this.session = null;
    this.memory = null;
    this.prefix = null;
    this.current = { ttft: null, tbt: null };
    this.timing = null;
    this.costCache = null;
    this.firstIterationT = null;
    Object.assign(this.totals, { batches: 0, iterations: 0, requests: 0, steps: 0, completionTokens: 0, finish: { stop: 0, length: 0, abort: 0, error: 0 } });
  }
}
