/**
 * StatsLoad: a simulated engine that produces a stats stream shaped like the real one (chat requests
 * arriving at random, chunked prefill, batched decode, DPO units packed into the budget's leftover,
 * optimizer steps bumping the adapter version). It exists to measure what the panel costs the main
 * thread under a realistic load (cost.ts) and to replay in tests and demos when no GPU is around; its
 * numbers are a simulation and are never presented as measurements of the engine.
 */
import type { FinetuneStats, IterationStats, RequestStats, SessionStats, StatsBatch, StatsRecord } from '../../scheduler/stats.ts';
import { mulberry32 } from '../../util/prng.ts';
import { DevtoolsOptionError } from './errors.ts';

export interface StatsLoadOptions {
  seed?: number;
  /** performance.timeOrigin the simulated worker reports (default: this realm's). */
  timeOrigin?: number;
  /** Producer time of the first iteration, ms (default 0). */
  startT?: number;
  /** Iteration cadence while there is work (default 60/s). */
  iterationsPerSecond?: number;
  /** Mean chat request arrivals per second (default 1). */
  arrivalsPerSecond?: number;
  /** Mean preference pairs added per second (default 0.2). */
  pairsPerSecond?: number;
  budgetMs?: number;
  kvBlocksTotal?: number;
  /** Fine-tune units per DPO optimizer step (default 24). */
  unitsPerStep?: number;
}

interface SimRequest {
  id: string;
  arrival: number;
  prompt: number;
  prefilled: number;
  target: number;
  generated: number;
  lastTokenT: number;
  ttft: number | null;
  gaps: number[];
}

const MAX_RUNNING = 8;
const PREFILL_CHUNK = 128;
const UNIT_MS = 1.1;
const BLOCK = 16;

function positive(option: string, v: number): number {
  if (!(Number.isFinite(v) && v > 0)) throw new DevtoolsOptionError(option, `must be a finite number > 0, got ${v}`);
  return v;
}

export class StatsLoad {
  readonly timeOrigin: number;
  private readonly rand: () => number;
  private readonly period: number;
  private readonly arrivalRate: number;
  private readonly pairRate: number;
  private readonly budgetMs: number;
  private readonly kvTotal: number;
  private readonly unitsPerStep: number;
  private t: number;
  private iteration = 0;
  private nextArrival: number;
  private nextPair: number;
  private requestSeq = 0;
  private readonly waiting: SimRequest[] = [];
  private readonly running: SimRequest[] = [];
  private pendingPairs = 0;
  private unitsDone = 0;
  private stepStart: number | null = null;
  private step = 0;
  private version = 0;
  private announced = false;

  constructor(options: StatsLoadOptions = {}) {
    this.rand = mulberry32(options.seed ?? 1);
    this.timeOrigin = options.timeOrigin ?? globalThis.performance?.timeOrigin ?? 0;
    this.t = options.startT ?? 0;
    this.period = 1000 / positive('iterationsPerSecond', options.iterationsPerSecond ?? 60);
    this.arrivalRate = positive('arrivalsPerSecond', options.arrivalsPerSecond ?? 1);
    this.pairRate = positive('pairsPerSecond', options.pairsPerSecond ?? 0.2);
    this.budgetMs = positive('budgetMs', options.budgetMs ?? 12);
    this.kvTotal = Math.floor(positive('kvBlocksTotal', options.kvBlocksTotal ?? 512));
    this.unitsPerStep = Math.floor(positive('unitsPerStep', options.unitsPerStep ?? 24));
    this.nextArrival = this.t + this.exp(this.arrivalRate);
    this.nextPair = this.t + this.exp(this.pairRate);
  }

  /** Exponential inter-arrival time (ms) for a rate per second. */
  private exp(perSecond: number): number {
    return (-Math.log(1 - this.rand()) / perSecond) * 1000;
  }

  private between(lo: number, hi: number): number {
    return lo + (hi - lo) * this.rand();
  }

  /** Everything the simulated engine reported up to producer time `until` (ms). */
  advance(until: number): StatsBatch {
    const records: StatsRecord[] = [];
    if (!this.announced) {
      this.announced = true;
      const session: SessionStats = { type: 'session', t: this.t, policy: 'mace', budgetMs: this.budgetMs, slo: { ttftMs: 400, tbtMs: 60 }, kvBlocksTotal: this.kvTotal, modelName: 'simulated load' };
      records.push(session);
    }
    while (this.t + this.period <= until) {
      this.t += this.period;
      this.arrive();
      if (this.running.length || this.waiting.length || this.pendingPairs) this.runIteration(records);
    }
    return { timeOrigin: this.timeOrigin, records };
  }

  private arrive(): void {
    while (this.nextArrival <= this.t) {
      const prompt = Math.round(this.between(40, 400));
      this.waiting.push({ id: `load-${++this.requestSeq}`, arrival: this.nextArrival, prompt, prefilled: 0, target: Math.round(this.between(30, 220)), generated: 0, lastTokenT: 0, ttft: null, gaps: [] });
      this.nextArrival += this.exp(this.arrivalRate);
    }
    while (this.nextPair <= this.t) {
      this.pendingPairs++;
      this.nextPair += this.exp(this.pairRate);
    }
  }

