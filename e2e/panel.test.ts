/**
 * End to end: the demo's `<mace-devtools>` panel on the real engine worker that serves the
 * `<mace-chat>` beside it (built demo, system Chromium, WebGPU on SwiftShader without a GPU, the
 * bundled stories260K). Nothing is simulated: the stats come from the worker's scheduler, the
 * Performance tracks from the page's own performance.measure calls, the DPO point from a real
 * fine-tune step on a thumbs pair.
 *
 * Prints the panel's main-thread cost per second while a reply streams (collapsed and expanded), the
 * figure docs/BENCHMARKS.md records. Screenshots and the recorded trace go to e2e/artifacts/; the
 * panel's screenshot is copied to docs/screenshots/panel.png when that file is missing or
 * MACE_UPDATE_SCREENSHOTS=1.
 */
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EngineStats } from '../src/engine/types.ts';
import type { MaceDevtoolsElement, PanelCost } from '../src/ui/devtools/element.ts';
import { launch, waitForState, watchedContext, type Watched } from './browser.ts';
import { ROOT, startStaticServer, type StaticServer } from './server.ts';

const ARTIFACTS = join(ROOT, 'e2e', 'artifacts');
const DOC_SCREENSHOT = join(ROOT, 'docs', 'screenshots', 'panel.png');
/** How long the fine-tune step may take to show up after the pair forms (SwiftShader is slow). */
const LEARN_TIMEOUT_MS = 150_000;
/** Short answers where only their stats matter; longer ones where the panel's cost is measured per second. */
const SHORT_REPLY = '48';
const COST_REPLY = '120';
/** Title of the panel's toggle button (its accessible name). */
const TOGGLE_NAME = 'mace-web performance';

let server: StaticServer;
let browser: Browser;

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  server = await startStaticServer();
  browser = await launch();
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

// ---- chat helpers (the widget's DOM is read through its open shadow root)

function maxTokens(page: Page, n: string): Promise<void> {
  return page.evaluate((v) => document.querySelector('mace-chat')!.setAttribute('max-tokens', v), n);
}

function answerCount(page: Page): Promise<number> {
  return page.evaluate(() => document.querySelector('mace-chat')!.shadowRoot!.querySelectorAll('.msg.assistant').length);
}

function lastAnswerText(page: Page): Promise<string> {
  return page.evaluate(() => {
    const all = document.querySelector('mace-chat')!.shadowRoot!.querySelectorAll('.msg.assistant');
    return all[all.length - 1]?.querySelector('.bubble')?.textContent ?? '';
  });
}

/** Waits until `count` answers are shown, the last one finished (and showing `pager`, e.g. "2 / 2"). */
async function waitForAnswer(page: Page, count: number, pager = ''): Promise<void> {
  await page.waitForFunction(
    ([n, pages]) => {
      const all = document.querySelector('mace-chat')!.shadowRoot!.querySelectorAll('.msg.assistant');
      const last = all[all.length - 1];
      return all.length === n && last.getAttribute('aria-busy') === 'false' && (pages === '' || last.querySelector('.pager')?.textContent?.includes(pages));
    },
    [count, pager] as const,
    { timeout: 120_000 },
  );
}

/** Types a message and presses Enter; resolves when its answer has finished streaming. */
async function send(page: Page, text: string): Promise<void> {
  const before = await answerCount(page);
  const input = page.locator('mace-chat textarea');
  await input.fill(text);
  await input.press('Enter');
  await waitForAnswer(page, before + 1);
}

function feedbackEvents(page: Page): Promise<{ completionId: string; rating: string; pairFormed: boolean }[]> {
  return page.evaluate(() =>
    (window as unknown as { __mace: { events: { type: string; detail: { completionId: string; rating: string; pairFormed: boolean } }[] } }).__mace.events
      .filter((e) => e.type === 'mace-feedback')
      .map((e) => e.detail),
  );
}

/** The engine's own counters, through the client the demo shares between the widget and the panel. */
function engineStats(page: Page): Promise<EngineStats | null> {
  return page.evaluate(() => (document.querySelector('mace-chat') as unknown as { engine: { stats(): Promise<EngineStats | null> } }).engine.stats());
}

// ---- panel helpers

