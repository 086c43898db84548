/**
 * Serving metrics and the report (bench/serve/metrics.ts, report.ts) on crafted records whose every
 * figure is worked out by hand in the comments: nearest-rank percentiles, SLO attainment per request,
 * the GPU busy fraction over pending wall time, fine-tune steps in the run's window, scheduler
 * overhead, and the comparison with its targets.
 */
import { describe, expect, it } from 'vitest';
import type { FinetuneStats, IterationStats, RequestStats } from '../../src/scheduler/stats.ts';
import { colocation, costErrors, meetsSlo, MetricsError, pendingWallMs, stageMs, percentile, serveMetrics, sloFromUnloaded, summarize, type ServeIterationRecord, type ServeMetrics, type ServeRequestRecord, type ServeRunRecords } from '../../bench/serve/metrics.ts';
import { compareServe, comparisonToMarkdown, fmt, learningTable, serveReport, serveRow, serveTable } from '../../bench/serve/report.ts';

function req(id: string, arrivalT: number, ttftMs: number | null, tbtMs: number[], finishReason: RequestStats['finishReason'] = 'length'): ServeRequestRecord {
  const done = arrivalT + (ttftMs ?? 0) + tbtMs.reduce((a, b) => a + b, 0);
  return { type: 'request', id, t: done, arrivalT, arrivedAt: arrivalT, promptTokens: 8, completionTokens: ttftMs === null ? 0 : tbtMs.length + 1, ttftMs, tbtMs, finishReason, adapter: null };
}

function iter(i: number, t: number, wallMs: number, measuredMs: number, work: Partial<IterationStats>, pendingAfter: boolean, schedulerMs: number): ServeIterationRecord {
  return {
    type: 'iteration', iteration: i, t, prefillTokens: 0, decodeRows: 0, finetuneUnits: 0, plannedMs: { prefill: 0, decode: 0, finetune: 0 }, budgetMs: Infinity, budgetSource: 'constant', frameDrops: 0, frameIntervalMs: null,
    measuredMs, timing: 'timestamp', gpuMs: null, slices: 1, schedulerMs, plansBuilt: 0, pipelinesCreated: 0, kvBlocksUsed: 0, kvBlocksTotal: 64, waitingRequests: 0, runningRequests: 0, pendingPairs: 0,
    ...work, wallMs, pendingAfter,
  };
}

function step(t: number, durationMs: number, skipped = false): FinetuneStats {
  return { type: 'finetune', t, adapter: 'a', adapterVersion: 1, step: 1, loss: 0.6, 'rewards/chosen': 0, 'rewards/rejected': 0, 'rewards/margins': 0, 'rewards/accuracies': 0, grad_norm: 1, learning_rate: 1e-4, skipped, durationMs, tokens: 40 };
}

/** The crafted run: every expected figure below is derived from it by hand. */
function run(): ServeRunRecords {
  return {
    policy: 'mace',
    retrainRate: 0.3,
    startT: 1000,
    endT: 11000, // 10 s
    slo: { ttftMs: 250, tbtMs: 35 },
    requests: [
      req('A', 1000, 100, [20, 30, 40]), // own TBT p95 = 40 > 35: miss
      req('B', 2000, 300, [10]), // TTFT 300 > 250: miss
      req('C', 3000, 50, [...Array(19).fill(10), 200]), // own TBT p95 = rank 19 of 20 = 10: met (one slow gap forgiven)
      req('D', 4000, null, [], 'abort'), // not counted
      req('E', 5000, 80, [10], 'error'), // an error is a miss
    ],
    iterations: [
      iter(1, 1000, 100, 80, { decodeRows: 1, runningRequests: 1 }, true, 0.1), // span 100 + gap 1100→1120 = 20
      iter(2, 1120, 100, 90, { decodeRows: 1 }, false, 0.3), // span 100; then idle until 2000 (not counted)
      iter(3, 2000, 200, 150, { prefillTokens: 10, runningRequests: 1 }, true, 0.2), // span 200 + gap 2200→2250 = 50
      iter(4, 2250, 50, 40, { finetuneUnits: 1, pendingPairs: 1 }, false, 0.4), // span 50
      { ...iter(5, 3000, 10, 0, {}, false, 0.05), timing: 'wall' }, // nothing ran or waited: not pending
    ],
    finetune: [step(3000, 500), step(5000, 700, true), step(12000, 900)], // the last one is after endT
  };
}

