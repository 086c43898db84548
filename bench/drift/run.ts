/**
 * `mace bench drift`: the MACE experiment. The real stories260K model is served by the engine under
 * each policy (mace, periodic, sync, inference-only) on one trace of story-prompt requests while a
 * simulated user's preference drifts (bench/drift/rules.ts); every policy gets a fresh engine and
 * adapter and the same trace, user seed, budget and SLOs. Per policy: the live run
 * (bench/drift/replay.ts), then the offline evaluation of every snapshot of the adapter that served
 * (bench/drift/evaluate.ts), then the figures (bench/drift/metrics.ts) and charts (plot.ts).
 *
 * Budget and SLOs: calibrated once, unloaded (one request alone on the base model): the per-
 * submission GPU budget is `budgetTbtMultiple` × the unloaded TBT, the SLOs are 5× TTFT and 2× TBT
 * (bench/serve/metrics.ts DEFAULT_SLO_MULTIPLES), as in `mace bench serve`.
 */
import type { EngineModel } from '../../src/engine/engine.ts';
import { createEngine, type Engine } from '../../src/engine/openai.ts';
import { describeGpu, type GpuContext } from '../../src/gpu/device.ts';
import type { AdapterConfig } from '../../src/learn/adapter.ts';
import { tokenizePair, truncatePair } from '../../src/learn/pair-tokens.ts';
import type { TokenPair } from '../../src/learn/reference.ts';
import { splitPrompts } from '../../src/learn/stories-prefs.ts';
import { loadModel } from '../../src/model/loader.ts';
import type { ModelSource } from '../../src/model/source.ts';
import { LINEAR_MODULES } from '../../src/model/tensors.ts';
import type { PolicyName, SloTargets } from '../../src/scheduler/stats.ts';
import { DEFAULT_SLO_MULTIPLES, meetsSlo, sloFromUnloaded, summarize, type Summary } from '../serve/metrics.ts';
import { unloadedLatency } from '../serve/replay.ts';
import { STORY_PROMPTS } from '../train.ts';
import { DriftEvaluator, type EvalPoint } from './evaluate.ts';
import { AnchorGuard } from './guard.ts';
import { distinctBigramRatio, preDriftLevel, timeAverage, timeToAdapt } from './metrics.ts';
import { cdfChart, lineChart } from './plot.ts';
import { replayDrift, type DriftReplayResult } from './replay.ts';
import { defaultDrift, driftTimes, ruleAt, type DriftSchedule } from './rules.ts';
import { SimulatedUser } from './user.ts';

export interface DriftBenchOptions {
  policies: PolicyName[];
  /** Seconds of trace per policy. */
  durationS: number;
  ratePerS: number;
  answerTokens: number;
  evalEveryS: number;
  feedbackRate: number;
  noise: number;
  maxRegenerations: number;
  anchorEvery: number;
  /** Pairs one rating may add to the learner (default 2; see replay.ts). */
  pairsPerRating: number;
  /** Most anchors one guard decision checks (default 16). */
  maxAnchors: number;
  returnToFirst: boolean;
  seedsPerPrompt: number;
  pairSamplesPerPrompt: number;
  budgetTbtMultiple: number;
  maxSeqs: number;
  rank: number;
  lr: number;
  beta: number;
  epochs: number;
  seed: number;
  env: 'chromium' | 'node';
  onProgress?: (m: string) => void;
}

export { DRIFT_PRESETS } from './presets.ts';

export interface DriftSeriesPoint extends EvalPoint {
  /** Seconds since the policy's run started. */
  t: number;
  phase: string;
  servedVersion: number;
  learntVersion: number;
  decision: 'promote' | 'rollback' | 'unchanged';
  anchorAccuracy: number | null;
  /** Distinct word-bigram ratio of the answers served in the window ending here (null: none). */
  servedDistinctBigrams: number | null;
}

export interface DriftPolicyResult {
  policy: PolicyName;
  series: DriftSeriesPoint[];
  /** Time averages over the trace (step-wise between evaluation points). */
  meanWinRate: number;
  meanClpd: number;
  meanRewardAccuracy: number;
  /** Per drift: seconds until the win rate is back to 90% of its level before the drift (null: never). */
  timeToAdaptS: (number | null)[];
  ttftMs: Summary;
  tbtMs: Summary;
  sloAttainment: number | null;
  answers: number;
  rated: number;
  pairsFormed: number;
  pairsDropped: number;
  anchors: number;
  finetuneSteps: number;
  /** Seconds (since the run started) at which each fine-tune step finished. */
  stepTimesS: number[];
  /** Share of the iterations with decodes that also ran fine-tune units. */
  mixedIterationFraction: number | null;
  rollbacks: number;
  wallS: number;
}

