/**
 * <mace-devtools> in a real Chromium: collapsed summary, the toggle, lazily created uPlot charts fed
 * from push() and from an engine's onStats (among them the cost model's predicted vs measured GPU ms), at most one redraw per frame, Performance-panel measures on
 * the three mace-web tracks, and a bad batch reported without breaking the stream. The stats are
 * synthetic: they are the element's input here, not something the product reports.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { StatsBatch, StatsRecord } from '../../src/scheduler/stats.ts';
import { MaceDevtoolsElement, StatsInputError, StatsLoad, type StatsSource, type TrackEntryDetail } from '../../src/ui/devtools/index.ts';
import { iteration, request, session, step } from '../node/devtools-fixtures.ts';

const frame = () => new Promise<number>((r) => requestAnimationFrame(r));
const frames = async (n: number) => {
  for (let i = 0; i < n; i++) await frame();
};
/** Past the charts' redraw interval (100 ms), then a frame to draw in. */
const settle = async () => {
  await new Promise((r) => setTimeout(r, 150));
  await frames(2);
};

function panel(attrs: Record<string, string> = {}): MaceDevtoolsElement {
  const el = document.createElement('mace-devtools');
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.style.width = '900px';
  document.body.append(el);
  return el;
}

const q = <T extends Element>(el: MaceDevtoolsElement, sel: string) => el.shadowRoot!.querySelector<T>(sel)!;

/** Records stamped `ago` ms before now on this page's clock (timeOrigin = the page's own). */
function batch(records: StatsRecord[]): StatsBatch {
  return { timeOrigin: performance.timeOrigin, records };
}

function scenario(): StatsBatch {
  const now = performance.now();
  return batch([
    session({ t: now - 1000, slo: { ttftMs: 500, tbtMs: 80 } }),
    // Timestamp-timed: GPU ms per kind (inference = the prefill/decode pass, fine-tune = its units).
    iteration({ iteration: 1, t: now - 900, prefillTokens: 64, decodeRows: 0, plannedMs: { prefill: 4, decode: 0, finetune: 0 }, measuredMs: 5, timing: 'timestamp', gpuMs: { inference: 5, finetune: null }, kvBlocksUsed: 120, kvBlocksTotal: 512, waitingRequests: 1, runningRequests: 1 }),
    iteration({ iteration: 2, t: now - 800, decodeRows: 4, finetuneUnits: 2, plannedMs: { prefill: 0, decode: 3, finetune: 2 }, measuredMs: 6, timing: 'timestamp', gpuMs: { inference: 3.6, finetune: 2.4 }, kvBlocksUsed: 124, kvBlocksTotal: 512, runningRequests: 4, pendingPairs: 1, budgetMs: 6.5, budgetSource: 'frames', frameIntervalMs: 16.7, frameDrops: 2 }),
    iteration({ iteration: 3, t: now - 700, decodeRows: 4, plannedMs: { prefill: 0, decode: 3, finetune: 0 }, measuredMs: 3, timing: 'timestamp', gpuMs: { inference: 3, finetune: null }, kvBlocksUsed: 128, kvBlocksTotal: 512, runningRequests: 4, budgetMs: 4.2, budgetSource: 'frames', frameIntervalMs: 16.7, frameDrops: 1 }),
    request({ id: 'a', t: now - 650, ttftMs: 84, tbtMs: [12, 14, 15] }),
    step({ t: now - 600, step: 1, adapterVersion: 3, durationMs: 200 }),
  ]);
}

const measuresOf = (track: string) =>
  performance.getEntriesByType('measure').filter((m) => {
    const d = (m as PerformanceMeasure).detail as TrackEntryDetail | null;
    return d?.devtools?.trackGroup === 'mace-web' && d.devtools.track === track;
  });

afterEach(() => {
  document.querySelectorAll('mace-devtools').forEach((e) => e.remove());
});

