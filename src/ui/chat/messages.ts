/**
 * Sentences the widget shows: typed engine errors (MaceRemoteError codes) turned into what a
 * person can do about them, and load progress in words.
 */
import type { LoadProgress } from '../../model/loader.ts';

/** Fields a typed error may carry (MaceRemoteError has them as own properties). */
interface ErrorLike {
  code?: unknown;
  message?: unknown;
  file?: unknown;
  status?: unknown;
  promptTokens?: unknown;
  maxContext?: unknown;
  field?: unknown;
}

export const NO_WEBGPU_MESSAGE =
  'This chat runs its AI model on your own device’s GPU through WebGPU, and this browser does not offer WebGPU. ' +
  'Try a recent Chrome or Edge (or Safari 26+), on a page served over https.';

/** The error's code, or '' when it has none. */
export function errorCode(e: unknown): string {
  const code = typeof e === 'object' && e !== null ? (e as ErrorLike).code : undefined;
  return typeof code === 'string' ? code : '';
}

/** A sentence a person can act on, by error code; `doing` names what failed ("Loading the model"). */
export function friendlyError(e: unknown, doing: string): string {
  const err: ErrorLike = typeof e === 'object' && e !== null ? e : {};
  const msg = typeof err.message === 'string' ? err.message : String(e);
  switch (err.code) {
    case 'webgpu-unavailable':
      return NO_WEBGPU_MESSAGE;
    case 'no-adapter':
      return `The browser has WebGPU but offered no GPU (${msg}). WebGPU may be disabled or this GPU blocklisted.`;
    case 'model-file':
      return err.status === 0
        ? `Could not fetch ${String(err.file)}: the network failed or you are offline.`
        : `Could not fetch ${String(err.file)} (${msg}). Check the model's repository id or URL; gated models need a token, which this widget does not send.`;
    case 'bad-config':
    case 'unsupported-architecture':
    case 'bad-checkpoint':
    case 'bad-safetensors':
    case 'bad-tokenizer':
    case 'bad-model-file':
      return `This model cannot run here: ${msg}`;
    case 'limits-too-small':
      return `This GPU is too small for the model: ${msg}. Try format="q4" or a smaller model.`;
    case 'prompt-too-long':
      return `The conversation is too long for the model: ${String(err.promptTokens)} tokens, and its context holds ${String(err.maxContext)}. Clear the conversation to go on.`;
    case 'no-model':
      return 'No model is loaded.';
    case 'device-lost':
      return `The GPU stopped responding (${msg}). Reload the model to go on.`;
    case 'worker-gone':
      return `The engine stopped (${msg}). Reload the page.`;
    case 'bad-attribute':
      return msg;
    default:
      return `${doing} failed: ${msg}`;
  }
}

function bytes(n: number): string {
  return n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${(n / 1024).toFixed(0)} KiB`;
}

const PHASE_WORDS: Record<LoadProgress['phase'], string> = {
  files: 'Reading',
  download: 'Downloading',
  headers: 'Checking',
  weights: 'Uploading weights from',
  done: 'Loaded',
};

/** One load progress report in words, e.g. "Downloading model.safetensors (1.2 MiB of 4.0 MiB)". */
export function progressLine(p: LoadProgress): string {
  const amount = p.phase === 'download' || p.phase === 'weights' ? ` (${bytes(p.loaded)}${p.total ? ` of ${bytes(p.total)}` : ''})` : '';
  return `${PHASE_WORDS[p.phase]} ${p.file}${amount}`;
}

/** The bar's fraction for a report, or null when the total is unknown (indeterminate bar). */
export function progressFraction(p: LoadProgress): number | null {
  if (p.phase === 'done') return 1;
  return p.total > 0 ? Math.min(1, p.loaded / p.total) : null;
}