export interface DriftBenchResult {
  model: string;
  gpu: string;
  env: string;
  schedule: { durationS: number; phases: { name: string; startS: number; rule: string }[] };
  options: Omit<DriftBenchOptions, 'onProgress'>;
  unloaded: SloTargets;
  slo: SloTargets;
  budgetMs: number;
  heldOutPrompts: string[];
  trainPrompts: string[];
  policies: DriftPolicyResult[];
  markdown: string;
  /** SVG charts by file name (the CLI writes them with --plot DIR). */
  plots: Record<string, string>;
  wallS: number;
}

function learnerConfig(model: EngineModel, rank: number): AdapterConfig {
  return { r: rank, loraAlpha: 2 * rank, useRslora: false, targetModules: [...LINEAR_MODULES], baseModelNameOrPath: model.config.architecture };
}

/**
 * Compile the training pipelines and give the cost model measured fine-tune samples before the
 * clock starts (two steps, as `mace bench serve` warms up), then put the adapter back to its
 * initial weights and version 0.
 */
async function warmLearner(engine: Engine, prompt: string, o: { epochs: number }): Promise<void> {
  const l = engine.core.learnerState!;
  const initial = await l.snapshot();
  engine.core.learnPair('warm-up 1', { prompt, chosen: ' They liked to play with the ball.', rejected: ' It was a sunny day.' });
  engine.core.learnPair('warm-up 2', { prompt, chosen: ' The dog ran to the park.', rejected: ' She was sad.' });
  while (engine.learning.status()!.steps + engine.learning.status()!.failedSteps < 2 * o.epochs) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 50)); // the step's record and bank copy have landed
  l.restore(initial.host, 0, []);
}

export async function runDriftBench(ctx: GpuContext, source: ModelSource, o: DriftBenchOptions): Promise<DriftBenchResult> {
  const t0 = performance.now();
  const log = o.onProgress ?? (() => {});
  const loaded = await loadModel(ctx, source, { format: 'f32' });
  const model: EngineModel = { config: loaded.config, tokenizer: loaded.tokenizer, weights: loaded.weights };
  const schedule = defaultDrift(o.durationS, { returnToFirst: o.returnToFirst });
  const held = splitPrompts(STORY_PROMPTS, 0.25);
  const heldOutPrompts = STORY_PROMPTS.filter((p) => held.has(p));
  const trainPrompts = STORY_PROMPTS.filter((p) => !held.has(p));
  const maxTokens = 64;
  const adapterConfig = learnerConfig(model, o.rank);
  const evaluator = new DriftEvaluator(ctx, model, { heldOutPrompts, seedsPerPrompt: o.seedsPerPrompt, pairSamplesPerPrompt: o.pairSamplesPerPrompt, answerTokens: o.answerTokens, beta: o.beta, maxTokens, seed: o.seed }, adapterConfig);
  const policies: DriftPolicyResult[] = [];
  const tbtSamples = new Map<PolicyName, number[]>();
  try {
    log(`drift: ${schedule.phases.map((p) => `${p.name} from ${p.startS} s (${p.rule.name})`).join(', ')}; ${trainPrompts.length} trace prompts, ${heldOutPrompts.length} held-out`);
    await evaluator.prepare(schedule, log);
    const probe = createEngine(ctx, model, { maxSeqs: o.maxSeqs, kvBudgetBytes: 16 * 2 ** 20, scheduler: { budgetMs: 0 } });
    const probeIds = model.tokenizer.encode(trainPrompts[0]);
    await unloadedLatency(probe, probeIds, 4);
    const unloaded = await unloadedLatency(probe, probeIds, o.answerTokens);
    probe.destroy();
    const slo = sloFromUnloaded(unloaded, DEFAULT_SLO_MULTIPLES);
    const budgetMs = o.budgetTbtMultiple * unloaded.tbtMs;
    log(`calibration: unloaded TTFT ${unloaded.ttftMs.toFixed(1)} ms, TBT ${unloaded.tbtMs.toFixed(1)} ms; budget ${budgetMs.toFixed(1)} ms`);
    const toTokens = (p: { prompt?: string; chosen: string; rejected: string }) => truncatePair(tokenizePair(model.tokenizer, { prompt: p.prompt ?? '', chosen: p.chosen, rejected: p.rejected }, { eos: null }), maxTokens);

    for (const policy of o.policies) {
      log(`${policy}: live run of ${o.durationS} s`);
      const engine = createEngine(ctx, model, { maxSeqs: o.maxSeqs, kvBudgetBytes: 16 * 2 ** 20, maxTokensPerIteration: 256, modelName: 'stories260K', adapters: { slots: 2, maxRank: o.rank }, scheduler: { policy, budgetMs } });
      let live: DriftReplayResult;
      try {
        await engine.learning.enable({ rank: o.rank, loraAlpha: 2 * o.rank, lr: o.lr, beta: o.beta, epochs: o.epochs, maxTokens });
        if (policy !== 'inference-only') await warmLearner(engine, trainPrompts[0], o);
        const user = new SimulatedUser({ feedbackRate: o.feedbackRate, noise: o.noise, seed: o.seed });
        const guard = new AnchorGuard({});
        const anchorEval = (host: Parameters<typeof evaluator.anchorAccuracy>[0], anchors: readonly { prompt?: string | undefined; chosen: string; rejected: string }[]) =>
          evaluator.anchorAccuracy(host, anchors.map(toTokens).filter((p): p is TokenPair => p !== null));
        live = await replayDrift(engine, user, policy === 'inference-only' ? null : guard, anchorEval, { policy, schedule, prompts: trainPrompts, ratePerS: o.ratePerS, answerTokens: o.answerTokens, evalEveryS: o.evalEveryS, maxRegenerations: o.maxRegenerations, anchorEvery: o.anchorEvery, pairsPerRating: o.pairsPerRating, maxAnchors: o.maxAnchors, seed: o.seed, log });
      } finally {
        engine.destroy();
      }
      log(`${policy}: evaluating ${live.snapshots.length} snapshots`);
      policies.push(await summarizePolicy(live, schedule, evaluator, slo));
      tbtSamples.set(policy, live.requests.flatMap((q) => q.tbtMs));
    }
    const result = { unloaded, slo, budgetMs };
    const plots = drawPlots(policies, schedule, tbtSamples);
    return {
      model: source.description, gpu: describeGpu(ctx), env: o.env,
      schedule: { durationS: schedule.durationS, phases: schedule.phases.map((p) => ({ name: p.name, startS: p.startS, rule: p.rule.description })) },
      options: { ...o, onProgress: undefined } as Omit<DriftBenchOptions, 'onProgress'>,
      ...result, heldOutPrompts, trainPrompts, policies, plots,
      markdown: driftReport(policies, schedule, result),
      wallS: (performance.now() - t0) / 1000,
    };
  } finally {
    evaluator.destroy();
    loaded.weights.destroy();
  }
}

