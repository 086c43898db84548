/**
 * The simulated load behind the panel-cost measurement: well-formed batches, a stream consistent with
 * itself (times ascending, TTFT = first token − arrival, versions bump on applied steps), and
 * deterministic for a seed.
 */
import { describe, expect, it } from 'vitest';
import type { FinetuneStats, IterationStats, RequestStats, StatsRecord } from '../../src/scheduler/stats.ts';
import { StatsAggregator } from '../../src/ui/devtools/aggregate.ts';
import { DevtoolsOptionError } from '../../src/ui/devtools/errors.ts';
import { StatsLoad } from '../../src/ui/devtools/load.ts';
import { validateStatsBatch } from '../../src/ui/devtools/validate.ts';

function run(seconds: number, seed = 3): StatsRecord[] {
  const load = new StatsLoad({ seed, timeOrigin: 0, arrivalsPerSecond: 2, pairsPerSecond: 1 });
  const out: StatsRecord[] = [];
  for (let t = 16; t <= seconds * 1000; t += 16) {
    const batch = load.advance(t);
    validateStatsBatch(batch);
    out.push(...batch.records);
  }
  return out;
}

describe('StatsLoad', () => {
  const records = run(60);
  const its = records.filter((r): r is IterationStats => r.type === 'iteration');
  const reqs = records.filter((r): r is RequestStats => r.type === 'request');
  const steps = records.filter((r): r is FinetuneStats => r.type === 'finetune');

  it('announces a session first, then serves and trains', () => {
    expect(records[0].type).toBe('session');
    expect(its.length).toBeGreaterThan(1000);
    expect(reqs.length).toBeGreaterThan(50);
    expect(steps.length).toBeGreaterThan(5);
  });

  it('is consistent with itself', () => {
    for (let i = 1; i < its.length; i++) expect(its[i].t).toBeGreaterThan(its[i - 1].t);
    for (const it of its) {
      expect(it.kvBlocksUsed).toBeLessThanOrEqual(it.kvBlocksTotal);
      expect(it.prefillTokens > 0 || it.decodeRows > 0 || it.finetuneUnits > 0).toBe(true);
      const planned = it.plannedMs.prefill + it.plannedMs.decode + it.plannedMs.finetune;
      expect(it.measuredMs / planned).toBeGreaterThanOrEqual(0.85);
    }
    for (const r of reqs) {
      expect(r.ttftMs).toBeGreaterThan(0);
      expect(r.tbtMs.length).toBe(r.completionTokens - 1); // the first token came from the prefill
    }
    let version = 0;
    for (const s of steps) {
      expect(s.adapterVersion).toBe(s.skipped ? version : version + 1);
      version = s.adapterVersion;
    }
  });

  it('same seed, same stream; another seed, another stream', () => {
    expect(JSON.stringify(run(5, 9))).toBe(JSON.stringify(run(5, 9)));
    expect(JSON.stringify(run(5, 9))).not.toBe(JSON.stringify(run(5, 10)));
  });

  it('feeds the aggregator without a bad field', () => {
    const a = new StatsAggregator({ pageTimeOrigin: 0 });
    const load = new StatsLoad({ seed: 1, timeOrigin: 0 });
    for (let t = 1000; t <= 20_000; t += 1000) a.ingest(load.advance(t));
    expect(a.iterations.length).toBe(600);
    expect(a.totals.iterations).toBeGreaterThan(600);
    // Each kind's simulated GPU ms is its prediction times a factor in [0.85, 1.2): a relative error ≤ 0.18.
    const e = a.costErrors();
    expect(e.wallIterations).toBe(0);
    expect(e.unmeasured).toBe(0);
    expect(e.inference.samples).toBeGreaterThan(0);
    expect(e.finetune.samples).toBeGreaterThan(0);
    expect(e.inference.median!).toBeLessThan(0.18);
    expect(e.finetune.median!).toBeLessThan(0.18);
  });

  it('refuses a rate that is not positive, naming the option', () => {
    expect(() => new StatsLoad({ iterationsPerSecond: 0 })).toThrow(DevtoolsOptionError);
    expect(() => new StatsLoad({ arrivalsPerSecond: -1 })).toThrow(/arrivalsPerSecond/);
  });
});
