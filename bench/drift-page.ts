/**
 * The page `mace bench drift` drives in headless Chromium: `window.maceDriftBench(model, options)`
 * resolves with { ok: true, result } or { ok: false, error } (see page-common.ts); progress goes to
 * the CLI's maceLog when present.
 */
import { runDriftBench, type DriftBenchOptions, type DriftBenchResult } from './drift/run.ts';
import { gpuOnce, outcome, pageLog, pageSource, type PageModel, type PageOutcome } from './page-common.ts';

declare global {
  interface Window {
    maceDriftBench: (model: PageModel, opts: Omit<DriftBenchOptions, 'env' | 'onProgress'>) => Promise<PageOutcome<DriftBenchResult>>;
  }
}

const context = gpuOnce('mace bench drift');

window.maceDriftBench = (model, opts) => outcome(async () => runDriftBench(await context(), pageSource(model), { ...opts, env: 'chromium', onProgress: pageLog }));

document.getElementById('status')!.textContent = 'Ready: call window.maceDriftBench(model, options).';
