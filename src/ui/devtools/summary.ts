/**
 * What the panel says in words: the one-line summary shown when collapsed, and a sentence per chart
 * (the charts' text alternative for screen readers, and what a test can read). Pure functions of the
 * aggregator and the current page time.
 */
import type { AdapterVersion, CostError, StatsAggregator } from './aggregate.ts';

export interface PanelSummary {
  /** Decoded tokens per second over the aggregator's rate window; null before any iteration. */
  tokensPerSecond: number | null;
  ttftP95Ms: number | null;
  tbtP95Ms: number | null;
  /** SLOs from the session record; null before one arrived. */
  ttftSloMs: number | null;
  tbtSloMs: number | null;
  /** KV blocks in use and in total at the newest iteration. */
  kv: { used: number; total: number } | null;
  adapter: AdapterVersion | null;
  policy: string | null;
  modelName: string | null;
}

export function summarize(agg: StatsAggregator, now: number): PanelSummary {
  const { ttft, tbt } = agg.percentiles();
  const it = agg.iterations;
  const s = agg.session;
  return {
    tokensPerSecond: agg.decodeTokensPerSecond(now),
    ttftP95Ms: ttft?.p95 ?? null,
    tbtP95Ms: tbt?.p95 ?? null,
    ttftSloMs: s?.slo.ttftMs ?? null,
    tbtSloMs: s?.slo.tbtMs ?? null,
    kv: it.length ? { used: it.last('kvUsed')!, total: it.last('kvTotal')! } : null,
    adapter: agg.currentAdapter(),
    policy: s?.policy ?? null,
    modelName: s?.modelName ?? null,
  };
}

/** Milliseconds the way a person reads them: one decimal under 10 ms, whole numbers above. */
export function formatMs(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms)) return '—';
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

export function formatRate(perSecond: number | null): string {
  if (perSecond === null) return '—';
  return perSecond < 100 ? perSecond.toFixed(1) : String(Math.round(perSecond));
}

/** "12.5 tok/s · TTFT p95 84 ms · KV 120/512 (23%) · adapter feedback v3". */
export function formatSummaryLine(s: PanelSummary): string {
  const kv = s.kv ? `KV ${s.kv.used}/${s.kv.total}${s.kv.total > 0 ? ` (${Math.round((100 * s.kv.used) / s.kv.total)}%)` : ''}` : 'KV —';
  const adapter = s.adapter ? `adapter ${s.adapter.name} v${s.adapter.version}` : 'adapter —';
  return `${formatRate(s.tokensPerSecond)} tok/s · TTFT p95 ${formatMs(s.ttftP95Ms)} · ${kv} · ${adapter}`;
}

/** A ratio as a percentage: one decimal under 10%, whole numbers above; a dash for none. */
export function formatPercent(ratio: number | null): string {
  if (ratio === null || !Number.isFinite(ratio)) return '—';
  const pct = ratio * 100;
  return pct < 10 ? `${pct.toFixed(1)}%` : `${Math.round(pct)}%`;
}

const fixed = (v: number, digits: number) => (Number.isFinite(v) ? v.toFixed(digits) : String(v));

