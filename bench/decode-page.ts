/**
 * The inference page the CLI drives in headless Chromium: `window.maceGenerate(model, request)` and
 * `window.maceDecodeBench(options)`. Both resolve with { ok: true, result } or { ok: false, error }
 * (see page-common.ts). Text and progress go to functions the CLI exposed with Playwright
 * (maceText, maceLog) when present.
 */
import type { KernelPlan } from '../src/kernels/plan.ts';
import type { WeightFormat } from '../src/kernels/weights.ts';
import { runDecodeBench, type DecodeBenchResult } from './decode.ts';
import { runGenerate, type GenerateRequest, type GenerateResult } from './generate.ts';
import { gpuOnce, outcome, pageLog, pageSource, type PageModel, type PageOutcome } from './page-common.ts';
import type { SyntheticModelId } from './synthetic-model.ts';

export interface PageDecodeOptions {
  model: SyntheticModelId | PageModel;
  formats: WeightFormat[];
  batches: number[];
  promptTokens: number;
  tokens: number;
  plans?: KernelPlan[];
  kvWindows?: ({ sinks: number; window: number } | null)[];
}

declare global {
  interface Window {
    maceGenerate: (model: PageModel, req: GenerateRequest) => Promise<PageOutcome<GenerateResult>>;
    maceDecodeBench: (opts: PageDecodeOptions) => Promise<PageOutcome<DecodeBenchResult>>;
    maceText?: (text: string) => Promise<void>;
  }
}

const context = gpuOnce('mace inference');

window.maceGenerate = (model, req) =>
  outcome(async () => runGenerate(await context(), pageSource(model), req, { onText: (t) => window.maceText?.(t), onLog: pageLog }));

window.maceDecodeBench = (opts) =>
  outcome(async () => {
    const model = typeof opts.model === 'string' ? opts.model : { source: pageSource(opts.model), name: opts.model.kind === 'url' ? (opts.model.name ?? opts.model.url) : opts.model.repo };
    return runDecodeBench(await context(), { ...opts, model, env: 'chromium', onProgress: pageLog });
  });

document.getElementById('status')!.textContent = 'Ready: call window.maceGenerate(model, request) or window.maceDecodeBench(options).';