describe('percentile (nearest rank)', () => {
  it('is the sample at rank ceil(p/100 · n)', () => {
    const xs = [50, 15, 40, 20, 35]; // sorted: 15 20 35 40 50
    expect(percentile(xs, 5)).toBe(15); // rank ceil(0.25) = 1
    expect(percentile(xs, 25)).toBe(20); // rank ceil(1.25) = 2 (rounding the rank would give 15)
    expect(percentile(xs, 30)).toBe(20); // rank ceil(1.5) = 2
    expect(percentile([1, 2, 3, 4], 50)).toBe(2); // a sample, never interpolated (linear would give 2.5)
    expect(percentile(xs, 40)).toBe(20); // rank 2 exactly
    expect(percentile(xs, 50)).toBe(35); // rank ceil(2.5) = 3
    expect(percentile(xs, 100)).toBe(50);
    const hundred = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect([percentile(hundred, 50), percentile(hundred, 95), percentile(hundred, 99)]).toEqual([50, 95, 99]);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBeNull();
    expect(xs).toEqual([50, 15, 40, 20, 35]); // input left as it was
  });

  it('refuses p outside (0, 100]', () => {
    expect(() => percentile([1], 0)).toThrow(MetricsError);
    expect(() => percentile([1], 101)).toThrow('p = 101 must be in (0, 100]');
  });

  it('summarize gives count, mean, p50/p95/p99 and max; all null for no samples', () => {
    expect(summarize([4, 1, 3, 2])).toEqual({ count: 4, mean: 2.5, p50: 2, p95: 4, p99: 4, max: 4 });
    expect(summarize([])).toEqual({ count: 0, mean: null, p50: null, p95: null, p99: null, max: null });
  });
});

describe('SLO', () => {
  it('targets are multiples of the unloaded latency', () => {
    expect(sloFromUnloaded({ ttftMs: 120, tbtMs: 16 }, { ttft: 3, tbt: 1.5 })).toEqual({ ttftMs: 360, tbtMs: 24 });
    expect(() => sloFromUnloaded({ ttftMs: 0, tbtMs: 16 })).toThrow('unloaded.ttftMs = 0 must be a finite number > 0');
    expect(() => sloFromUnloaded({ ttftMs: 1, tbtMs: 16 }, { ttft: 2, tbt: Number.NaN })).toThrow(/^k\.tbt/);
  });

  it('a request meets it when TTFT and its own TBT p95 are within the targets', () => {
    const slo = { ttftMs: 100, tbtMs: 20 };
    expect(meetsSlo(req('x', 0, 100, [20, 20]), slo)).toBe(true); // both exactly at the target
    expect(meetsSlo(req('x', 0, 101, [1]), slo)).toBe(false);
    expect(meetsSlo(req('x', 0, 50, [21]), slo)).toBe(false);
    expect(meetsSlo(req('x', 0, 50, []), slo)).toBe(true); // one token: no gap
    expect(meetsSlo(req('x', 0, null, []), slo)).toBe(false);
    expect(meetsSlo(req('x', 0, 10, [1], 'error'), slo)).toBe(false);
  });
});

