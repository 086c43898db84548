/**
 * The page `mace bench prefix` drives in headless Chromium: `window.macePrefixBench(options)`
 * resolves with { ok: true, result } or { ok: false, error } (see page-common.ts). Progress goes to
 * window.maceLog when the CLI exposed it.
 */
import { gpuOnce, outcome, pageLog, type PageOutcome } from './page-common.ts';
import { runPrefixBench, type PrefixBenchOptions, type PrefixBenchResult } from './prefix.ts';

declare global {
  interface Window {
    macePrefixBench: (opts: Omit<PrefixBenchOptions, 'env' | 'onProgress'>) => Promise<PageOutcome<PrefixBenchResult>>;
  }
}

const context = gpuOnce('mace prefix bench');

window.macePrefixBench = (opts) => outcome(async () => runPrefixBench(await context(), { ...opts, env: 'chromium', onProgress: pageLog }));

document.getElementById('status')!.textContent = 'Ready: call window.macePrefixBench(options).';
