/**
 * `mace bench serve`: replay a trace against the in-thread engine under each policy and measure
 * what users and the learner get. Per (retrain rate, policy) a fresh engine (fresh KV cache, fresh
 * learner and adapter) serves the same weights:
 *   1. calibration, unloaded, once per benchmark (calibrate(): one request alone, its TTFT and TBT
 *      are the SLOs' unit and the budget's), then a warm-up on the run's engine (batches of decodes,
 *      every prompt length alone and beside decodes, and two DPO steps per pair length when the policy trains) so shaders are compiled
 *      and the cost model is seeded before the clock starts (no offline profiling);
 *   2. the replay: each request is submitted at its time with exactly its answer length (EOS
 *      ignored, greedy), each pair queued for training at its time;
 *   3. the run lasts a common horizon (horizonFactor × the trace's duration, the same for every
 *      policy) and until the last request finished; fine-tune steps are counted within the
 *      horizon, so steps done compare policies over the same time.
 * Records come from the engine's stats stream; the replay adds arrival times and each iteration's
 * wall span and whether work was left pending (bench/serve/metrics.ts).
 */
import type { EngineModel } from '../../src/engine/engine.ts';
import { createEngine, type Engine } from '../../src/engine/openai.ts';
import { normalizeParams } from '../../src/engine/params.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import type { FinetuneStats, PolicyName, SloTargets, StatsRecord } from '../../src/scheduler/stats.ts';
import { ablationSettings, type Ablation } from './ablation.ts';
import { serveMetrics, sloFromUnloaded, type ServeIterationRecord, type ServeMetrics, type ServeRequestRecord, type SloMultiples } from './metrics.ts';
import { feedbackPair, requestPrompt, traceEvents, traceMaxTokens, type TokenVocab, type Trace } from './trace.ts';

export interface ReplayOptions {
  policy: PolicyName;
  /** A scheduler mechanism switched off for this run (bench/serve/ablation.ts); null: none. */
  ablation: Ablation | null;
  /** Retrain rate of the trace (for the report's rows). */
  retrainRate: number;
  /** Per-submission GPU-time budget (every policy) as a multiple of the unloaded TBT (the decode step). */
  budgetTbtMultiple: number;
  slo: SloMultiples;
  /** LoRA rank of the learner. */
  rank: number;
  kvBudgetBytes: number;
  /** The unloaded latency measured once for all policies (else this run calibrates). */
  unloaded?: SloTargets;
  /** Fine-tune steps are counted over horizonFactor × the trace's duration. */
  horizonFactor: number;
  maxSeqs: number;
  /** Keep every iteration and request record in the result (`mace bench serve --records FILE`). */
  keepRecords?: boolean;
  log?: (message: string) => void;
}