async function summarizePolicy(live: DriftReplayResult, schedule: DriftSchedule, evaluator: DriftEvaluator, slo: SloTargets): Promise<DriftPolicyResult> {
  const series: DriftSeriesPoint[] = [];
  let prevT = -Infinity;
  for (const s of live.snapshots) {
    const phase = ruleAt(schedule, s.t);
    const point = await evaluator.point(`${live.policy}:v${s.servedVersion}`, s.served, phase);
    const window = live.answers.filter((a) => a.t > prevT && a.t <= s.t).map((a) => a.text);
    series.push({ ...point, t: s.t, phase: phase.name, servedVersion: s.servedVersion, learntVersion: s.learntVersion, decision: s.decision, anchorAccuracy: s.anchorAccuracy, servedDistinctBigrams: window.length ? distinctBigramRatio(window) : null });
    prevT = s.t;
  }
  const at = (k: 'winRate' | 'clpd' | 'rewardAccuracy') => series.map((p) => ({ t: p.t, value: p[k] }));
  const win = at('winRate');
  const drifts = driftTimes(schedule);
  const counted = live.requests.filter((q) => q.finishReason !== 'abort');
  return {
    policy: live.policy,
    series,
    meanWinRate: timeAverage(win, 0, schedule.durationS),
    meanClpd: timeAverage(at('clpd'), 0, schedule.durationS),
    meanRewardAccuracy: timeAverage(at('rewardAccuracy'), 0, schedule.durationS),
    timeToAdaptS: drifts.map((d, i) => timeToAdapt(win, d, preDriftLevel(win, d, 3), 0.9, drifts[i + 1] ?? Infinity)),
    ttftMs: summarize(live.requests.flatMap((q) => (q.ttftMs === null ? [] : [q.ttftMs]))),
    tbtMs: summarize(live.requests.flatMap((q) => q.tbtMs)),
    sloAttainment: counted.length ? counted.filter((q) => meetsSlo(q, slo)).length / counted.length : null,
    answers: live.answers.length,
    rated: live.answers.filter((a) => a.rating !== null).length,
    pairsFormed: live.pairsFormed,
    pairsDropped: live.pairsDropped,
    anchors: live.anchorsHeld,
    finetuneSteps: live.steps.length,
    stepTimesS: live.steps.map((st) => (st.t - live.startMs) / 1000),
    mixedIterationFraction: live.colocation.mixedIterationFraction,
    rollbacks: live.snapshots.filter((s) => s.decision === 'rollback').length,
    wallS: live.wallS,
  };
}