/** Each chart's uPlot data (x first, then its series) as the panel last gave it to uPlot. */
function chartData(page: Page): Promise<Record<string, (number | null)[][]>> {
  return page.evaluate(() => {
    const panel = document.querySelector('mace-devtools') as MaceDevtoolsElement;
    const out: Record<string, (number | null)[][]> = {};
    for (const [id, u] of panel.charts) out[id] = (u.data as (number | null)[][]).map((s) => [...s]);
    return out;
  });
}

function points(data: Record<string, (number | null)[][]>, id: string): number {
  return data[id]?.[0]?.length ?? 0;
}

const finite = (s: (number | null)[]): number[] => s.filter((v): v is number => typeof v === 'number' && Number.isFinite(v));

function summaryText(page: Page): Promise<string> {
  return page.evaluate(() => document.querySelector('mace-devtools')!.shadowRoot!.querySelector('.summary')!.textContent ?? '');
}

/** The text summaries beside the charts, keyed by chart id. */
function chartSentences(page: Page): Promise<Record<string, string>> {
  return page.evaluate(() => {
    const out: Record<string, string> = {};
    for (const f of document.querySelector('mace-devtools')!.shadowRoot!.querySelectorAll('figure[data-chart]')) {
      out[(f as HTMLElement).dataset.chart!] = f.querySelector('.chart-summary')?.textContent ?? '';
    }
    return out;
  });
}

interface Summary {
  tokensPerSecond: number | null;
  ttftP95Ms: number | null;
  /** KV blocks at the newest iteration; null before any. */
  kv: { used: number; total: number } | null;
  adapter: { name: string; version: number } | null;
}

/** Parses the panel's one-line summary ("15.7 tok/s · TTFT p95 84 ms · KV 1/3276 (0%) · adapter feedback v3"). */
function parseSummary(line: string): Summary {
  const m = /^(?:—|(\d+(?:\.\d+)?)) tok\/s · TTFT p95 (?:—|(\d+(?:\.\d+)?) ms) · KV (?:—|(\d+)\/(\d+) \(\d+%\)) · adapter (?:—|(\S+) v(\d+))$/.exec(line);
  if (!m) throw new Error(`panel summary line not understood: ${JSON.stringify(line)}`);
  const num = (s: string | undefined) => (s === undefined ? null : Number(s));
  return {
    tokensPerSecond: num(m[1]),
    ttftP95Ms: num(m[2]),
    kv: m[3] === undefined ? null : { used: Number(m[3]), total: Number(m[4]) },
    adapter: m[5] === undefined ? null : { name: m[5], version: Number(m[6]) },
  };
}

async function setExpanded(page: Page, open: boolean): Promise<void> {
  const toggle = page.getByRole('button', { name: TOGGLE_NAME });
  if ((await toggle.getAttribute('aria-expanded')) !== String(open)) await toggle.click();
  await expect.poll(() => toggle.getAttribute('aria-expanded')).toBe(String(open));
}

/**
 * The panel's own counters plus the chart drawing they do not see: uPlot draws in a microtask after
 * setData returns, outside the panel's render timing. Each chart's setData is wrapped with a
 * microtask queued before it (start) and one after (end); microtasks run in order, so end − start is
 * that chart's deferred commit (≈ 0 if the panel ever draws synchronously, so nothing is counted twice).
 * `drawCalls` counts setData calls (0 while the panel is collapsed).
 */
interface CostProbe {
  cost: PanelCost;
  drawCalls: number;
  deferredDrawMs: number;
  now: number;
}

function readCost(page: Page): Promise<CostProbe> {
  return page.evaluate(() => {
    const panel = document.querySelector('mace-devtools') as MaceDevtoolsElement;
    const w = window as unknown as { __panelDraw?: { calls: number; ms: number; wrapped: WeakSet<object> } };
    const probe = (w.__panelDraw ??= { calls: 0, ms: 0, wrapped: new WeakSet() });
    for (const u of panel.charts.values()) {
      if (probe.wrapped.has(u)) continue;
      probe.wrapped.add(u);
      const setData = u.setData.bind(u);
      u.setData = (data, resetScales) => {
        probe.calls++;
        let start = 0;
        queueMicrotask(() => (start = performance.now()));
        setData(data, resetScales);
        queueMicrotask(() => (probe.ms += performance.now() - start));
      };
    }
    return { cost: { ...panel.cost }, drawCalls: probe.calls, deferredDrawMs: probe.ms, now: performance.now() };
  });
}

