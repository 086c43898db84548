/**
 * Chromium for the e2e suite: the system browser with the project's flags (scripts/chromium.mjs),
 * headless, driven by the Playwright library. Every context it makes is watched: each request URL
 * is logged for the same-origin audit, uncaught page errors are kept, and a long-task observer and
 * listeners for the widget's DOM events are installed in every page before its scripts run.
 */
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright';
import { chromiumArgs, findChromium } from '../scripts/chromium.mjs';

export interface Watched {
  context: BrowserContext;
  /** Every request URL any page or worker of the context made. */
  requests: string[];
  /** Uncaught exceptions in the context's pages. */
  pageErrors: string[];
}

export async function launch(): Promise<Browser> {
  const executablePath = findChromium();
  if (!executablePath) throw new Error('e2e: no Chromium found (set MACE_CHROMIUM or install chromium; `npm test` installs it when it runs as root)');
  return chromium.launch({ executablePath, args: chromiumArgs(), headless: true });
}

/** Runs in each page before its own scripts. */
function pageProbes(): void {
  interface Script {
    invoker: string;
    sourceURL: string;
    sourceFunctionName: string;
    sourceCharPosition: number;
    duration: number;
    forcedStyleAndLayoutDuration: number;
  }
  const w = window as unknown as { __mace: { longTasks: { start: number; duration: number }[]; frames: { start: number; duration: number; scripts: Script[] }[]; events: { type: string; detail: unknown }[] } };
  w.__mace = { longTasks: [], frames: [], events: [] };
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) w.__mace.longTasks.push({ start: e.startTime, duration: e.duration });
    }).observe({ type: 'longtask', buffered: true });
    // Long animation frames (Chrome 123+) say which script a long frame ran: the culprit of a long task.
    new PerformanceObserver((list) => {
      for (const e of list.getEntries() as (PerformanceEntry & { scripts: Script[] })[]) {
        const scripts = e.scripts.map((s) => ({ invoker: s.invoker, sourceURL: s.sourceURL, sourceFunctionName: s.sourceFunctionName, sourceCharPosition: s.sourceCharPosition, duration: s.duration, forcedStyleAndLayoutDuration: s.forcedStyleAndLayoutDuration }));
        w.__mace.frames.push({ start: e.startTime, duration: e.duration, scripts });
      }
    }).observe({ type: 'long-animation-frame', buffered: true });
  } catch {
    // no long-task timing in this browser: the measurement reports none
  }
  for (const type of ['mace-message', 'mace-feedback', 'mace-state']) {
    document.addEventListener(type, (e) => w.__mace.events.push({ type, detail: JSON.parse(JSON.stringify((e as CustomEvent).detail)) }));
  }
}

export async function watchedContext(browser: Browser, init?: () => void): Promise<Watched> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 });
  const watched: Watched = { context, requests: [], pageErrors: [] };
  context.on('request', (r) => watched.requests.push(r.url()));
  context.on('page', (p) => p.on('pageerror', (e) => watched.pageErrors.push(e.message)));
  await context.addInitScript(pageProbes);
  if (init) await context.addInitScript(init);
  return watched;
}

/** The widget's state property (set by the element; '' before it is defined). */
export function widgetState(page: Page, selector = 'mace-chat'): Promise<string> {
  return page.evaluate((sel) => (document.querySelector(sel) as (Element & { state?: string }) | null)?.state ?? '', selector);
}

export async function waitForState(page: Page, state: string, timeout = 120_000, selector = 'mace-chat'): Promise<void> {
  await page.waitForFunction(([sel, want]) => (document.querySelector(sel) as (Element & { state?: string }) | null)?.state === want, [selector, state] as const, { timeout });
}
