/**
 * The `model` and `format` attributes of `<mace-chat>` as load requests.
 *
 * model: a URL or path of a folder of Hugging Face files (`https://…/`, `/models/x/`, `./x/`), or
 * a Hub repository id `owner/name`, optionally `owner/name@revision`.
 */
import type { WeightFormat } from '../../kernels/weights.ts';
import type { ModelSourceSpec } from '../../engine/worker-api.ts';

/** An attribute value the widget cannot use; `field` is the attribute's name. */
export class WidgetAttributeError extends Error {
  readonly code = 'bad-attribute';
  constructor(
    readonly field: string,
    readonly value: string,
    detail: string,
  ) {
    super(`<mace-chat> ${field}="${value}": ${detail}`);
    this.name = 'WidgetAttributeError';
  }
}

const HUB_ID = /^([\w.-]+\/[\w.-]+)(?:@([\w./-]+))?$/;
const URL_LIKE = /^(https?:\/\/|\/|\.\.?\/)/;

/** The `model` attribute → where the worker loads from. */
export function parseModelAttribute(text: string): ModelSourceSpec {
  const t = text.trim();
  if (t === '') throw new WidgetAttributeError('model', text, 'is empty; give a folder URL of Hugging Face files or a repository id (owner/name)');
  if (URL_LIKE.test(t)) return { kind: 'url', base: t.endsWith('/') ? t : `${t}/` };
  const hub = HUB_ID.exec(t);
  if (hub) return { kind: 'hub', repo: hub[1], ...(hub[2] ? { revision: hub[2] } : {}) };
  throw new WidgetAttributeError('model', text, 'is neither a URL (https://…, /…, ./…) nor a Hugging Face repository id (owner/name[@revision])');
}

const FORMATS: readonly WeightFormat[] = ['f32', 'f16', 'q4'];

/** The `format` attribute (storage of the weights on the GPU); absent: f32. */
export function parseFormatAttribute(text: string | null): WeightFormat {
  if (text === null || text.trim() === '') return 'f32';
  const t = text.trim();
  if ((FORMATS as readonly string[]).includes(t)) return t as WeightFormat;
  throw new WidgetAttributeError('format', text, `must be one of ${FORMATS.join(', ')}`);
}

const PROFILE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/**
 * The `profile` attribute: whose feedback, pairs and learnt adapter these are. Each profile has its
 * own IndexedDB store (`mace-web:<profile>`; absent: the site's default store `mace-web`).
 */
export function parseProfileAttribute(text: string | null): string | undefined {
  if (text === null || text.trim() === '') return undefined;
  const t = text.trim();
  if (!PROFILE.test(t)) throw new WidgetAttributeError('profile', text, 'must be 1 to 64 letters, digits, _ . - (starting with a letter or digit)');
  return t;
}

/** The feedback store of a profile (LoadRequest.feedbackStore). */
export function profileStore(profile: string | undefined): string | undefined {
  return profile === undefined ? undefined : `mace-web:${profile}`;
}

/** A number attribute within [min, max]; absent: the default. */
export function parseNumberAttribute(field: string, text: string | null, fallback: number, min: number, max: number, integer = false): number {
  if (text === null || text.trim() === '') return fallback;
  const n = Number(text);
  if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
    throw new WidgetAttributeError(field, text, `must be ${integer ? 'an integer' : 'a number'} in [${min}, ${max}]`);
  }
  return n;
}