interface CostFigure {
  msPerSecond: number;
  line: string;
  drawCalls: number;
  batches: number;
  renders: number;
}

/** Streams one longer reply and returns the panel's main-thread time per second of it. */
async function costWhileStreaming(page: Page, expanded: boolean): Promise<CostFigure> {
  await setExpanded(page, expanded);
  await maxTokens(page, COST_REPLY);
  const a = await readCost(page);
  await send(page, 'One day, a little bird');
  const b = await readCost(page);
  await maxTokens(page, SHORT_REPLY);
  const seconds = (b.now - a.now) / 1000;
  const push = b.cost.pushMs - a.cost.pushMs;
  const tracks = b.cost.tracksMs - a.cost.tracksMs;
  const render = b.cost.renderMs - a.cost.renderMs;
  const draw = b.deferredDrawMs - a.deferredDrawMs;
  const perS = (ms: number) => (ms / seconds).toFixed(2);
  const batches = b.cost.batches - a.cost.batches;
  const renders = b.cost.renders - a.cost.renders;
  const drawCalls = b.drawCalls - a.drawCalls;
  const msPerSecond = (push + tracks + render + draw) / seconds;
  // Long tasks (≥ 50 ms, from the PerformanceObserver e2e/browser.ts installs) in the same window.
  const longTasks = await page.evaluate(
    ([from, to]) => (window as unknown as { __mace: { longTasks: { start: number; duration: number }[] } }).__mace.longTasks.filter((t) => t.start >= from && t.start <= to).map((t) => t.duration),
    [a.now, b.now] as const,
  );
  const longest = longTasks.length ? `longest main-thread task ${Math.max(...longTasks).toFixed(0)} ms (${longTasks.length} ≥ 50 ms)` : 'no main-thread task ≥ 50 ms';
  const line =
    `${msPerSecond.toFixed(2)} ms/s ${expanded ? 'expanded' : 'collapsed'} (push ${perS(push)}, tracks ${perS(tracks)}, render ${perS(render)}, ` +
    `deferred chart drawing ${perS(draw)}; ${batches} batches, ${renders} renders, ${drawCalls} chart updates in ${seconds.toFixed(1)} s of a streaming reply; ${longest})`;
  return { msPerSecond, line, drawCalls, batches, renders };
}

