/**
 * The benchmark page. Exposes `window.maceBench(opts)`, which acquires the GPU (once), runs the
 * kernel benchmark and resolves with the result JSON; progress goes to the page and, when the CLI
 * exposed it, to `window.maceProgress` (Playwright's exposeFunction) so it can print it.
 */
import { acquireGpu, describeGpu, type GpuContext } from '../src/gpu/device.ts';
import { runKernelBench, type KernelBenchOptions, type KernelBenchResult } from './kernels.ts';

type PageBenchOptions = Omit<KernelBenchOptions, 'onProgress' | 'env'>;

declare global {
  interface Window {
    maceBench: (opts?: PageBenchOptions) => Promise<KernelBenchResult>;
    maceProgress?: (message: string, fraction: number) => void;
  }
}

const status = document.getElementById('status')!;
const bar = document.getElementById('progress') as HTMLProgressElement;
const log = document.getElementById('log')!;

function report(message: string, fraction: number): void {
  status.textContent = message;
  bar.value = fraction;
  log.textContent += `${message}\n`;
  window.maceProgress?.(message, fraction);
}

let gpu: Promise<GpuContext> | undefined;

window.maceBench = async (opts: PageBenchOptions = {}) => {
  // Acquired once per page; a failure is not cached, so a later call can try again.
  gpu ??= acquireGpu({ label: 'mace bench' }).catch((e: unknown) => {
    gpu = undefined;
    throw e;
  });
  const ctx = await gpu;
  report(`GPU: ${describeGpu(ctx)}`, 0);
  const result = await runKernelBench(ctx, { ...opts, env: 'chromium', onProgress: report });
  report(`done: copy ${result.copyGBs.toFixed(2)} GB/s, ${result.variants.length} variants`, 1);
  return result;
};

status.textContent = 'Ready: call window.maceBench(opts).';