  private blocks(r: SimRequest): number {
    return Math.ceil((r.prefilled + r.generated) / BLOCK);
  }

  private runIteration(records: StatsRecord[]): void {
    const used = () => this.running.reduce((s, r) => s + this.blocks(r), 0);
    while (this.waiting.length && this.running.length < MAX_RUNNING && used() + Math.ceil((this.waiting[0].prompt + this.waiting[0].target) / BLOCK) <= this.kvTotal)
      this.running.push(this.waiting.shift()!);

    const decoding = this.running.filter((r) => r.prefilled === r.prompt);
    const prefilling = this.running.find((r) => r.prefilled < r.prompt);
    const prefillTokens = prefilling ? Math.min(PREFILL_CHUNK, prefilling.prompt - prefilling.prefilled) : 0;
    const plannedPrefill = prefillTokens * 0.03;
    const plannedDecode = decoding.length ? 0.6 + 0.12 * decoding.length : 0;
    const room = this.budgetMs - plannedPrefill - plannedDecode;
    const finetuneUnits = this.pendingPairs ? Math.max(0, Math.min(6, Math.floor(room / UNIT_MS))) : 0;
    const plannedFinetune = finetuneUnits * UNIT_MS;
    // Each kind's GPU time misses its prediction on its own, as timestamp queries around its passes show.
    const inferenceMs = (plannedPrefill + plannedDecode) * this.between(0.85, 1.2);
    const finetuneMs = plannedFinetune * this.between(0.85, 1.2);
    const measuredMs = inferenceMs + finetuneMs;
    const start = this.t;
    const done = start + measuredMs;

    if (prefilling) {
      prefilling.prefilled += prefillTokens;
      if (prefilling.prefilled === prefilling.prompt) {
        prefilling.generated = 1; // the prefill's last row samples the first token
        prefilling.ttft = done - prefilling.arrival;
        prefilling.lastTokenT = done;
      }
    }
    for (const r of decoding) {
      r.generated++;
      r.gaps.push(done - r.lastTokenT);
      r.lastTokenT = done;
    }
    const finished: RequestStats[] = [];
    for (const r of [...this.running]) {
      if (r.generated < r.target) continue;
      this.running.splice(this.running.indexOf(r), 1);
      finished.push({ type: 'request', id: r.id, t: done, arrivedAt: r.arrival, promptTokens: r.prompt, completionTokens: r.generated, ttftMs: r.ttft, tbtMs: r.gaps, finishReason: r.target >= 200 ? 'length' : 'stop', adapter: this.version ? 'feedback' : null });
    }

    const it: IterationStats = {
      type: 'iteration',
      iteration: ++this.iteration,
      t: start,
      prefillTokens,
      decodeRows: decoding.length,
      finetuneUnits,
      plannedMs: { prefill: plannedPrefill, decode: plannedDecode, finetune: plannedFinetune },
      budgetMs: this.budgetMs,
      budgetSource: 'constant', // a simulation has no page frames
      frameDrops: 0,
      frameIntervalMs: null,
      measuredMs,
      wallMs: measuredMs,
      timing: 'timestamp',
      gpuMs: { inference: prefillTokens + decoding.length > 0 ? inferenceMs : null, finetune: finetuneUnits > 0 ? finetuneMs : null },
      slices: 1,
      schedulerMs: this.between(0.02, 0.08),
      plansBuilt: 0,
      pipelinesCreated: 0,
      kvBlocksUsed: used(),
      kvBlocksTotal: this.kvTotal,
      waitingRequests: this.waiting.length,
      runningRequests: this.running.length,
      pendingPairs: this.pendingPairs,
    };
    records.push(it, ...finished); // the iteration is reported first, then the requests it finished

    if (finetuneUnits) {
      this.stepStart ??= start;
      this.unitsDone += finetuneUnits;
      if (this.unitsDone >= this.unitsPerStep) records.push(this.finishStep(done));
    }
  }

  private finishStep(t: number): FinetuneStats {
    this.unitsDone = 0;
    this.step++;
    this.pendingPairs--;
    const skipped = this.rand() < 0.02;
    if (!skipped) this.version++;
    const loss = skipped ? NaN : Math.LN2 * Math.exp(-this.step / 40) + this.between(-0.05, 0.05);
    const margin = skipped ? NaN : Math.max(0, Math.LN2 - loss) * 4;
    const step: FinetuneStats = {
      type: 'finetune',
      t,
      adapter: 'feedback',
      adapterVersion: this.version,
      step: this.step,
      loss,
      'rewards/chosen': skipped ? NaN : margin / 2,
      'rewards/rejected': skipped ? NaN : -margin / 2,
      'rewards/margins': margin,
      'rewards/accuracies': skipped ? NaN : Math.min(1, 0.5 + margin / 2),
      grad_norm: skipped ? Infinity : this.between(0.1, 2),
      learning_rate: 5e-5,
      skipped,
      durationMs: t - this.stepStart!,
      tokens: 64,
    };
    this.stepStart = null;
    return step;
  }
}
