/**
 * The page `mace bench serve` drives in headless Chromium: `window.maceServeBench(options)`
 * resolves with { ok: true, result } or { ok: false, error } (name, code, message: typed errors do
 * not survive page.evaluate otherwise). Progress goes to window.maceLog when the CLI exposed it.
 */
import { acquireGpu } from '../src/gpu/device.ts';
import type { PageOutcome } from './decode-page.ts';
import { runServeBench, type ServeBenchOptions, type ServeBenchResult } from './serve/run.ts';

declare global {
  interface Window {
    maceServeBench: (opts: Omit<ServeBenchOptions, 'env' | 'onProgress'>) => Promise<PageOutcome<ServeBenchResult>>;
  }
}

const status = document.getElementById('status')!;
const logEl = document.getElementById('log')!;

function log(message: string): void {
  status.textContent = message;
  logEl.textContent += `${message}\n`;
  void window.maceLog?.(message);
}

window.maceServeBench = async (opts) => {
  try {
    const ctx = await acquireGpu({ label: 'mace serve bench' });
    try {
      return { ok: true, result: await runServeBench(ctx, { ...opts, env: 'chromium', onProgress: log }) };
    } finally {
      ctx.device.destroy();
    }
  } catch (e) {
    const err = e as Error & { code?: unknown };
    return { ok: false, error: { name: err?.name ?? 'Error', code: typeof err?.code === 'string' ? err.code : undefined, message: err?.message ?? String(e), stack: err?.stack } };
  }
};

status.textContent = 'Ready: call window.maceServeBench(options).';