const f3 = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? '—' : Math.abs(x) >= 100 ? x.toFixed(0) : Number(x.toPrecision(3)).toString());

export function driftReport(policies: readonly DriftPolicyResult[], schedule: DriftSchedule, c: { unloaded: SloTargets; slo: SloTargets; budgetMs: number }): string {
  const phases = schedule.phases.map((p) => `${p.name} from ${p.startS} s: ${p.rule.description}`).join('; ');
  const head = '| policy | win rate (time avg) | CLPD (time avg) | reward accuracy (time avg) | time to adapt after each drift, s | TTFT p50 / p95 ms | TBT p50 / p95 ms | SLO met | steps | mixed iterations | pairs (anchors) | rollbacks |';
  const rows = policies.map((p) => `| ${p.policy} | ${f3(p.meanWinRate)} | ${f3(p.meanClpd)} | ${f3(p.meanRewardAccuracy)} | ${p.timeToAdaptS.map((x) => (x === null ? 'never' : f3(x))).join(', ') || '—'} | ${f3(p.ttftMs.p50)} / ${f3(p.ttftMs.p95)} | ${f3(p.tbtMs.p50)} / ${f3(p.tbtMs.p95)} | ${p.sloAttainment === null ? '—' : `${Math.round(p.sloAttainment * 100)}%`} | ${p.finetuneSteps} | ${p.mixedIterationFraction === null ? '—' : `${Math.round(p.mixedIterationFraction * 100)}%`} | ${p.pairsFormed} (${p.anchors}) | ${p.rollbacks} |`);
  const by = (name: PolicyName) => policies.find((p) => p.policy === name);
  const mace = by('mace'), sync = by('sync'), periodic = by('periodic'), inf = by('inference-only');
  const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || b === 0 ? null : a / b);
  const checks = [
    `- win rate, mace ÷ sync: ${f3(ratio(mace?.meanWinRate, sync?.meanWinRate))} (target ≥ 0.95); mace − periodic: ${f3(mace && periodic ? mace.meanWinRate - periodic.meanWinRate : null)} (target > 0)`,
    `- CLPD, mace − sync: ${f3(mace && sync ? mace.meanClpd - sync.meanClpd : null)} (mace within 5% of sync's or better); mace − periodic: ${f3(mace && periodic ? mace.meanClpd - periodic.meanClpd : null)} (target > 0)`,
    `- TBT p95, mace ÷ inference-only: ${f3(ratio(mace?.tbtMs.p95 ?? undefined, inf?.tbtMs.p95 ?? undefined))} (target ≤ 1.15)`,
  ];
  return [
    `Drift schedule (${schedule.durationS} s per policy): ${phases}.`,
    `Unloaded TTFT ${f3(c.unloaded.ttftMs)} ms, TBT ${f3(c.unloaded.tbtMs)} ms; budget ${f3(c.budgetMs)} ms per submission; SLOs TTFT ≤ ${f3(c.slo.ttftMs)} ms, TBT p95 ≤ ${f3(c.slo.tbtMs)} ms.`,
    '',
    head,
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    '',
    ...checks,
    '',
  ].join('\n');
}

function drawPlots(policies: readonly DriftPolicyResult[], schedule: DriftSchedule, tbt: ReadonlyMap<PolicyName, number[]>): Record<string, string> {
  const markers = driftTimes(schedule).map((x) => ({ x, label: 'drift' }));
  const line = (k: 'winRate' | 'clpd' | 'rewardAccuracy' | 'distinctBigrams', title: string, yLabel: string) =>
    lineChart({ title, xLabel: 'time (s)', yLabel, series: policies.map((p) => ({ name: p.policy, points: p.series.map((s) => ({ x: s.t, y: s[k] })) })), markers });
  return {
    'drift-win-rate.svg': line('winRate', 'Win rate over the base model (current rule, held-out prompts)', 'win rate'),
    'drift-clpd.svg': line('clpd', 'CLPD: chosen − rejected log-prob, adapter − base (current rule, held-out pairs)', 'CLPD (nats)'),
    'drift-reward-accuracy.svg': line('rewardAccuracy', 'Held-out reward accuracy (current rule)', 'accuracy'),
    'drift-distinct-bigrams.svg': line('distinctBigrams', 'Distinct word bigrams of held-out answers (collapse guard)', 'distinct / total'),
    'drift-tbt-cdf.svg': cdfChart({ title: 'Time between tokens, CDF', xLabel: 'TBT (ms)', series: policies.map((p) => ({ name: p.policy, samples: tbt.get(p.policy) ?? [] })) }),
  };
}
