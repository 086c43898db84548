/**
 * The report of `mace bench serve`: one row per (policy or ablation, retrain rate) as markdown
 * tables (latency and learning; stage breakdown and cost-model error), and the comparison issues 5
 * and 11 ask for, per retrain rate, each figure against its target:
 *
 * - mace runs fine-tune units in ≥ 30% of the iterations that run decodes (colocation, issue 11);
 * - TBT p95 of mace ÷ inference-only ≤ 1.15 (chat does not slow down while the adapter learns);
 * - TTFT p95 of mace ÷ sync ≤ 0.37, and TBT p95 reduction against sync ≥ 30%;
 * - fine-tune steps of mace ÷ sync ≥ 0.76 over the same horizon;
 * - the cost model's median relative error per kind (decode, prefill, fine-tune) ≤ 25% (mace);
 * - mace's GPU busy fraction while work is pending ≥ 0.85;
 * - mace's scheduler CPU time per iteration: mean < 0.5 ms.
 *
 * inference-only ignores feedback, so its run does not depend on the retrain rate: the row at the
 * same rate is used when there is one, else any inference-only row. sync must be at the same rate.
 */
import type { PolicyName } from '../../src/scheduler/stats.ts';
import type { ServeMetrics } from './metrics.ts';

export const SERVE_TARGETS = Object.freeze({
  mixedIterationFraction: 0.3,
  tbtP95VsInferenceOnly: 1.15,
  ttftP95VsSync: 0.37,
  tbtP95ReductionVsSync: 0.3,
  finetuneStepsVsSync: 0.76,
  costErrorMedian: 0.25,
  busyFraction: 0.85,
  schedulerMeanMs: 0.5,
});

/** One row of the table (and of the JSON output): flat, numbers in ms unless named otherwise. */
export interface ServeRow {
  policy: PolicyName;
  /** The scheduler ablation (null: the policy as it is). */
  ablation: string | null;
  /** policy, or `mace (ablation)`: the row's label. */
  variant: string;
  retrainRate: number;
  requests: number;
  ttftP50: number | null;
  ttftP95: number | null;
  ttftP99: number | null;
  tbtP50: number | null;
  tbtP95: number | null;
  tbtP99: number | null;
  sloAttainment: number | null;
  finetuneSteps: number;
  busyFraction: number | null;
  schedulerMeanMs: number | null;
  schedulerP95Ms: number | null;
  schedulerMaxMs: number | null;
  /** Of the iterations with decodes, the share that also ran fine-tune units. */
  mixedIterationFraction: number | null;
  /** Tokens of the finished fine-tune steps (both sequences of each pair). */
  finetuneTokens: number;
  /** GPU ms by stage (see metrics.ts). */
  prefillMsPerRequest: number | null;
  decodeMsPerRequest: number | null;
  finetuneMsPerStep: number | null;
  /** Cost model: median relative prediction error per kind. */
  costErrorDecode: number | null;
  costErrorPrefill: number | null;
  costErrorFinetune: number | null;
  timing: ServeMetrics['gpu']['timing'];
}

export const variantName = (m: Pick<ServeMetrics, 'policy' | 'ablation'>) => (m.ablation ? `${m.policy} (${m.ablation})` : m.policy);

export function serveRow(m: ServeMetrics): ServeRow {
  return {
    policy: m.policy,
    ablation: m.ablation,
    variant: variantName(m),
    retrainRate: m.retrainRate,
    requests: m.requests.finished,
    ttftP50: m.ttftMs.p50,
    ttftP95: m.ttftMs.p95,
    ttftP99: m.ttftMs.p99,
    tbtP50: m.tbtMs.p50,
    tbtP95: m.tbtMs.p95,
    tbtP99: m.tbtMs.p99,
    sloAttainment: m.slo.attainment,
    finetuneSteps: m.finetune.steps,
    busyFraction: m.gpu.busyFraction,
    schedulerMeanMs: m.scheduler.meanMs,
    schedulerP95Ms: m.scheduler.p95Ms,
    schedulerMaxMs: m.scheduler.maxMs,
    mixedIterationFraction: m.colocation.mixedIterationFraction,
    finetuneTokens: m.finetune.tokens,
    prefillMsPerRequest: m.stages.prefillMsPerRequest,
    decodeMsPerRequest: m.stages.decodeMsPerRequest,
    finetuneMsPerStep: m.stages.finetuneMsPerStep,
    costErrorDecode: m.costError.decode.median,
    costErrorPrefill: m.costError.prefill.median,
    costErrorFinetune: m.costError.finetune.median,
    timing: m.gpu.timing,
  };
}

