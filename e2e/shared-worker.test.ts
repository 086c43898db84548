/**
 * End to end: one engine for many tabs. Two pages of one origin, in one browser context of the
 * system Chromium (WebGPU; SwiftShader without a GPU), each with its own client of the ONE shared
 * engine worker (createSharedEngine, workers/shared-engine.worker.ts), on the bundled stories260K.
 *
 * The page (e2e/pages/shared-tabs.html + .ts) is built here with Vite into e2e/pages/dist/ (the
 * suite's server serves e2e/pages at /e2e/), since the demo builds its own engine; the model files
 * come from the built demo (global setup). Nothing is faked: real workers, model, GPU and tabs.
 */
import { join } from 'node:path';
import type { Browser, Page } from 'playwright';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelInfo, SharedEngineStatus } from '../src/engine/worker-api.ts';
import type { RequestStats } from '../src/scheduler/stats.ts';
import { launch, waitForState, watchedContext, type Watched } from './browser.ts';
import type { TabStream } from './pages/shared-tabs.ts';
import { ROOT, startStaticServer, type StaticServer } from './server.ts';

const PAGES = join(ROOT, 'e2e', 'pages');
const OUT = join(PAGES, 'dist', 'shared-tabs');
const PAGE_PATH = '/e2e/dist/shared-tabs/shared-tabs.html';
/** The long request tab A leaves running when it closes: most of stories260K's 512-token context. */
const LONG_TOKENS = 480;

interface Tabs {
  streams: Record<string, TabStream>;
  finished: RequestStats[];
  progressReports: number;
  kind(): Promise<string>;
  load(format?: string): Promise<ModelInfo>;
  loadError(format: string): Promise<{ code: string; message: string } | null>;
  start(name: string, prompt: string, maxTokens: number): Promise<void>;
  status(): Promise<SharedEngineStatus | null>;
  weightsBytes(): Promise<number>;
}
declare const maceTabs: Tabs;

let server: StaticServer;
let browser: Browser;
let watched: Watched;