describe('serveMetrics', () => {
  it('computes every figure of the crafted run', () => {
    const m = serveMetrics(run());
    expect(m.policy).toBe('mace');
    expect(m.wallS).toBe(10);
    // Completion tokens: A 4, B 2, C 21, D 0, E 2 = 29 over 10 s.
    expect(m.requests).toEqual({ finished: 3, aborted: 1, errored: 1, outputTokens: 29, outputTokensPerS: 2.9 });
    // TTFT samples 100, 300, 50, 80 → sorted 50 80 100 300.
    expect(m.ttftMs).toEqual({ count: 4, mean: 132.5, p50: 80, p95: 300, p99: 300, max: 300 });
    // TBT pooled (25 gaps): 10 ×21, 20, 30, 40, 200 → p50 rank 13 = 10, p95 rank 24 = 40, p99 rank 25 = 200; mean 500/25.
    expect(m.tbtMs).toEqual({ count: 25, mean: 20, p50: 10, p95: 40, p99: 200, max: 200 });
    expect(m.slo).toEqual({ ttftMs: 250, tbtMs: 35, met: 1, counted: 4, attainment: 0.25 });
    // Steps at 3000 (applied) and 5000 (skipped) are in [1000, 11000]; 2 steps in 1/6 min.
    expect(m.finetune).toEqual({ steps: 2, applied: 1, skipped: 1, stepsPerMin: 12, meanStepMs: 600, tokens: 80 }); // 40 tokens each
    // Pending wall: 100 + 20 + 100 + 200 + 50 + 50 = 520; GPU 80 + 90 + 150 + 40 + 0 = 360.
    expect(m.gpu.busyMs).toBe(360);
    expect(m.gpu.pendingMs).toBe(520);
    expect(m.gpu.busyFraction).toBeCloseTo(360 / 520, 12);
    expect(m.gpu.timing).toBe('timestamp'); // the 'wall' iteration ran nothing
    expect(m.scheduler.iterations).toBe(5);
    expect(m.scheduler.meanMs).toBeCloseTo(0.21, 12);
    expect(m.scheduler.p95Ms).toBe(0.4);
    expect(m.scheduler.maxMs).toBe(0.4);
  });

  it('colocation: the share of iterations with decodes that also ran fine-tune units', () => {
    const its = [
      iter(1, 0, 10, 10, { decodeRows: 2 }, true, 0),
      iter(2, 10, 10, 10, { decodeRows: 2, finetuneUnits: 3 }, true, 0),
      iter(3, 20, 10, 10, { finetuneUnits: 5 }, true, 0), // no decode: not counted
      iter(4, 30, 10, 10, { decodeRows: 1, prefillTokens: 8, finetuneUnits: 1 }, true, 0),
    ];
    expect(colocation(its)).toEqual({ decodeIterations: 3, mixedIterations: 2, mixedIterationFraction: 2 / 3 });
    expect(colocation([])).toEqual({ decodeIterations: 0, mixedIterations: 0, mixedIterationFraction: null });
  });

  it('stage GPU ms: timed kinds apart, mixed inference split by predicted ms; wall time split by prediction', () => {
    const planned = { prefill: 3, decode: 1, finetune: 4 };
    const timed = { ...iter(1, 0, 10, 9, { decodeRows: 1, prefillTokens: 8, finetuneUnits: 2, plannedMs: planned }, false, 0), gpuMs: { inference: 6, finetune: 3 } };
    expect(stageMs(timed)).toEqual({ prefill: 4.5, decode: 1.5, finetune: 3 });
    const decodeOnly = { ...iter(2, 0, 10, 5, { decodeRows: 1, plannedMs: { prefill: 0, decode: 2, finetune: 0 } }, false, 0), gpuMs: { inference: 5, finetune: null } };
    expect(stageMs(decodeOnly)).toEqual({ prefill: 0, decode: 5, finetune: 0 });
    const wall = { ...iter(3, 0, 10, 16, { decodeRows: 1, finetuneUnits: 1, plannedMs: { prefill: 0, decode: 2, finetune: 6 } }, false, 0), timing: 'wall' as const };
    expect(stageMs(wall)).toEqual({ prefill: 0, decode: 4, finetune: 12 });
    const r = { ...run(), iterations: [timed, decodeOnly], finetune: [step(3000, 500)] };
    // 2 counted... requests: A, B, C, E counted (D aborted) = 4; one step.
    expect(serveMetrics(r).stages).toEqual({ prefillMs: 4.5, decodeMs: 6.5, finetuneMs: 3, prefillMsPerRequest: 4.5 / 4, decodeMsPerRequest: 6.5 / 4, finetuneMsPerStep: 3 });
  });

  it('cost-model error per kind: median |predicted − measured| / measured', () => {
    const t = (i: number, work: Partial<IterationStats>, gpuMs: { inference: number | null; finetune: number | null }) => ({ ...iter(i, i, 1, 1, work, false, 0), gpuMs });
    const its = [
      t(1, { decodeRows: 1, plannedMs: { prefill: 0, decode: 9, finetune: 0 } }, { inference: 10, finetune: null }), // decode 10%
      t(2, { decodeRows: 1, plannedMs: { prefill: 0, decode: 12, finetune: 0 } }, { inference: 10, finetune: null }), // decode 20%
      t(3, { decodeRows: 1, plannedMs: { prefill: 0, decode: 15, finetune: 0 } }, { inference: 10, finetune: null }), // decode 50%
      t(4, { decodeRows: 1, prefillTokens: 4, finetuneUnits: 2, plannedMs: { prefill: 6, decode: 2, finetune: 3 } }, { inference: 10, finetune: 4 }), // prefill 20%, fine-tune 25%
      { ...iter(5, 5, 8, 8, { finetuneUnits: 1, plannedMs: { prefill: 0, decode: 0, finetune: 6 } }, false, 0), timing: 'wall' as const }, // wall, fine-tune alone: 25%
      { ...iter(6, 6, 8, 8, { decodeRows: 1, finetuneUnits: 1, plannedMs: { prefill: 0, decode: 1, finetune: 6 } }, false, 0), timing: 'wall' as const }, // wall, mixed: not counted
    ];
    const e = costErrors(its);
    expect(e.decode.count).toBe(3);
    expect(e.decode.median).toBeCloseTo(0.2, 12);
    expect(e.prefill).toEqual({ count: 1, median: 0.2 });
    expect(e.finetune).toEqual({ count: 2, median: 0.25 });
  });

  it('counts the gap after the last iteration up to the end of the run when work was left queued', () => {
    const its = [iter(1, 0, 10, 10, { decodeRows: 1 }, true, 0)];
    expect(pendingWallMs(its, 100)).toBe(100); // 10 + (100 − 10)
    expect(pendingWallMs([{ ...its[0], pendingAfter: false }], 100)).toBe(10);
    // An iteration that ran nothing but had a request waiting (e.g. blocked on memory) is pending time.
    expect(pendingWallMs([iter(1, 0, 5, 0, { waitingRequests: 1 }, false, 0)], 10)).toBe(5);
  });

  it('reports mixed timing, no busy fraction without pending time, null attainment without counted requests', () => {
    const r = run();
    r.iterations[1] = { ...r.iterations[1], timing: 'wall' };
    expect(serveMetrics(r).gpu.timing).toBe('mixed');
    const empty: ServeRunRecords = { ...run(), requests: [req('D', 0, null, [], 'abort')], iterations: [], finetune: [] };
    const m = serveMetrics(empty);
    expect(m.gpu).toEqual({ busyMs: 0, pendingMs: 0, busyFraction: null, timing: 'none' });
    expect(m.slo.attainment).toBeNull();
    expect(m.ttftMs.p95).toBeNull();
    expect(m.scheduler).toEqual({ iterations: 0, meanMs: null, p95Ms: null, maxMs: null });
  });

  const bad: [string, (r: any) => void, string][] = [
    ['endT before startT', (r) => (r.endT = 0), 'endT = 0 must be a finite number >= startT (1000)'],
    ['slo', (r) => (r.slo = { ttftMs: 250, tbtMs: 0 }), 'slo.tbtMs = 0 must be a finite number > 0'],
    ['retrainRate', (r) => (r.retrainRate = 2), 'retrainRate = 2 must be in [0, 1]'],
    ['a TBT', (r) => (r.requests[2].tbtMs[3] = Number.NaN), 'requests[2].tbtMs[3] = NaN must be a finite number >= 0'],
    ['a TTFT', (r) => (r.requests[0].ttftMs = -1), 'requests[0].ttftMs = -1 must be null or a finite number >= 0'],
    ['arrival', (r) => delete r.requests[1].arrivalT, 'requests[1].arrivalT = undefined must be a finite number'],
    ['iteration order', (r) => (r.iterations[2].t = 500), 'iterations[2].t = 500 is before iterations[1].t = 1120: iterations must be in order'],
    ['wallMs', (r) => delete r.iterations[0].wallMs, 'iterations[0].wallMs = undefined must be a finite number >= 0'],
    ['pendingAfter', (r) => delete r.iterations[3].pendingAfter, 'iterations[3].pendingAfter must be true or false'],
    ['finetune', (r) => (r.finetune = null), 'finetune must be an array'],
  ];
  for (const [name, mutate, message] of bad) {
    it(`refuses bad records: ${name}`, () => {
      const r = run();
      mutate(r);
      let err: unknown;
      try {
        serveMetrics(r);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(MetricsError);
      expect((err as MetricsError).message).toBe(message);
    });
  }
});

describe('report', () => {
  /** A ServeMetrics with the figures the comparison reads set, the rest from the crafted run. */
  function metrics(policy: ServeMetrics['policy'], retrainRate: number, ttftP95: number, tbtP95: number, steps: number, busy: number, schedMean: number): ServeMetrics {
    const m = serveMetrics({ ...run(), policy, retrainRate });
    return { ...m, ttftMs: { ...m.ttftMs, p95: ttftP95 }, tbtMs: { ...m.tbtMs, p95: tbtP95 }, finetune: { ...m.finetune, steps }, gpu: { ...m.gpu, busyFraction: busy }, scheduler: { ...m.scheduler, meanMs: schedMean } };
  }

  const all = [
    metrics('sync', 0.3, 1000, 80, 4, 0.95, 0.1),
    metrics('mace', 0.3, 400, 60, 3, 0.9, 0.2),
    metrics('inference-only', 0.1, 300, 50, 0, 0.7, 0.1),
    metrics('mace', 0.1, 200, 70, 1, 0.8, 0.6),
  ];

  it('compares mace with inference-only and sync per retrain rate, each figure against its target', () => {
    const c = compareServe(all);
    expect(c.map((x) => x.retrainRate)).toEqual([0.1, 0.3]);
    const at30 = Object.fromEntries(c[1].checks.map((k) => [k.name, [k.value, k.pass]]));
    expect(at30['TBT p95, mace ÷ inference-only']).toEqual([60 / 50, false]); // inference-only from the 10% run: its work ignores feedback
    expect(at30['TTFT p95, mace ÷ sync'][0]).toBeCloseTo(0.4, 12);
    expect(at30['TTFT p95, mace ÷ sync'][1]).toBe(false); // target ≤ 0.37
    expect(at30['iterations with decodes that also ran fine-tune units (mace)']).toEqual([0, false]); // the crafted run never mixes
    expect(at30['TBT p95 reduction vs sync'][0]).toBeCloseTo(0.25, 12);
    expect(at30['TBT p95 reduction vs sync'][1]).toBe(false);
    expect(at30['fine-tune steps, mace ÷ sync']).toEqual([0.75, false]); // target ≥ 0.76
    expect(at30['GPU busy fraction while work is pending (mace)']).toEqual([0.9, true]);
    expect(at30['scheduler ms per iteration, mean (mace)']).toEqual([0.2, true]);
    const at10 = Object.fromEntries(c[0].checks.map((k) => [k.name, [k.value, k.pass]]));
    expect(at10['TBT p95, mace ÷ inference-only']).toEqual([70 / 50, false]);
    expect(at10['TTFT p95, mace ÷ sync']).toEqual([null, null]); // no sync run at 10%
    expect(at10['fine-tune steps, mace ÷ sync']).toEqual([null, null]);
    expect(at10['GPU busy fraction while work is pending (mace)']).toEqual([0.8, false]);
    expect(at10['scheduler ms per iteration, mean (mace)']).toEqual([0.6, false]);
  });

  it('prints the comparison and the table', () => {
    const md = comparisonToMarkdown(compareServe(all));
    expect(md).toContain('Retrain rate 30%:');
    expect(md).toContain('| TTFT p95, mace ÷ sync | 0.4 | ≤ 0.37 | FAIL |');
    expect(md).toContain('| TBT p95 reduction vs sync | 0.25 | ≥ 0.3 | FAIL |');
    expect(md).toContain('| fine-tune steps, mace ÷ sync | — | ≥ 0.76 | n/a |');
    const table = serveTable(all).trim().split('\n');
    expect(table).toHaveLength(6);
    expect(table.slice(2).map((l) => l.split(' | ').slice(0, 2).join(' '))).toEqual(['| 10% mace', '| 10% inference-only', '| 30% mace', '| 30% sync']);
    expect(table[4]).toBe('| 30% | mace | 3 | 80 / 400 / 300 | 10 / 60 / 200 | 25% | 3 | 0.9 | 0.2 / 0.4 / 0.4 |');
    expect(serveReport(all)).toBe(`${serveTable(all)}\n${learningTable(all)}\n${md}`);
    // An ablation is its own row, never a side of the comparison.
    const ablated = { ...all[1], ablation: 'no-aging', tbtMs: { ...all[1].tbtMs, p95: 1 } };
    expect(compareServe([...all, ablated])).toEqual(compareServe(all));
    expect(serveTable([ablated])).toContain('| 30% | mace (no-aging) |');
  });

  it('rows are flat JSON and numbers print with three significant figures', () => {
    const r = serveRow(serveMetrics(run()));
    expect(r).toEqual({
      policy: 'mace', ablation: null, variant: 'mace', retrainRate: 0.3, requests: 3, ttftP50: 80, ttftP95: 300, ttftP99: 300, tbtP50: 10, tbtP95: 40, tbtP99: 200, sloAttainment: 0.25,
      finetuneSteps: 2, busyFraction: 360 / 520, schedulerMeanMs: r.schedulerMeanMs, schedulerP95Ms: 0.4, schedulerMaxMs: 0.4,
      mixedIterationFraction: 0, finetuneTokens: 80, prefillMsPerRequest: 150 / 4, decodeMsPerRequest: 170 / 4, finetuneMsPerStep: 20,
      costErrorDecode: 1, costErrorPrefill: 1, costErrorFinetune: 1, timing: 'timestamp',
    });
    expect([fmt(1234.56), fmt(12.345), fmt(0.012345), fmt(null), fmt(Number.NaN)]).toEqual(['1235', '12.3', '0.0123', '—', '—']);
  });
});