/** Three significant figures (at least integer precision), '—' for a missing value. */
export function fmt(x: number | null): string {
  if (x === null || !Number.isFinite(x)) return '—';
  if (Math.abs(x) >= 100) return x.toFixed(0);
  return Number(x.toPrecision(3)).toString();
}

const pct = (x: number | null) => (x === null || !Number.isFinite(x) ? '—' : `${Math.round(x * 100)}%`);

/** Rows by retrain rate, then policy in the order mace, inference-only, periodic, sync. */
const POLICY_ORDER: PolicyName[] = ['mace', 'inference-only', 'periodic', 'sync'];
const byRateThenPolicy = (a: ServeMetrics, b: ServeMetrics) =>
  a.retrainRate - b.retrainRate || POLICY_ORDER.indexOf(a.policy) - POLICY_ORDER.indexOf(b.policy) || (a.ablation ?? '').localeCompare(b.ablation ?? '');

export function serveTable(metrics: readonly ServeMetrics[]): string {
  const head = '| retrain | policy | requests | TTFT p50 / p95 / p99 ms | TBT p50 / p95 / p99 ms | SLO met | fine-tune steps | GPU busy (pending) | scheduler ms mean / p95 / max |';
  const rows = [...metrics].sort(byRateThenPolicy).map((m) => {
    const r = serveRow(m);
    return `| ${pct(r.retrainRate)} | ${r.variant} | ${r.requests} | ${fmt(r.ttftP50)} / ${fmt(r.ttftP95)} / ${fmt(r.ttftP99)} | ${fmt(r.tbtP50)} / ${fmt(r.tbtP95)} / ${fmt(r.tbtP99)} | ${pct(r.sloAttainment)} | ${r.finetuneSteps} | ${fmt(r.busyFraction)} | ${fmt(r.schedulerMeanMs)} / ${fmt(r.schedulerP95Ms)} / ${fmt(r.schedulerMaxMs)} |`;
  });
  return [head, '| --- | --- | --- | --- | --- | --- | --- | --- | --- |', ...rows, ''].join('\n');
}

/** Colocation, learning progress, the per-stage GPU breakdown and the cost model's error. */
export function learningTable(metrics: readonly ServeMetrics[]): string {
  const head = '| retrain | policy | mixed iterations | fine-tune steps / tokens | GPU ms per request: prefill / decode | GPU ms per step | cost-model error: decode / prefill / fine-tune | timing |';
  const rows = [...metrics].sort(byRateThenPolicy).map((m) => {
    const r = serveRow(m);
    return `| ${pct(r.retrainRate)} | ${r.variant} | ${pct(r.mixedIterationFraction)} (${m.colocation.mixedIterations}/${m.colocation.decodeIterations}) | ${r.finetuneSteps} / ${r.finetuneTokens} | ${fmt(r.prefillMsPerRequest)} / ${fmt(r.decodeMsPerRequest)} | ${fmt(r.finetuneMsPerStep)} | ${pct(r.costErrorDecode)} / ${pct(r.costErrorPrefill)} / ${pct(r.costErrorFinetune)} | ${r.timing} |`;
  });
  return [head, '| --- | --- | --- | --- | --- | --- | --- | --- |', ...rows, ''].join('\n');
}

