/**
 * Page helpers of the e2e suite for `<mace-chat>` (its DOM is read through its open shadow root;
 * Playwright's CSS locators pierce it too) and the events the page probes record (e2e/browser.ts).
 */
import type { Page } from 'playwright';
import { waitForState } from './browser.ts';

/** Answers are kept short: streaming is seen after a few tokens, and SwiftShader shares 2 cores. */
export const MAX_TOKENS = '48';

/** Wait until the widget has its model, and keep its answers short. */
export async function ready(page: Page, host = 'mace-chat', maxTokens = MAX_TOKENS): Promise<void> {
  await waitForState(page, 'ready', 120_000, host);
  await page.evaluate(([sel, n]) => document.querySelector(sel)!.setAttribute('max-tokens', n), [host, maxTokens] as const);
}

/** Number of answers shown, and whether the last one is still streaming. */
export function answers(page: Page, host = 'mace-chat'): Promise<{ count: number; busy: boolean; text: string; meta: string; pager: string }> {
  return page.evaluate((sel) => {
    const root = document.querySelector(sel)!.shadowRoot!;
    const all = root.querySelectorAll('.msg.assistant');
    const last = all[all.length - 1];
    return {
      count: all.length,
      busy: last?.getAttribute('aria-busy') === 'true',
      text: last?.querySelector('.bubble')?.textContent ?? '',
      meta: last?.querySelector('.meta')?.textContent ?? '',
      pager: last?.querySelector('.pager')?.textContent ?? '',
    };
  }, host);
}

export async function waitForAnswer(page: Page, count: number, pager = '', host = 'mace-chat'): Promise<void> {
  await page.waitForFunction(
    ([sel, n, pages]) => {
      const all = document.querySelector(sel)!.shadowRoot!.querySelectorAll('.msg.assistant');
      const last = all[all.length - 1];
      return all.length === n && last.getAttribute('aria-busy') === 'false' && (pages === '' || last.querySelector('.pager')?.textContent?.includes(pages));
    },
    [host, count, pager] as const,
    { timeout: 120_000 },
  );
}

/** Type a message and press Enter (the real keyboard path); resolves when its answer has finished. */
export async function send(page: Page, text: string, host = 'mace-chat'): Promise<void> {
  const before = (await answers(page, host)).count;
  const input = page.locator(`${host} textarea`);
  await input.fill(text);
  await input.press('Enter');
  await waitForAnswer(page, before + 1, '', host);
}

/** The widget events the page probes recorded, of one type. */
export async function events<T>(page: Page, type: string): Promise<T[]> {
  return page.evaluate((t) => (window as unknown as { __mace: { events: { type: string; detail: unknown }[] } }).__mace.events.filter((e) => e.type === t).map((e) => e.detail), type) as Promise<T[]>;
}
