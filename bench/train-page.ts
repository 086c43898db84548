/**
 * The training page the CLI drives in headless Chromium: `window.maceTrain(model, request)` and
 * `window.maceTrainStepBench(options)` (the training-step benchmark on a synthetic model) resolve with { ok: true, result } or { ok: false, error } (name, code and message: typed errors
 * do not survive page.evaluate otherwise). Progress and per-step metrics go to functions the CLI
 * exposed with Playwright (maceLog, maceStep) when present.
 */
import { acquireGpu, describeGpu, type GpuContext } from '../src/gpu/device.ts';
import type { StepMetrics } from '../src/learn/trainer.ts';
import { sourceFromHub, sourceFromUrl, type ModelSource } from '../src/model/source.ts';
import type { PageModel, PageOutcome } from './decode-page.ts';
import { runTrain, runTrainStepBench, type TrainRequest, type TrainResult, type TrainStepBenchOptions, type TrainStepBenchResult } from './train.ts';

declare global {
  interface Window {
    maceTrain: (model: PageModel, req: TrainRequest) => Promise<PageOutcome<TrainResult>>;
    maceTrainStepBench: (opts: TrainStepBenchOptions) => Promise<PageOutcome<TrainStepBenchResult>>;
    maceStep?: (m: StepMetrics) => Promise<void>;
  }
}

const status = document.getElementById('status')!;
const logEl = document.getElementById('log')!;

function log(message: string): void {
  status.textContent = message;
  logEl.textContent += `${message}\n`;
  void window.maceLog?.(message);
}

let gpu: Promise<GpuContext> | undefined;

async function context(): Promise<GpuContext> {
  // Acquired once per page; a failure is not cached, so a later call can try again.
  gpu ??= acquireGpu({ label: 'mace train' }).catch((e: unknown) => {
    gpu = undefined;
    throw e;
  });
  const ctx = await gpu;
  log(`GPU: ${describeGpu(ctx)}`);
  return ctx;
}

function source(m: PageModel): ModelSource {
  return m.kind === 'url' ? sourceFromUrl(m.url, { cache: false }) : sourceFromHub(m.repo, 'main', { cache: false });
}

async function outcome<T>(work: () => Promise<T>): Promise<PageOutcome<T>> {
  try {
    return { ok: true, result: await work() };
  } catch (e) {
    const err = e as Error & { code?: unknown };
    return { ok: false, error: { name: err?.name ?? 'Error', code: typeof err?.code === 'string' ? err.code : undefined, message: err?.message ?? String(e), stack: err?.stack } };
  }
}

window.maceTrain = (model, req) => outcome(async () => runTrain(await context(), source(model), req, { onLog: log, onStep: (m) => void window.maceStep?.(m) }));

window.maceTrainStepBench = (opts) => outcome(async () => runTrainStepBench(await context(), opts, log));

status.textContent = 'Ready: call window.maceTrain(model, request) or window.maceTrainStepBench(options).';