export interface ServeCheck {
  name: string;
  value: number | null;
  /** e.g. '≤ 1.15' */
  target: string;
  /** null: not measurable (a run is missing, or a denominator is 0). */
  pass: boolean | null;
}

export interface ServeComparison {
  retrainRate: number;
  checks: ServeCheck[];
}

const ratio = (a: number | null, b: number | null) => (a === null || b === null || b === 0 ? null : a / b);

function check(name: string, value: number | null, op: '≤' | '≥' | '<', target: number): ServeCheck {
  const pass = value === null ? null : op === '≤' ? value <= target : op === '≥' ? value >= target : value < target;
  return { name, value, target: `${op} ${target}`, pass };
}

/** The comparison for every retrain rate that has a mace run. */
export function compareServe(metrics: readonly ServeMetrics[]): ServeComparison[] {
  const T = SERVE_TARGETS;
  const plain = metrics.filter((m) => m.ablation === null);
  const maces = plain.filter((m) => m.policy === 'mace').sort((a, b) => a.retrainRate - b.retrainRate);
  return maces.map((mace) => {
    const rate = mace.retrainRate;
    const inf = plain.find((m) => m.policy === 'inference-only' && m.retrainRate === rate) ?? plain.find((m) => m.policy === 'inference-only');
    const sync = plain.find((m) => m.policy === 'sync' && m.retrainRate === rate);
    const reduction = (a: number | null, b: number | null) => {
      const r = ratio(a, b);
      return r === null ? null : 1 - r;
    };
    return {
      retrainRate: rate,
      checks: [
        check('iterations with decodes that also ran fine-tune units (mace)', mace.colocation.mixedIterationFraction, '≥', T.mixedIterationFraction),
        check('TBT p95, mace ÷ inference-only', ratio(mace.tbtMs.p95, inf?.tbtMs.p95 ?? null), '≤', T.tbtP95VsInferenceOnly),
        check('TTFT p95, mace ÷ sync', ratio(mace.ttftMs.p95, sync?.ttftMs.p95 ?? null), '≤', T.ttftP95VsSync),
        check('TBT p95 reduction vs sync', reduction(mace.tbtMs.p95, sync?.tbtMs.p95 ?? null), '≥', T.tbtP95ReductionVsSync),
        check('fine-tune steps, mace ÷ sync', ratio(mace.finetune.steps, sync?.finetune.steps ?? null), '≥', T.finetuneStepsVsSync),
        check('cost-model median error, decode (mace)', mace.costError.decode.median, '≤', T.costErrorMedian),
        check('cost-model median error, prefill (mace)', mace.costError.prefill.median, '≤', T.costErrorMedian),
        check('cost-model median error, fine-tune (mace)', mace.costError.finetune.median, '≤', T.costErrorMedian),
        check('GPU busy fraction while work is pending (mace)', mace.gpu.busyFraction, '≥', T.busyFraction),
        check('scheduler ms per iteration, mean (mace)', mace.scheduler.meanMs, '<', T.schedulerMeanMs),
      ],
    };
  });
}

const verdict = (p: boolean | null) => (p === null ? 'n/a' : p ? 'pass' : 'FAIL');

export function comparisonToMarkdown(comparisons: readonly ServeComparison[]): string {
  const out: string[] = [];
  for (const c of comparisons) {
    out.push(`Retrain rate ${pct(c.retrainRate)}:`, '', '| figure | value | target | |', '| --- | --- | --- | --- |');
    for (const k of c.checks) out.push(`| ${k.name} | ${fmt(k.value)} | ${k.target} | ${verdict(k.pass)} |`);
    out.push('');
  }
  return out.join('\n');
}

/** The whole report: the table, then the comparison (what `mace bench serve` prints). */
export function serveReport(metrics: readonly ServeMetrics[]): string {
  return `${serveTable(metrics)}\n${learningTable(metrics)}\n${comparisonToMarkdown(compareServe(metrics))}`;
}