export interface ReplayResult {
  metrics: ServeMetrics;
  unloaded: SloTargets;
  budgetMs: number;
  /** Steps still queued when the run ended. */
  pendingSteps: number;
  /** The raw records (with keepRecords), times in ms since the replay started. */
  records?: { iterations: ServeIterationRecord[]; requests: ServeRequestRecord[]; finetune: FinetuneStats[] };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** Greedy, exactly `n` tokens (EOS ignored): what a trace request asks. */
function forced(engine: Engine, n: number) {
  return normalizeParams({ temperature: 0, max_tokens: n, ignore_eos: true, seed: 0 }, null, engine.core.limits);
}

/** Run one request alone (greedy, exactly `tokens` tokens); its TTFT and mean TBT (ms). Also the drift benchmark's calibration. */
export async function unloadedLatency(engine: Engine, prompt: number[], tokens: number): Promise<SloTargets> {
  const req = engine.core.submit(prompt, forced(engine, tokens));
  for await (const ev of req.events) if (ev.kind === 'done') break;
  const t = req.tokenTimes;
  return { ttftMs: t[0] - req.createdAt, tbtMs: (t[t.length - 1] - t[0]) / Math.max(1, t.length - 1) };
}

async function drainRequest(engine: Engine, prompt: number[], tokens: number): Promise<void> {
  const req = engine.core.submit(prompt, forced(engine, tokens));
  for await (const ev of req.events) if (ev.kind === 'done') break;
}

/**
 * Every batch shape the trace can make, once: a prompt of each length 1..maxPrompt (one token
 * generated) alone and beside 1..maxSeqs-1 running decodes, so each (tokens, sequences) shape's
 * dispatch lists are built and its pipelines compiled before the clock starts (a compile on this
 * device stalls an iteration by 0.3-0.5 s). The same for every policy.
 */
async function warmBatchShapes(engine: Engine, trace: Trace, vocab: TokenVocab, maxSeqs: number): Promise<void> {
  const maxPrompt = Math.max(...trace.requests.map((r) => r.promptTokens));
  const ids = requestPrompt(trace, 0, vocab);
  const longest = [...ids];
  for (let i = 1; longest.length < maxPrompt; i++) longest.push(...requestPrompt(trace, i % trace.requests.length, vocab));
  for (let running = 0; running < maxSeqs; running++) {
    const stop = new AbortController();
    const background = Array.from({ length: running }, (_, i) => engine.core.submit(ids.slice(0, 2 + i), forced(engine, engine.core.limits.maxContext - 4 - i), stop.signal));
    await until(() => background.every((r) => r.tokenTimes.length > 0)); // all decoding
    for (let len = 1; len <= maxPrompt; len++) await drainRequest(engine, longest.slice(0, len), 1);
    stop.abort();
    for (const r of background) for await (const ev of r.events) if (ev.kind === 'done') break;
  }
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await sleep(5);
}

function engineFor(ctx: GpuContext, model: EngineModel, trace: Trace, o: ReplayOptions, budgetMs: number): Engine {
  const c = model.config;
  const maxLen = traceMaxTokens(trace);
  return createEngine(ctx, model, { kvBudgetBytes: o.kvBudgetBytes, maxSeqs: o.maxSeqs, maxTokensPerIteration: 256, maxContext: Math.min(c.maxPositionEmbeddings, Math.max(maxLen.request, maxLen.pair) + 16), adapters: { slots: 1, maxRank: o.rank }, scheduler: { policy: o.policy, budgetMs, tuning: ablationSettings(o.ablation).tuning } });
}

const vocabOf = (model: EngineModel): TokenVocab => {
  const c = model.config;
  return { size: c.vocabSize, exclude: [...new Set([...c.eosTokenIds, ...(c.bosTokenId !== null ? [c.bosTokenId] : []), ...model.tokenizer.eosIds])] };
};

/**
 * The unloaded latency: the trace's first prompt alone on an engine without a budget, after one
 * run that compiles its pipelines. Its TTFT and mean TBT are the SLOs' unit and the budget's.
 */
export async function calibrate(ctx: GpuContext, model: EngineModel, trace: Trace, o: ReplayOptions): Promise<SloTargets> {
  const probe = engineFor(ctx, model, trace, o, 0);
  try {
    const prompt0 = requestPrompt(trace, 0, vocabOf(model));
    await unloadedLatency(probe, prompt0, 4);
    return await unloadedLatency(probe, prompt0, Math.min(trace.requests[0].maxTokens, 32));
  } finally {
    probe.destroy();
  }
}

export async function replayTrace(ctx: GpuContext, model: EngineModel, trace: Trace, o: ReplayOptions): Promise<ReplayResult> {
  const vocab = vocabOf(model);
  const maxLen = traceMaxTokens(trace);
  const trains = o.policy !== 'inference-only';

  // 1. Calibration (shared by every policy of a benchmark when given): the unloaded latency is the
  //    SLOs' unit and the budget's.
  const prompt0 = requestPrompt(trace, 0, vocab);
  const unloaded = o.unloaded ?? (await calibrate(ctx, model, trace, o));
  const budgetMs = o.budgetTbtMultiple * unloaded.tbtMs;
  const slo = sloFromUnloaded(unloaded, o.slo);
  o.log?.(`${o.policy}${o.ablation ? ` (${o.ablation})` : ''} @ ${Math.round(o.retrainRate * 100)}%: unloaded TTFT ${unloaded.ttftMs.toFixed(1)} ms, TBT ${unloaded.tbtMs.toFixed(1)} ms; budget ${budgetMs.toFixed(1)} ms`);

  const engine = engineFor(ctx, model, trace, o, budgetMs);
  await engine.learning.enable({ rank: o.rank, epochs: 1, maxTokens: Math.max(32, Math.ceil((maxLen.pair + 1) / 16) * 16), unitGranularity: ablationSettings(o.ablation).unitGranularity });
  // Warm-up, the same for every policy: batches of 1..maxSeqs decodes, every prompt length alone
  // and beside running decodes, and two training steps per pair length of the trace, so shaders are compiled, dispatch lists
  // built and the cost model has clean samples (an iteration that built a list is not one) before
  // the clock starts.
  await Promise.all(trace.requests.slice(0, o.maxSeqs).map((_, i) => drainRequest(engine, requestPrompt(trace, i, vocab), 6 + i)));
  await drainRequest(engine, prompt0, 8);
  await warmBatchShapes(engine, trace, vocab, o.maxSeqs);
  const buckets = new Map<number, number>();
  trace.feedback.forEach((p, i) => {
    const req = trace.requests.find((r) => r.id === p.requestId)!;
    const b = Math.ceil((req.promptTokens + Math.max(p.chosenTokens, p.rejectedTokens)) / 16);
    if (!buckets.has(b)) buckets.set(b, i);
  });
  let warmSteps = 0;
  for (const i of trains ? buckets.values() : []) {
    for (const k of [0, 1]) engine.core.learnTokens(`warm-up ${i} ${k}`, feedbackPair(trace, i, vocab));
    warmSteps += 2;
  }
  await until(() => (engine.learning.status()?.steps ?? 0) + (engine.learning.status()?.failedSteps ?? 0) >= warmSteps);
  // The step counter moves before the step's record is emitted (the optimizer's stats are read back
  // in between): records of steps up to here belong to the warm-up, even if they arrive later.
  const warmUpSteps = engine.learning.status()?.steps ?? 0;

  // 2. Replay.
  const requests: ServeRequestRecord[] = [];
  const iterations: ServeIterationRecord[] = [];
  const finetune: FinetuneStats[] = [];
  const now = () => performance.now();
  const unsubscribe = engine.core.onStats((r: StatsRecord) => {
    if (r.type === 'iteration') iterations.push({ ...r, wallMs: now() - r.t, pendingAfter: engine.core.pendingWork() });
    else if (r.type === 'request') requests.push({ ...r, arrivalT: r.arrivedAt });
    else if (r.type === 'finetune' && r.step > warmUpSteps) finetune.push(r);
  });
  const startT = now();
  const done: Promise<void>[] = [];
  for (const ev of traceEvents(trace)) {
    await sleep(startT + ev.at * 1000 - now());
    if (ev.kind === 'request') {
      const r = trace.requests[ev.index];
      const req = engine.core.submit(requestPrompt(trace, ev.index, vocab), forced(engine, r.maxTokens));
      done.push((async () => {
        for await (const e of req.events) if (e.kind === 'done') break;
      })());
    } else engine.core.learnTokens(trace.feedback[ev.index].id, feedbackPair(trace, ev.index, vocab));
  }
  const horizonT = startT + o.horizonFactor * trace.durationS * 1000;
  await Promise.all(done);
  await sleep(horizonT - now());
  const endT = now();
  const pendingSteps = engine.learning.status()?.pendingPairs ?? 0;
  unsubscribe();
  engine.destroy();
  const inHorizon = finetune.filter((s) => s.t <= horizonT);
  o.log?.(diagnose(iterations, budgetMs));
  const metrics = serveMetrics({ policy: o.policy, ablation: o.ablation, retrainRate: o.retrainRate, startT, endT, slo, requests, iterations, finetune: inHorizon });
  const shift = <T extends { t: number }>(r: T): T => ({ ...r, t: r.t - startT });
  const records = o.keepRecords ? { iterations: iterations.map(shift), requests: requests.map((q) => ({ ...shift(q), arrivalT: q.arrivalT - startT, arrivedAt: q.arrivedAt - startT })), finetune: inHorizon.map(shift) } : undefined;
  return { metrics, unloaded, budgetMs, pendingSteps, ...(records ? { records } : {}) };
}

/** One line on how well the plans held: prediction error and over-budget iterations by what they ran. */
function diagnose(iterations: readonly ServeIterationRecord[], budgetMs: number): string {
  const groups = new Map<string, { n: number; measured: number; planned: number; over: number; max: number; wall: number }>();
  for (const it of iterations) {
    const key = [it.decodeRows ? 'D' : '', it.prefillTokens ? 'P' : '', it.finetuneUnits ? 'F' : ''].join('') || '-';
    const g = groups.get(key) ?? { n: 0, measured: 0, planned: 0, over: 0, max: 0, wall: 0 };
    const planned = it.plannedMs.decode + it.plannedMs.prefill + it.plannedMs.finetune;
    g.n++;
    g.measured += it.measuredMs;
    g.planned += planned;
    g.max = Math.max(g.max, it.measuredMs);
    if (it.measuredMs > 2 * budgetMs) g.over++;
    g.wall += it.wallMs;
    groups.set(key, g);
  }
  return '    iterations by kind (D decode, P prefill, F fine-tune): ' + [...groups.entries()].map(([k, g]) => `${k} n=${g.n} measured ${(g.measured / g.n).toFixed(1)} / planned ${(g.planned / g.n).toFixed(1)} / wall ${(g.wall / g.n).toFixed(1)} ms, max ${g.max.toFixed(0)}, >2×budget ${g.over}`).join('; ');
}