beforeAll(async () => {
  await build({
    configFile: false,
    root: PAGES,
    base: '/e2e/dist/shared-tabs/',
    publicDir: false,
    logLevel: 'warn',
    worker: { format: 'es' },
    build: { outDir: OUT, emptyOutDir: true, target: 'es2022', rollupOptions: { input: join(PAGES, 'shared-tabs.html') } },
  });
  server = await startStaticServer();
  browser = await launch();
  watched = await watchedContext(browser);
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

async function openTab(query = '', w: Watched = watched): Promise<Page> {
  const page = await w.context.newPage();
  await page.goto(`${server.origin}${PAGE_PATH}${query}`);
  await page.waitForFunction(() => typeof (window as unknown as { maceTabs?: unknown }).maceTabs === 'object');
  return page;
}

function stream(page: Page, name: string): Promise<TabStream | undefined> {
  return page.evaluate((n) => maceTabs.streams[n], name);
}

async function streamDone(page: Page, name: string, timeout = 180_000): Promise<TabStream> {
  await page.waitForFunction((n) => maceTabs.streams[n]?.done === true, name, { timeout, polling: 200 });
  return (await stream(page, name))!;
}

describe('one engine for many tabs (SharedWorker)', () => {
  it('two tabs share one model load, chat concurrently with their own answers, and closing one aborts only its requests', async () => {
    const a = await openTab();
    const b = await openTab();
    expect(await a.evaluate(() => maceTabs.kind())).toBe('shared');
    expect(await b.evaluate(() => maceTabs.kind())).toBe('shared');

    // ---- loading: the second tab attaches to the first tab's model
    const infoA = await a.evaluate(() => maceTabs.load());
    expect(infoA.reused).toBeUndefined();
    const weights = await a.evaluate(() => maceTabs.weightsBytes());
    expect(weights).toBeGreaterThan(0);
    const infoB = await b.evaluate(() => maceTabs.load());
    expect(infoB.reused).toBe(true);
    expect(infoB.modelName).toBe(infoA.modelName);
    expect(await a.evaluate(() => maceTabs.progressReports)).toBeGreaterThan(0);
    expect(await b.evaluate(() => maceTabs.progressReports)).toBe(0); // nothing loaded for tab B
    expect(await b.evaluate(() => maceTabs.weightsBytes())).toBe(weights); // one copy of the weights on the GPU
    const afterLoads = (await b.evaluate(() => maceTabs.status()))!;
    expect(afterLoads).toMatchObject({ connections: 2, modelHolders: 2, modelLoads: 1, abortedOnClose: 0 });
    expect(afterLoads.connectionId).not.toBe((await a.evaluate(() => maceTabs.status()))!.connectionId);

    // A different request is refused, typed; the model tab A uses is not replaced under it.
    const refused = await b.evaluate(() => maceTabs.loadError('q4'));
    expect(refused?.code).toBe('model-in-use');
    expect((await a.evaluate(() => maceTabs.status()))!.modelLoads).toBe(1);
    expect(await a.evaluate(() => maceTabs.weightsBytes())).toBe(weights);

    // ---- concurrent chats: each tab gets its own stream (both clients number their requests req-1, req-2...)
    await Promise.all([a.evaluate(() => maceTabs.start('a1', 'Once upon a time', 24)), b.evaluate(() => maceTabs.start('b1', 'The little dog', 24))]);
    const [a1, b1] = await Promise.all([streamDone(a, 'a1'), streamDone(b, 'b1')]);
    for (const s of [a1, b1]) {
      expect(s.error).toBeNull();
      expect(s.finishReason).toBe('length');
      expect(s.ids).toHaveLength(1); // every chunk of a stream is of one completion
      expect(s.content.length).toBeGreaterThan(0);
    }
    expect(a1.ids[0]).not.toBe(b1.ids[0]);
    expect(await a.evaluate(() => Object.keys(maceTabs.streams))).toEqual(['a1']);
    expect(await b.evaluate(() => Object.keys(maceTabs.streams))).toEqual(['b1']);

    // ---- closing tab A while its long request runs: the engine aborts it; tab B's request completes
    await a.evaluate((n) => maceTabs.start('long', 'Once upon a time', n), LONG_TOKENS);
    await a.waitForFunction(() => (maceTabs.streams.long?.chunks ?? 0) >= 3, undefined, { timeout: 120_000, polling: 100 });
    await b.evaluate(() => maceTabs.start('b2', 'The cat sat', 40));
    await b.waitForFunction(() => (maceTabs.streams.b2?.chunks ?? 0) >= 1, undefined, { timeout: 120_000, polling: 100 });
    const beforeClose = (await stream(a, 'long'))!;
    expect(beforeClose.done).toBe(false); // still running when its tab goes
    const closedAt = Date.now();
    await a.close();

    const b2 = await streamDone(b, 'b2');
    expect(b2.error).toBeNull();
    expect(b2.finishReason).toBe('length');
    await b.waitForFunction(() => maceTabs.finished.some((r) => r.finishReason === 'abort'), undefined, { timeout: 60_000, polling: 100 });
    const abortSeenMs = Date.now() - closedAt;
    // b2's own record may come in the stats stream's next batch (every 100 ms).
    await b.waitForFunction(() => maceTabs.finished.some((r) => r.finishReason === 'length' && r.completionTokens === 40), undefined, { timeout: 10_000, polling: 100 });
    const finished = await b.evaluate(() => maceTabs.finished);
    const aborted = finished.filter((r) => r.finishReason === 'abort');
    expect(aborted).toHaveLength(1); // tab A's long request, seen on tab B's stats stream
    expect(aborted[0].completionTokens).toBeGreaterThanOrEqual(beforeClose.chunks - 1);
    expect(aborted[0].completionTokens).toBeLessThan(LONG_TOKENS);
    expect(finished.filter((r) => r.finishReason === 'length' && r.completionTokens === 40)).toHaveLength(1); // b2, whole

    const afterClose = (await b.evaluate(() => maceTabs.status()))!;
    expect(afterClose).toMatchObject({ connections: 1, modelHolders: 1, modelLoads: 1, abortedOnClose: 1 });
    expect(afterClose.closed.goodbye + afterClose.closed['lock-released']).toBe(1);
    expect(afterClose.closed['heartbeat-timeout']).toBe(0);
    console.log(`shared engine: tab closed by ${afterClose.closed.goodbye ? 'goodbye (pagehide)' : 'its lifetime lock'}; its request aborted after ${beforeClose.chunks}+ tokens, seen by the other tab ${abortSeenMs} ms after the close`);

    // Tab B still chats on the same model.
    await b.evaluate(() => maceTabs.start('b3', 'A bird', 8));
    const b3 = await streamDone(b, 'b3');
    expect(b3.error).toBeNull();
    expect(b3.finishReason).toBe('length');
    expect(watched.pageErrors).toEqual([]);
  });

  it('a tab that dies without a goodbye is noticed through its lifetime lock (at once) or, without Web Locks, its heartbeat (10 s)', async () => {
    const b = await openTab();
    const before = (await b.evaluate(() => maceTabs.status()))!;
    expect((await b.evaluate(() => maceTabs.load())).reused).toBe(true); // the model of the first test is still loaded

    // Lock: the tab's 'pagehide' never reaches the client; its released lock tells the worker.
    const c = await openTab('?no-goodbye');
    await c.evaluate(() => maceTabs.load());
    await c.evaluate((n) => maceTabs.start('long', 'Once upon a time', n), LONG_TOKENS);
    await c.waitForFunction(() => (maceTabs.streams.long?.chunks ?? 0) >= 3, undefined, { timeout: 120_000, polling: 100 });
    const seen = (await b.evaluate(() => maceTabs.finished.length));
    const closedAt = Date.now();
    await c.close();
    await b.waitForFunction((n) => maceTabs.finished.slice(n).some((r) => r.finishReason === 'abort'), seen, { timeout: 60_000, polling: 100 });
    const lockMs = Date.now() - closedAt;
    const afterLock = (await b.evaluate(() => maceTabs.status()))!;
    expect(afterLock.closed['lock-released'] - before.closed['lock-released']).toBe(1);
    expect(afterLock.closed.goodbye).toBe(before.closed.goodbye);
    expect(afterLock.abortedOnClose - before.abortedOnClose).toBe(1);
    expect(afterLock.connections).toBe(before.connections + 1 - 1); // b came, c came and went

    // Heartbeat: no Web Locks in the tab, no goodbye either; the worker closes it after missed pings.
    const d = await openTab('?no-goodbye&no-locks');
    expect((await d.evaluate(() => maceTabs.load())).reused).toBe(true);
    expect((await b.evaluate(() => maceTabs.status()))!.modelHolders).toBe(afterLock.modelHolders + 1);
    const silentFrom = Date.now();
    await d.close();
    let afterBeat = (await b.evaluate(() => maceTabs.status()))!;
    while (afterBeat.closed['heartbeat-timeout'] === before.closed['heartbeat-timeout'] && Date.now() - silentFrom < 30_000) {
      await new Promise((r) => setTimeout(r, 250));
      afterBeat = (await b.evaluate(() => maceTabs.status()))!;
    }
    const heartbeatMs = Date.now() - silentFrom;
    expect(afterBeat.closed['heartbeat-timeout'] - before.closed['heartbeat-timeout']).toBe(1);
    expect(heartbeatMs).toBeGreaterThanOrEqual(9_000); // HEARTBEAT_TIMEOUT_MS (10 s) after the last ping, not before
    expect(afterBeat.modelHolders).toBe(afterLock.modelHolders);
    expect(afterBeat.modelLoads).toBe(1);
    console.log(`shared engine: closed tab noticed through its lock in ${lockMs} ms (request aborted), through the heartbeat in ${heartbeatMs} ms`);
    await b.close();
  });

  it('<mace-chat> without an engine shares one by default: two tabs, one model load', async () => {
    const fresh = await watchedContext(browser); // its own profile: a new shared worker
    try {
      const p1 = await openTab('?widget', fresh);
      await waitForState(p1, 'ready');
      const p2 = await openTab('?widget', fresh);
      await waitForState(p2, 'ready');
      expect(await p2.evaluate(() => maceTabs.kind())).toBe('shared');
      expect(await p2.evaluate(() => maceTabs.status())).toMatchObject({ connections: 2, modelHolders: 2, modelLoads: 1 });
      expect(fresh.pageErrors).toEqual([]);
    } finally {
      await fresh.context.close();
    }
  });

  it("a <mace-chat> asking for another model than the shared engine holds takes its own worker; the other tab's model stays", async () => {
    const probe = await openTab(); // the first test's tab B still holds stories260K (f32, no learning)
    const before = (await probe.evaluate(() => maceTabs.status()))!;
    expect(before.modelHolders).toBeGreaterThanOrEqual(1);
    const widget = await openTab('?widget'); // its request differs (learning, engine sizes): model-in-use
    await waitForState(widget, 'ready');
    expect(await widget.evaluate(() => maceTabs.kind())).toBe('dedicated');
    const after = (await probe.evaluate(() => maceTabs.status()))!;
    expect(after.modelLoads).toBe(before.modelLoads); // nothing replaced under the holder
    expect(after.modelHolders).toBe(before.modelHolders);
    expect(await probe.evaluate(() => maceTabs.load())).toMatchObject({ reused: true });
    await widget.close();
    await probe.close();
  });
});