/** One sentence per chart, keyed like the charts (see charts.ts). */
export function describeCharts(agg: StatsAggregator): Record<'gpu' | 'cost' | 'frames' | 'ttft' | 'tbt' | 'kv' | 'queues' | 'dpo' | 'adapter', string> {
  const it = agg.iterations;
  const n = it.length;
  const { ttft, tbt } = agg.percentiles();
  const slo = agg.session?.slo;
  const st = agg.steps;
  const k = st.length;

  let gpu = 'No iteration yet.';
  if (n) {
    const budget = it.get('budgetMs', n - 1);
    const over = it.read('measuredMs').filter((m, i) => m > it.get('budgetMs', i)).length;
    gpu =
      `Last of ${n} iterations: ${formatMs(it.get('measuredMs', n - 1))} measured` +
      `${Number.isFinite(budget) ? ` against a ${formatMs(budget)} budget` : ', no per-frame budget'}` +
      ` (prefill ${formatMs(it.get('gpuPrefill', n - 1))}, decode ${formatMs(it.get('gpuDecode', n - 1))}, fine-tune ${formatMs(it.get('gpuFinetune', n - 1))}); ` +
      `${over} of ${n} over budget.`;
  }
  let cost = 'No iteration yet.';
  if (n) {
    const e = agg.costErrors();
    const kind = (name: string, c: CostError) => `${name} ${formatPercent(c.median)} over ${c.samples} iteration${c.samples === 1 ? '' : 's'}`;
    const how =
      e.wallIterations === 0
        ? 'GPU ms per kind from timestamp queries'
        : `wall timing in ${e.wallIterations} of ${n} iterations: there only an iteration of one kind in one submission is measured; ${e.unmeasured} ${e.unmeasured === 1 ? 'was' : 'were'} not`;
    cost = `Cost model median |predicted − measured| / measured: ${kind('inference', e.inference)}, ${kind('fine-tune', e.finetune)} (${how}).`;
  }
  let frames = 'No iteration yet.';
  if (n) {
    const budget = it.get('budgetMs', n - 1);
    const b = Number.isFinite(budget) ? formatMs(budget) : 'none';
    const interval = it.get('frameIntervalMs', n - 1);
    const withDrops = it.read('frameDrops').filter((d) => d > 0).length;
    const from = !it.get('budgetFromFrames', n - 1)
      ? `Budget ${b}, the constant (no fresh frame report from the page)`
      : Number.isFinite(interval)
        ? `Budget ${formatMs(budget)} from the page’s frames (${formatMs(interval)} frame interval, ${it.get('frameDrops', n - 1)} dropped in the last report)`
        : `Budget ${b} from the page’s frames (the page is hidden: nothing is drawn)`;
    frames = `${from}; ${withDrops} of ${n} iterations were planned while the page dropped frames.`;
  }
  const lat = (name: string, p: typeof ttft, sloMs: number | undefined) =>
    p
      ? `${name} p50 ${formatMs(p.p50)}, p95 ${formatMs(p.p95)}, p99 ${formatMs(p.p99)}${sloMs !== undefined ? ` against a ${formatMs(sloMs)} SLO` : ''}.`
      : `No ${name} sample yet.`;
  const kv = n ? `KV blocks: ${it.get('kvUsed', n - 1)} used, ${it.get('kvTotal', n - 1) - it.get('kvUsed', n - 1)} free of ${it.get('kvTotal', n - 1)}.` : 'No KV data yet.';
  const queues = n
    ? `Queues: ${it.get('waiting', n - 1)} waiting, ${it.get('running', n - 1)} running requests, ${it.get('pendingPairs', n - 1)} preference pairs pending.`
    : 'No queue data yet.';
  const dpo = k
    ? `DPO step ${st.get('step', k - 1)}: loss ${fixed(st.get('loss', k - 1), 4)}, reward accuracy ${fixed(st.get('accuracy', k - 1), 2)}, margin ${fixed(st.get('margin', k - 1), 3)}${st.get('skipped', k - 1) ? ' (skipped)' : ''}.`
    : 'No fine-tune step yet.';
  const adapters = agg.adapters();
  const adapter = adapters.length ? `Adapter versions: ${adapters.map((a) => `${a.name} v${a.version}${a.serving !== undefined && a.serving !== a.version ? ` (serving ${a.serving === null ? 'the base model' : `v${a.serving}`}: the guard rolled back the newer)` : ''}`).join(', ')}.` : 'No adapter trained yet.';
  return { gpu, cost, frames, ttft: lat('TTFT', ttft, slo?.ttftMs), tbt: lat('TBT', tbt, slo?.tbtMs), kv, queues, dpo, adapter };
}

/** One row of the panel's "GPU memory by owner" table. */
export interface MemoryRow {
  owner: string;
  buffers: number;
  bytes: number;
}

/** The latest memory record as table rows, largest owner first, with a total row last; [] before the first. */
export function memoryRows(agg: StatsAggregator): MemoryRow[] {
  const m = agg.memory;
  if (!m) return [];
  const rows = Object.entries(m.byOwner)
    .map(([owner, v]) => ({ owner, buffers: v.buffers, bytes: v.bytes }))
    .sort((a, b) => b.bytes - a.bytes || a.owner.localeCompare(b.owner));
  return [...rows, { owner: 'total', buffers: m.buffers, bytes: m.bytes }];
}

/** The prefix cache in one line, from the latest record; null before the first (or with the cache off). */
export function prefixLine(agg: StatsAggregator): string | null {
  const p = agg.prefix;
  if (!p) return null;
  const saved = p.promptTokens > 0 ? ` (${Math.round((100 * p.cachedTokens) / p.promptTokens)}% of prompt tokens)` : '';
  return `Prefix cache: hit rate ${Math.round(100 * p.hitRate)}% of ${p.queries} prompt blocks · ${p.cachedTokens} tokens reused${saved} · ${p.cachedBlocks} blocks cached · ${p.evictions} evicted · ${p.invalidated} invalidated`;
}

/** Bytes as KiB / MiB / GiB with three significant digits. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : Number(v.toPrecision(3))} ${units[u]}`;
}
