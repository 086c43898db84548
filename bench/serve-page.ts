/**
 * The page `mace bench serve` drives in headless Chromium: `window.maceServeBench(options)`
 * resolves with { ok: true, result } or { ok: false, error } (see page-common.ts). Progress goes to
 * window.maceLog when the CLI exposed it.
 */
import { gpuOnce, outcome, pageLog, type PageOutcome } from './page-common.ts';
import { runServeBench, type ServeBenchOptions, type ServeBenchResult } from './serve/run.ts';

declare global {
  interface Window {
    maceServeBench: (opts: Omit<ServeBenchOptions, 'env' | 'onProgress'>) => Promise<PageOutcome<ServeBenchResult>>;
  }
}

const context = gpuOnce('mace serve bench');

window.maceServeBench = (opts) => outcome(async () => runServeBench(await context(), { ...opts, env: 'chromium', onProgress: pageLog }));

document.getElementById('status')!.textContent = 'Ready: call window.maceServeBench(options).';