describe('<mace-devtools>', () => {
  it('is defined on import and starts collapsed with an accessible toggle', () => {
    const el = panel();
    expect(el).toBeInstanceOf(MaceDevtoolsElement);
    const toggle = q<HTMLButtonElement>(el, 'button.toggle');
    expect(toggle.getAttribute('aria-expanded')).toBe('false');
    expect(toggle.getAttribute('aria-controls')).toBe('body');
    expect(toggle.textContent).toContain('mace-web performance');
    expect(q<HTMLElement>(el, '#body').hidden).toBe(true);
    expect(q(el, '.summary').textContent).toBe('— tok/s · TTFT p95 — · KV — · adapter —');
  });

  it('collapsed: the one-line summary updates, no chart is built', async () => {
    const el = panel();
    el.push(scenario());
    await frames(2);
    expect(q(el, '.summary').textContent).toMatch(/^\d+\.\d tok\/s · TTFT p95 84 ms · KV 128\/512 \(25%\) · adapter feedback v3$/);
    expect(el.charts.size).toBe(0);
    expect(el.shadowRoot!.querySelectorAll('canvas')).toHaveLength(0);
  });

  it('expanded: nine uPlot charts with data, accessible names and a text summary each', async () => {
    const el = panel();
    el.push(scenario());
    q<HTMLButtonElement>(el, 'button.toggle').click();
    expect(q<HTMLButtonElement>(el, 'button.toggle').getAttribute('aria-expanded')).toBe('true');
    expect(el.expanded).toBe(true);
    expect(q<HTMLElement>(el, '#body').hidden).toBe(false);
    await frames(2);
    expect([...el.charts.keys()]).toEqual(['gpu', 'cost', 'frames', 'ttft', 'tbt', 'kv', 'queues', 'dpo', 'adapter']);
    const points = Object.fromEntries([...el.charts].map(([id, u]) => [id, u.data[0].length]));
    expect(points).toEqual({ gpu: 3, cost: 3, frames: 3, ttft: 1, tbt: 1, kv: 3, queues: 3, dpo: 1, adapter: 1 });
    const gpu = el.charts.get('gpu')!;
    expect(Array.from(gpu.data[1] as number[])).toEqual([5, 6, 3]); // stacked top = measured
    expect(Array.from(gpu.data[3] as number[]).map((v) => +v.toFixed(6))).toEqual([5, 3.6, 3]); // prefill + decode
    expect(Array.from(gpu.data[6] as number[])).toEqual([16, 6.5, 4.2]); // budget
    const framesChart = el.charts.get('frames')!;
    expect(Array.from(framesChart.data[1] as (number | null)[])).toEqual([null, 6.5, 4.2]); // budget from the page's frames
    expect(Array.from(framesChart.data[2] as (number | null)[])).toEqual([16, null, null]); // the constant before the first report
    expect(Array.from(framesChart.data[4] as number[])).toEqual([0, 2, 1]); // frames dropped
    expect(q(el, 'figure[data-chart="frames"] .chart-summary').textContent).toBe('Budget 4.2 ms from the page’s frames (17 ms frame interval, 1 dropped in the last report); 2 of 3 iterations were planned while the page dropped frames.');
    const cost = el.charts.get('cost')!;
    expect(cost.series.slice(1).map((s) => s.label)).toEqual(['inference predicted', 'inference measured', 'fine-tune predicted', 'fine-tune measured']);
    expect(Array.from(cost.data[1] as (number | null)[])).toEqual([4, 3, 3]); // inference predicted (prefill + decode)
    expect(Array.from(cost.data[2] as (number | null)[])).toEqual([5, 3.6, 3]); // inference measured (gpuMs.inference)
    expect(Array.from(cost.data[3] as (number | null)[])).toEqual([null, 2, null]); // fine-tune predicted, where units ran
    expect(Array.from(cost.data[4] as (number | null)[])).toEqual([null, 2.4, null]); // fine-tune measured (gpuMs.finetune)
    // inference errors 0.2, 0.4/2.4 and 0 -> median 17%; fine-tune 0.4/2.4 = 17%.
    expect(q(el, 'figure[data-chart="cost"] .chart-summary').textContent).toBe(
      'Cost model median |predicted − measured| / measured: inference 17% over 3 iterations, fine-tune 17% over 1 iteration (GPU ms per kind from timestamp queries).',
    );
    expect(el.shadowRoot!.querySelectorAll('figure canvas').length).toBeGreaterThanOrEqual(9);
    for (const fig of el.shadowRoot!.querySelectorAll('figure')) {
      expect(fig.querySelector('.plot')!.getAttribute('role')).toBe('img');
      expect(fig.querySelector('.plot')!.getAttribute('aria-label')).toMatch(/^Chart: /);
      expect(fig.querySelector('.chart-summary')!.textContent!.length).toBeGreaterThan(10);
    }
    expect(q(el, 'figure[data-chart="kv"] .chart-summary').textContent).toBe('KV blocks: 128 used, 384 free of 512.');
    expect(q(el, 'figure[data-chart="ttft"] .chart-summary').textContent).toBe('TTFT p50 84 ms, p95 84 ms, p99 84 ms against a 500 ms SLO.');
    expect(q(el, '.session').textContent).toContain('stories260K · policy mace');

    // New data reaches the existing charts; collapsing hides them again.
    el.push(batch([iteration({ iteration: 4, t: performance.now(), decodeRows: 4, plannedMs: { prefill: 0, decode: 3, finetune: 0 }, measuredMs: 4, kvBlocksUsed: 130, kvBlocksTotal: 512 })]));
    await settle();
    expect(el.charts.get('kv')!.data[1]).toEqual([120, 124, 128, 130]);
    q<HTMLButtonElement>(el, 'button.toggle').click();
    expect(q<HTMLButtonElement>(el, 'button.toggle').getAttribute('aria-expanded')).toBe('false');
    expect(q<HTMLElement>(el, '#body').hidden).toBe(true);
  });

  it('redraws at most once per frame however many batches arrive', async () => {
    const el = panel({ expanded: '' });
    await settle();
    const before = el.cost.renders;
    const load = new StatsLoad({ seed: 4, timeOrigin: performance.timeOrigin, startT: performance.now() - 2000 });
    for (let i = 0; i < 20; i++) el.push(load.advance(performance.now() - 2000 + (i + 1) * 100));
    expect(el.cost.renders).toBe(before); // nothing drawn synchronously
    let elapsedFrames = 0;
    const started = performance.now();
    while (performance.now() - started < 300) {
      await frame();
      elapsedFrames++;
    }
    const renders = el.cost.renders - before;
    expect(renders).toBeGreaterThanOrEqual(1);
    expect(renders).toBeLessThanOrEqual(elapsedFrames);
    expect(renders).toBeLessThan(20);
    expect(el.cost.batches).toBe(20);
    expect(el.charts.get('gpu')!.data[0].length).toBe(el.aggregator.iterations.length); // the charts caught up
  });

  it('draws nothing while off screen, and catches up when scrolled into view', async () => {
    const spacer = document.createElement('div');
    spacer.style.height = '5000px';
    document.body.prepend(spacer);
    try {
      const el = panel({ expanded: '' });
      await settle(); // the IntersectionObserver has reported: off screen
      const before = el.cost.renders;
      el.push(scenario());
      await settle();
      expect(el.cost.renders).toBe(before);
      expect(el.charts.size).toBe(0);
      el.scrollIntoView();
      await settle();
      expect(el.cost.renders).toBeGreaterThan(before);
      expect(el.charts.get('kv')!.data[0].length).toBe(3);
    } finally {
      spacer.remove();
    }
  });

  it('emits Performance-panel measures on the prefill, decode and fine-tune tracks of mace-web', async () => {
    performance.clearMeasures();
    const el = panel();
    el.push(scenario());
    const prefill = measuresOf('prefill');
    const decode = measuresOf('decode');
    const finetune = measuresOf('fine-tune');
    expect([prefill.length, decode.length, finetune.length]).toEqual([1, 2, 2]); // fine-tune: iteration 2's units + the DPO step
    expect(prefill[0].duration).toBeCloseTo(5, 6);
    const d = (decode[0] as PerformanceMeasure).detail as TrackEntryDetail;
    expect(d.devtools).toMatchObject({ dataType: 'track-entry', trackGroup: 'mace-web', track: 'decode', color: 'secondary' });
    expect(d.devtools.properties[0]).toEqual(['iteration', '2']);
    const stepEntry = finetune.find((m) => m.name === 'mace-web DPO step')!;
    expect(stepEntry.duration).toBeCloseTo(200, 6);
  });

  it('performance-tracks="off" emits none', () => {
    performance.clearMeasures();
    const el = panel({ 'performance-tracks': 'off' });
    expect(el.performanceTracks).toBe(false);
    el.push(scenario());
    expect(measuresOf('decode')).toHaveLength(0);
    el.performanceTracks = true;
    el.push(scenario());
    expect(measuresOf('decode')).toHaveLength(2);
  });

  it('subscribes to an engine while connected; a bad batch from it is reported, not thrown', async () => {
    const listeners = new Set<(b: StatsBatch) => void>();
    const engine: StatsSource = {
      onStats(l) {
        listeners.add(l);
        return () => listeners.delete(l);
      },
    };
    const el = document.createElement('mace-devtools');
    el.performanceTracks = false;
    el.engine = engine;
    expect(listeners.size).toBe(0); // not in the document yet
    document.body.append(el);
    expect(listeners.size).toBe(1);
    for (const l of listeners) l(scenario());
    expect(el.aggregator.iterations.length).toBe(3);

    const errors: StatsInputError[] = [];
    document.addEventListener('mace-devtools-error', (e) => errors.push((e as CustomEvent).detail.error), { once: true });
    const bad = { timeOrigin: performance.timeOrigin, records: [{ ...iteration(), measuredMs: 'slow' }] } as unknown as StatsBatch;
    for (const l of listeners) l(bad);
    expect(errors).toHaveLength(1);
    expect(errors[0].field).toBe('records[0].measuredMs');
    expect(q(el, '.error').textContent).toContain('records[0].measuredMs');
    expect(() => el.push(bad)).toThrow(StatsInputError);

    el.remove();
    expect(listeners.size).toBe(0);
    document.body.append(el);
    expect(listeners.size).toBe(1);
    el.engine = null;
    expect(listeners.size).toBe(0);
    expect(() => {
      el.engine = {} as StatsSource;
    }).toThrow(TypeError);
  });

  it('a long stream stays bounded', () => {
    const el = panel({ 'performance-tracks': 'off' });
    const load = new StatsLoad({ seed: 2, timeOrigin: performance.timeOrigin, startT: 0 });
    for (let t = 1000; t <= 60_000; t += 1000) el.push(load.advance(t));
    expect(el.aggregator.totals.iterations).toBeGreaterThan(3000);
    expect(el.aggregator.iterations.length).toBe(600);
  });
});
