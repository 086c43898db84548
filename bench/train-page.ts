/**
 * The training page the CLI drives in headless Chromium: `window.maceTrain(model, request)` and
 * `window.maceTrainStepBench(options)` (the training-step benchmark on a synthetic model) resolve
 * with { ok: true, result } or { ok: false, error } (see page-common.ts). Progress and per-step
 * metrics go to functions the CLI exposed with Playwright (maceLog, maceStep) when present.
 */
import type { KtoStepMetrics } from '../src/learn/kto-loop.ts';
import type { StepMetrics } from '../src/learn/trainer.ts';
import { gpuOnce, outcome, pageLog, pageSource, type PageModel, type PageOutcome } from './page-common.ts';
import { runTrain, type KtoTrainResult, type TrainRequest, type TrainResult } from './train.ts';
import { runTrainStepBench, type TrainStepBenchOptions, type TrainStepBenchResult } from './train-step.ts';

declare global {
  interface Window {
    maceTrain: (model: PageModel, req: TrainRequest) => Promise<PageOutcome<TrainResult | KtoTrainResult>>;
    maceTrainStepBench: (opts: TrainStepBenchOptions) => Promise<PageOutcome<TrainStepBenchResult>>;
    maceStep?: (m: StepMetrics | KtoStepMetrics) => Promise<void>;
  }
}

const context = gpuOnce('mace train');

window.maceTrain = (model, req) => outcome(async () => runTrain(await context(), pageSource(model), req, { onLog: pageLog, onStep: (m) => void window.maceStep?.(m) }));

window.maceTrainStepBench = (opts) => outcome(async () => runTrainStepBench(await context(), opts, pageLog));

document.getElementById('status')!.textContent = 'Ready: call window.maceTrain(model, request) or window.maceTrainStepBench(options).';