describe('the performance panel beside the widget (demo page, real engine)', () => {
  let w: Watched;
  let page: Page;

  it('expanded, its charts fill with the engine’s stats and the summary line shows real numbers', async () => {
    w = await watchedContext(browser);
    page = await w.context.newPage();
    await page.goto(`${server.origin}/`);
    await waitForState(page, 'ready');
    await maxTokens(page, SHORT_REPLY);

    const toggle = page.getByRole('button', { name: TOGGLE_NAME });
    expect(await toggle.getAttribute('aria-expanded')).toBe('false');
    expect(await page.evaluate(() => (document.querySelector('mace-devtools') as MaceDevtoolsElement).charts.size)).toBe(0); // no chart while collapsed
    await toggle.click();
    await expect.poll(() => toggle.getAttribute('aria-expanded')).toBe('true');
    expect(await page.locator('mace-devtools .body').isVisible()).toBe(true);

    // Every summary line shown while the reply streams (the decode rate falls back to 0 after it).
    await page.evaluate(() => {
      const w = window as unknown as { __summaries: string[] };
      const line = document.querySelector('mace-devtools')!.shadowRoot!.querySelector('.summary')!;
      w.__summaries = [];
      new MutationObserver(() => w.__summaries.push(line.textContent ?? '')).observe(line, { childList: true, characterData: true, subtree: true });
    });
    const t0 = Date.now();
    await send(page, 'Once upon a time');
    const replyMs = Date.now() - t0;

    await expect.poll(async () => {
      const d = await chartData(page);
      return ['gpu', 'ttft', 'tbt', 'kv'].map((id) => points(d, id) > 0);
    }).toEqual([true, true, true, true]);
    const data = await chartData(page);
    const stats = (await engineStats(page))!;
    expect(stats).not.toBeNull();

    // GPU time per iteration: one point per iteration the engine ran, each with measured time.
    const [, measured, , , , planned] = data.gpu;
    expect(points(data, 'gpu')).toBeLessThanOrEqual(stats.iterations);
    expect(finite(measured).length).toBe(points(data, 'gpu'));
    expect(Math.max(...finite(measured))).toBeGreaterThan(0);
    expect(Math.max(...finite(planned))).toBeGreaterThan(0);
    // TTFT and TBT percentiles: real, ordered, and the TTFT within the time the whole reply took.
    const [, ttft50, ttft95, ttft99, ttftSlo] = data.ttft;
    expect(finite(ttft50)[0]).toBeGreaterThan(0);
    expect(finite(ttft95)[0]).toBeGreaterThanOrEqual(finite(ttft50)[0]);
    expect(finite(ttft99)[0]).toBeGreaterThanOrEqual(finite(ttft95)[0]);
    expect(finite(ttft95)[0]).toBeLessThan(replyMs);
    expect(finite(ttftSlo)[0]).toBeGreaterThan(0);
    const [, tbt50, tbt95] = data.tbt;
    expect(finite(tbt50)[0]).toBeGreaterThan(0);
    expect(finite(tbt95)[0]).toBeGreaterThanOrEqual(finite(tbt50)[0]);
    // KV blocks: the pool's real size, and some in use while the reply was decoded.
    const [, kvUsed, kvTotal] = data.kv;
    expect(new Set(kvTotal)).toEqual(new Set([stats.totalBlocks]));
    expect(Math.max(...finite(kvUsed))).toBeGreaterThan(0);

    // The one line: the decode rate while streaming, TTFT p95, the pool's size.
    const seen = (await page.evaluate(() => (window as unknown as { __summaries: string[] }).__summaries)).map(parseSummary);
    expect(Math.max(...seen.map((s) => s.tokensPerSecond ?? 0)), 'decode rate shown while the reply streamed').toBeGreaterThan(0);
    const now = parseSummary(await summaryText(page));
    expect(now.ttftP95Ms).toBeGreaterThan(0);
    expect(now.ttftP95Ms).toBeLessThan(replyMs);
    expect(now.kv?.total).toBe(stats.totalBlocks);
    expect(now.adapter).toBeNull(); // nothing learnt yet in this fresh profile
    const words = await chartSentences(page);
    expect(words.gpu).toMatch(/^Last of \d+ iterations: \d/);
    expect(words.dpo).toBe('No fine-tune step yet.');
  });

  it('its Performance-panel tracks (group "mace-web": prefill, decode) are in a Chrome trace and the page timeline', async () => {
    await browser.startTracing(page, { categories: ['blink.user_timing'] });
    let raw: Buffer;
    try {
      await send(page, 'The cat sat');
    } finally {
      raw = await browser.stopTracing();
    }
    writeFileSync(join(ARTIFACTS, 'panel-trace.json'), raw); // opens in DevTools' Performance panel
    const trace = JSON.parse(raw.toString('utf8')) as { traceEvents?: TraceEvent[] } | TraceEvent[];
    const events = Array.isArray(trace) ? trace : (trace.traceEvents ?? []);

    // Chrome writes a measure as an async begin/end pair; the begin's args.detail is the detail as JSON.
    const begins = events.filter((e) => e.cat === 'blink.user_timing' && e.ph === 'b' && typeof e.args?.detail === 'string');
    const ours = begins
      .map((e) => ({ e, detail: JSON.parse(e.args!.detail!) as { devtools?: { dataType?: string; track?: string; trackGroup?: string } } }))
      .filter((m) => m.detail.devtools?.trackGroup === 'mace-web');
    const byTrack = (track: string) => ours.filter((m) => m.detail.devtools!.track === track);
    expect(byTrack('prefill').length, 'prefill entries in the trace').toBeGreaterThanOrEqual(1);
    expect(byTrack('decode').length, 'decode entries in the trace').toBeGreaterThanOrEqual(3);
    for (const { e, detail } of ours) {
      expect(detail.devtools!.dataType).toBe('track-entry');
      expect(e.name).toBe(`mace-web ${detail.devtools!.track}`);
      const end = events.find((x) => x.ph === 'e' && x.name === e.name && x.id2?.local === e.id2?.local && x.ts >= e.ts);
      expect(end, `end of ${e.name} at ${e.ts}`).toBeDefined();
    }

    // The same measures are in the page's own performance timeline.
    const timeline = await page.evaluate(() =>
      performance
        .getEntriesByType('measure')
        .map((m) => (m as PerformanceMeasure).detail as { devtools?: { trackGroup?: string; track?: string } } | null)
        .filter((d) => d?.devtools?.trackGroup === 'mace-web')
        .map((d) => d!.devtools!.track),
    );
    expect(timeline).toContain('prefill');
    expect(timeline).toContain('decode');
  });

  it('its main-thread cost per second while a reply streams (printed, not asserted)', async () => {
    const collapsed = await costWhileStreaming(page, false);
    const expanded = await costWhileStreaming(page, true);
    console.log(`[e2e] panel main-thread cost: ${collapsed.line}`);
    console.log(`[e2e] panel main-thread cost: ${expanded.line}`);
    expect(collapsed.batches).toBeGreaterThan(0);
    expect(collapsed.renders).toBeGreaterThan(0);
    expect(collapsed.drawCalls, 'charts are not touched while the panel is collapsed').toBe(0);
    expect(expanded.drawCalls, 'charts redraw while the panel is expanded').toBeGreaterThan(0);
  });

  it('thumbs-down → Regenerate → thumbs-up: a DPO step appears on the chart and the adapter version reaches v1', async () => {
    const turn = await answerCount(page);
    const first = await lastAnswerText(page);
    await page.getByRole('button', { name: 'Bad response' }).last().click();
    await expect.poll(() => page.getByRole('button', { name: 'Bad response' }).last().getAttribute('aria-pressed')).toBe('true');
    // Regenerate until the new answer differs from the disliked one (equal texts never form a pair).
    let shown = 1;
    let second = first;
    while (second === first && shown < 4) {
      await page.getByRole('button', { name: 'Regenerate' }).last().click();
      shown++;
      await waitForAnswer(page, turn, `${shown} / ${shown}`);
      second = await lastAnswerText(page);
    }
    expect(second).not.toBe(first);
    await page.getByRole('button', { name: 'Good response' }).last().click();
    await expect.poll(async () => (await feedbackEvents(page)).at(-1)?.pairFormed).toBe(true);

    // The worker trains on the pair in the background; its fine-tune records reach the panel.
    await expect
      .poll(async () => {
        const d = await chartData(page);
        return points(d, 'dpo') > 0 && Math.max(0, ...finite(d.adapter[1])) >= 1;
      }, { timeout: LEARN_TIMEOUT_MS, interval: 1000 })
      .toBe(true);
    const data = await chartData(page);
    const [, loss, accuracy] = data.dpo;
    expect(finite(loss).length, 'a step with a finite DPO loss').toBeGreaterThan(0);
    for (const a of finite(accuracy)) {
      expect(a).toBeGreaterThanOrEqual(0);
      expect(a).toBeLessThanOrEqual(1);
    }

    const learning = (await engineStats(page))!.learning!;
    expect(learning.version).toBeGreaterThanOrEqual(1);
    const adapter = parseSummary(await summaryText(page)).adapter;
    expect(adapter?.name).toBe(learning.adapter);
    expect(adapter!.version).toBeGreaterThanOrEqual(1);
    expect(adapter!.version).toBeLessThanOrEqual(learning.version);
    const words = await chartSentences(page);
    expect(words.dpo).toMatch(/^DPO step \d+: loss /);
    expect(words.adapter).toContain(`${learning.adapter} v`);

    // The page as a visitor sees it: the widget and the expanded panel beside it.
    const path = join(ARTIFACTS, 'panel-learnt.png');
    await page.locator('.workspace').screenshot({ path });
    // The repository keeps one panel screenshot from the real page; refreshed on request only, so a
    // test run does not change tracked files.
    if (!existsSync(DOC_SCREENSHOT) || process.env.MACE_UPDATE_SCREENSHOTS === '1') {
      mkdirSync(join(ROOT, 'docs', 'screenshots'), { recursive: true });
      copyFileSync(path, DOC_SCREENSHOT);
    }
    expect(w.pageErrors).toEqual([]);
  });
});

/** The fields of a Chrome trace event this file reads. */
interface TraceEvent {
  name: string;
  cat: string;
  ph: string;
  ts: number;
  id2?: { local?: string };
  args?: { detail?: string };
}
