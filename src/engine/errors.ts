/**
 * Typed errors of the serving engine. Each has a stable `code` (what a Web Worker wrapper or an
 * HTTP shim maps to an OpenAI error type) and a message that names the request field at fault.
 * They fail ONE request; the engine keeps serving the others.
 */

/** A request parameter is missing, of the wrong type or out of range. */
export class InvalidRequestError extends Error {
  readonly code = 'invalid-request';
  constructor(
    readonly param: string,
    detail: string,
  ) {
    super(`request: ${param} ${detail}`);
    this.name = 'InvalidRequestError';
  }
}

/** The prompt does not leave room for one generated token in the engine's context window. */
export class PromptTooLongError extends Error {
  readonly code = 'prompt-too-long';
  constructor(
    readonly promptTokens: number,
    readonly maxContext: number,
  ) {
    super(`request: prompt has ${promptTokens} tokens; the context holds ${maxContext}, so prompts must be at most ${maxContext - 1} tokens`);
    this.name = 'PromptTooLongError';
  }
}

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
