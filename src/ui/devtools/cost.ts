/**
 * The panel's main-thread cost per second: feed a <mace-devtools> a simulated engine stream
 * (load.ts) in real time, one batch per animation frame as the worker client delivers them, and read
 * back the time the panel itself spent (its `cost` counters: validation and aggregation, Performance
 * measures, redraws). The load generator's own time is not counted.
 */
import type { MaceDevtoolsElement, PanelCost } from './element.ts';
import { DevtoolsOptionError } from './errors.ts';
import { StatsLoad, type StatsLoadOptions } from './load.ts';

export interface PanelCostReport {
  seconds: number;
  /** Panel time per second of stream (push + tracks + render), ms/s. */
  msPerSecond: number;
  pushMsPerSecond: number;
  tracksMsPerSecond: number;
  renderMsPerSecond: number;
  batches: number;
  records: number;
  renders: number;
  expanded: boolean;
  performanceTracks: boolean;
}

const nextFrame = () => new Promise<number>((resolve) => requestAnimationFrame(resolve));

export interface PanelCostOptions {
  /** Simulated history pushed before measuring, so the charts hold full windows (default 15 s). */
  warmupSeconds?: number;
  /** The simulated engine (default: a busy chat, ~3 requests/s, 1 preference pair/s). */
  load?: StatsLoadOptions;
}

/** Streams `seconds` of simulated load into the (connected) panel and reports what it cost. */
export async function measurePanelCost(panel: MaceDevtoolsElement, seconds: number, options: PanelCostOptions = {}): Promise<PanelCostReport> {
  if (!(Number.isFinite(seconds) && seconds > 0)) throw new DevtoolsOptionError('seconds', `must be a finite number > 0, got ${seconds}`);
  const warmup = options.warmupSeconds ?? 15;
  if (!(Number.isFinite(warmup) && warmup >= 0)) throw new DevtoolsOptionError('warmupSeconds', `must be a finite number ≥ 0, got ${warmup}`);
  if (!panel.isConnected) throw new DevtoolsOptionError('panel', 'must be in the document (it only draws while connected)');
  const gen = new StatsLoad({ arrivalsPerSecond: 3, pairsPerSecond: 1, timeOrigin: performance.timeOrigin, startT: performance.now() - warmup * 1000, ...options.load });
  panel.push(gen.advance(performance.now())); // history: not counted
  await nextFrame();
  await nextFrame();
  const before: PanelCost = { ...panel.cost };
  const started = performance.now();
  let records = 0;
  let batches = 0;
  for (let now = await nextFrame(); now - started < seconds * 1000; now = await nextFrame()) {
    const batch = gen.advance(performance.now());
    if (batch.records.length === 0) continue;
    records += batch.records.length;
    batches++;
    panel.push(batch);
  }
  await nextFrame(); // let the last batch's redraw happen
  const elapsed = (performance.now() - started) / 1000;
  const c = panel.cost;
  const push = c.pushMs - before.pushMs;
  const tracks = c.tracksMs - before.tracksMs;
  const render = c.renderMs - before.renderMs;
  return {
    seconds: elapsed,
    msPerSecond: (push + tracks + render) / elapsed,
    pushMsPerSecond: push / elapsed,
    tracksMsPerSecond: tracks / elapsed,
    renderMsPerSecond: render / elapsed,
    batches,
    records,
    renders: c.renders - before.renders,
    expanded: panel.expanded,
    performanceTracks: panel.performanceTracks,
  };
}
