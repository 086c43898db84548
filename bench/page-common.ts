/**
 * What the pages the CLI drives in headless Chromium share (bench/decode-page.ts, train-page.ts,
 * serve-page.ts): the status line and log, the GPU acquired once per page, model sources, and
 * outcomes as plain data — typed errors do not survive page.evaluate, so an error crosses as its
 * name, code and message.
 */
import { acquireGpu, describeGpu, type GpuContext } from '../src/gpu/device.ts';
import { sourceFromHub, sourceFromUrl, type ModelSource } from '../src/model/source.ts';

/** Where the model is: a URL prefix (the CLI serves local directories under one) or a Hub repo. */
export type PageModel = { kind: 'url'; url: string; name?: string } | { kind: 'hub'; repo: string };

export interface PageError {
  name: string;
  code?: string;
  message: string;
  stack?: string;
}

export type PageOutcome<T> = { ok: true; result: T } | { ok: false; error: PageError };

declare global {
  interface Window {
    maceLog?: (message: string) => Promise<void>;
  }
}

/** Show a progress line in the page (#status, #log) and pass it to the CLI when it listens. */
export function pageLog(message: string): void {
  document.getElementById('status')!.textContent = message;
  document.getElementById('log')!.textContent += `${message}\n`;
  void window.maceLog?.(message);
}

/** The page's GPU, acquired on first use; a failure is not cached, so a later call can try again. */
export function gpuOnce(label: string): () => Promise<GpuContext> {
  let gpu: Promise<GpuContext> | undefined;
  return async () => {
    gpu ??= acquireGpu({ label }).catch((e: unknown) => {
      gpu = undefined;
      throw e;
    });
    const ctx = await gpu;
    pageLog(`GPU: ${describeGpu(ctx)}`);
    return ctx;
  };
}

/** A fresh profile per run: the Cache API would only add a disk copy of every file. */
/** The page's model source; a local directory the CLI serves keeps its name (reports, PEFT's base_model_name_or_path), not the server's URL. */
export function pageSource(m: PageModel): ModelSource {
  if (m.kind === 'hub') return sourceFromHub(m.repo, 'main', { cache: false });
  const source = sourceFromUrl(m.url, { cache: false });
  return m.name === undefined ? source : { description: m.name, open: (f, o) => source.open(f, o), has: (f, o) => source.has(f, o) };
}

export async function outcome<T>(work: () => Promise<T>): Promise<PageOutcome<T>> {
  try {
    return { ok: true, result: await work() };
  } catch (e) {
    const err = e as Error & { code?: unknown };
    return { ok: false, error: { name: err?.name ?? 'Error', code: typeof err?.code === 'string' ? err.code : undefined, message: err?.message ?? String(e), stack: err?.stack } };
  }
}
