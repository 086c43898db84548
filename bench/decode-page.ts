/**
 * The inference page the CLI drives in headless Chromium: `window.maceGenerate(model, request)` and
 * `window.maceDecodeBench(options)`. Both resolve with { ok: true, result } or { ok: false, error }
 * (the error's name, code and message: typed errors do not survive page.evaluate otherwise). Text
 * and progress go to functions the CLI exposed with Playwright (maceText, maceLog) when present.
 */
import { acquireGpu, describeGpu, type GpuContext } from '../src/gpu/device.ts';
import type { WeightFormat } from '../src/kernels/weights.ts';
import { sourceFromHub, sourceFromUrl, type ModelSource } from '../src/model/source.ts';
import { runDecodeBench, type DecodeBenchResult } from './decode.ts';
import { runGenerate, type GenerateRequest, type GenerateResult } from './generate.ts';
import type { SyntheticModelId } from './synthetic-model.ts';

/** Where the model is: a URL prefix (the CLI serves local directories under one) or a Hub repo. */
export type PageModel = { kind: 'url'; url: string; name?: string } | { kind: 'hub'; repo: string };

export interface PageDecodeOptions {
  model: SyntheticModelId | PageModel;
  formats: WeightFormat[];
  batches: number[];
  promptTokens: number;
  tokens: number;
}

export interface PageError {
  name: string;
  code?: string;
  message: string;
  stack?: string;
}

export type PageOutcome<T> = { ok: true; result: T } | { ok: false; error: PageError };

declare global {
  interface Window {
    maceGenerate: (model: PageModel, req: GenerateRequest) => Promise<PageOutcome<GenerateResult>>;
    maceDecodeBench: (opts: PageDecodeOptions) => Promise<PageOutcome<DecodeBenchResult>>;
    maceText?: (text: string) => Promise<void>;
    maceLog?: (message: string) => Promise<void>;
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
  gpu ??= acquireGpu({ label: 'mace inference' }).catch((e: unknown) => {
    gpu = undefined;
    throw e;
  });
  const ctx = await gpu;
  log(`GPU: ${describeGpu(ctx)}`);
  return ctx;
}

/** A fresh profile per run: the Cache API would only add a disk copy of every file. */
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

window.maceGenerate = (model, req) =>
  outcome(async () => runGenerate(await context(), source(model), req, { onText: (t) => window.maceText?.(t), onLog: log }));

window.maceDecodeBench = (opts) =>
  outcome(async () => {
    const model = typeof opts.model === 'string' ? opts.model : { source: source(opts.model), name: opts.model.kind === 'url' ? (opts.model.name ?? opts.model.url) : opts.model.repo };
    return runDecodeBench(await context(), { ...opts, model, env: 'chromium', onProgress: log });
  });

status.textContent = 'Ready: call window.maceGenerate(model, request) or window.maceDecodeBench(options).';
