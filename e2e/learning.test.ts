/**
 * End to end, issue 14 ("every thumb teaches"), on the built demo in the system Chromium with the
 * bundled stories260K — the real worker, IndexedDB store and learner:
 * - a single thumbs-up and a single thumbs-down on different messages (no regenerate, no pair)
 *   lead to fine-tune steps (KTO) and new saved adapter versions; the badge shows the version;
 * - the widget's adapter menu downloads the serving adapter as PEFT files, and importing those
 *   files back (the menu's file picker) serves and saves them bit-exactly;
 * - serving an older version from the menu (a roll back) serves exactly that version's weights:
 *   the same greedy tokens as while it served first.
 * Probes of what the engine serves go through the page client the widget uses (its `engine`).
 */
import { readFileSync } from 'node:fs';
import type { Browser, Download, Page } from 'playwright';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launch, watchedContext } from './browser.ts';
import { startStaticServer, type StaticServer } from './server.ts';
import { answers, events, ready, send } from './widget-page.ts';

/** How long fine-tune steps may take to be saved after a rating (SwiftShader is slow). */
const LEARN_TIMEOUT_MS = 150_000;

let server: StaticServer;
let browser: Browser;

beforeAll(async () => {
  server = await startStaticServer();
  browser = await launch();
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

interface Served {
  /** The store version serving (null: none saved / the base). */
  serving: number | null;
  /** The learner's version of the serving saved record. */
  learnt: number | null;
  saved: number;
  pending: number;
  /** The learner's version now. */
  version: number;
}

/** What the page client says serves now. */
function served(page: Page): Promise<Served> {
  return page.evaluate(async () => {
    const engine = (document.querySelector('mace-chat') as unknown as { engine: { adapter: { versions(): Promise<{ versions: { version: number; meta: { metrics?: { version: number } } }[]; serving: number | null; learning: { pendingPairs: number; version: number } | null }> } } }).engine;
    const v = await engine.adapter.versions();
    const s = v.versions.find((x) => x.version === v.serving);
    return { serving: v.serving, learnt: s?.meta.metrics?.version ?? null, saved: v.versions.length, pending: v.learning?.pendingPairs ?? 0, version: v.learning?.version ?? 0 };
  });
}

/** Greedy tokens of the learnt adapter on a fixed prompt, through the widget's engine. */
function probe(page: Page): Promise<number[]> {
  return page.evaluate(async () => {
    const engine = (document.querySelector('mace-chat') as unknown as { engine: { completions: { create(p: object): Promise<{ choices: { token_ids: number[] }[] }> } } }).engine;
    const r = await engine.completions.create({ prompt: 'Tom went to the park', max_tokens: 12, temperature: 0, ignore_eos: true, return_token_ids: true, adapter: 'learnt' });
    return r.choices[0].token_ids;
  });
}

/** Wait until every queued step ran and its version is saved (saves are debounced) and serving. */
async function settled(page: Page, newerThan: number | null): Promise<Served> {
  const t0 = Date.now();
  for (;;) {
    const s = await served(page);
    if (s.pending === 0 && s.serving !== null && s.learnt === s.version && (newerThan === null || s.serving > newerThan)) return s;
    if (Date.now() - t0 > LEARN_TIMEOUT_MS) throw new Error(`e2e: no new saved adapter version (last: ${JSON.stringify(s)})`);
    await page.waitForTimeout(250);
  }
}

async function rate(page: Page, which: 'Good response' | 'Bad response'): Promise<void> {
  await page.getByRole('button', { name: which }).last().click();
  await expect.poll(() => page.getByRole('button', { name: which }).last().getAttribute('aria-pressed')).toBe('true');
}

/** Click the menu's download and keep both files' bytes by name. */
async function download(page: Page): Promise<Map<string, Buffer>> {
  const got: Download[] = [];
  const listener = (d: Download) => void got.push(d);
  page.on('download', listener);
  try {
    await page.locator('mace-chat .adapter-menu button[data-action="download"]').click();
    await expect.poll(() => got.length, { timeout: 30_000 }).toBe(2);
  } finally {
    page.off('download', listener);
  }
  const files = new Map<string, Buffer>();
  for (const d of got) files.set(d.suggestedFilename(), readFileSync((await d.path())!));
  return files;
}

describe('every thumb teaches (built demo)', () => {
  it('single thumbs on different messages train new versions; the menu exports PEFT files that import back bit-exact, and rolls back', async () => {
    const w = await watchedContext(browser);
    const page = await w.context.newPage();
    await page.goto(`${server.origin}/`);
    await ready(page, 'mace-chat', '16');
    expect(await served(page)).toMatchObject({ serving: null, saved: 0 });

    // A thumbs-up on one answer: no pair forms, a KTO step runs, a version is saved.
    await send(page, 'Once upon a time');
    await rate(page, 'Good response');
    await expect.poll(() => events<{ pairFormed: boolean }>(page, 'mace-feedback').then((e) => e.map((x) => x.pairFormed))).toEqual([false]);
    const first = await settled(page, null);
    const tokensFirst = await probe(page);
    const badge = page.locator('mace-chat .learnt');
    await expect.poll(() => badge.textContent(), { timeout: 30_000 }).toBe(`learnt · v${first.learnt}`);

    // A thumbs-down on another message: another step, a newer version.
    await send(page, 'The little bird');
    await rate(page, 'Bad response');
    await expect.poll(() => events<{ pairFormed: boolean }>(page, 'mace-feedback').then((e) => e.map((x) => x.pairFormed))).toEqual([false, false]);
    const second = await settled(page, first.serving);
    expect(second.learnt!).toBeGreaterThan(first.learnt!);
    // The second thumb moved the adapter (else the roll back below proves nothing): the saved weights differ.
    const differ = await page.evaluate(async ([a, b]) => {
      const engine = (document.querySelector('mace-chat') as unknown as { engine: { adapter: { export(v: number): Promise<{ weights: Uint8Array }> } } }).engine;
      const [x, y] = [(await engine.adapter.export(a)).weights, (await engine.adapter.export(b)).weights];
      return x.length !== y.length || x.some((v, i) => v !== y[i]);
    }, [first.serving!, second.serving!] as const);
    expect(differ).toBe(true);
    expect((await answers(page)).count).toBe(2);

    // The adapter menu: the saved versions, the serving one first.
    await page.locator('mace-chat button.adapter-toggle').click();
    const menu = page.locator('mace-chat .adapter-menu');
    await expect.poll(() => menu.locator('.menu-line').textContent()).toBe(`Serving v${second.learnt}`);

    // Roll back to the first version from the menu: exactly its tokens again, and the badge says so.
    await page.locator(`mace-chat .adapter-menu button[aria-label="Serve v${first.learnt}"]`).click();
    await expect.poll(() => served(page).then((s) => s.serving), { timeout: 30_000 }).toBe(first.serving);
    await expect.poll(() => menu.locator('.menu-line').textContent()).toBe(`Serving v${first.learnt}`);
    await expect.poll(() => badge.textContent()).toBe(`learnt · v${first.learnt}`);
    expect(await probe(page)).toEqual(tokensFirst);

    // Export the serving adapter (two PEFT files), then import them back: served and saved bit-exact.
    const exported = await download(page);
    const names = [`learnt-v${first.learnt}-adapter_config.json`, `learnt-v${first.learnt}-adapter_model.safetensors`];
    expect([...exported.keys()].sort()).toEqual(names);
    expect(JSON.parse(exported.get(names[0])!.toString('utf8'))).toMatchObject({ peft_type: 'LORA' });
    const weights = exported.get(names[1])!;
    await page.locator('mace-chat .adapter-menu input[type=file]').setInputFiles([
      { name: 'adapter_model.safetensors', mimeType: 'application/octet-stream', buffer: weights },
      { name: 'adapter_config.json', mimeType: 'application/json', buffer: exported.get(names[0])! },
    ]);
    const imported = await settled(page, second.serving);
    expect(imported.serving).not.toBe(first.serving); // a new saved version serves
    const again = await download(page);
    expect([...again.entries()].find(([n]) => n.endsWith('.safetensors'))![1].equals(weights)).toBe(true);
    expect(await probe(page)).toEqual(tokensFirst);
    expect(w.pageErrors).toEqual([]);
  }, 600_000);
});
