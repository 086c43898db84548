/**
 * Typed errors of the serving engine. Each has a stable `code` (what a Web Worker wrapper or an
 * HTTP shim maps to an OpenAI error type) and a message that names the request field at fault.
 * They fail ONE request; the engine keeps serving the others.
 */

// The request errors live below the engine (prompt building in src/model/prompt.ts raises them too).
export { InvalidRequestError, PromptTooLongError } from '../model/request-errors.ts';

/** The engine was destroyed (or its GPU work failed) before the request finished. */
export class EngineClosedError extends Error {
  readonly code = 'engine-closed';
  constructor(detail: string) {
    super(`engine: ${detail}`);
    this.name = 'EngineClosedError';
  }
}

/** Engine options that cannot work together with this model and device. */
export class EngineOptionsError extends Error {
  readonly code = 'bad-engine-options';
  constructor(
    readonly option: string,
    detail: string,
  ) {
    super(`engine options: ${option} ${detail}`);
    this.name = 'EngineOptionsError';
  }
}
