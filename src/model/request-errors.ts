/**
 * Errors of one request (re-exported by src/engine/errors.ts, where the engine's other typed errors
 * are): they live here, below the engine, because prompt building (src/model/prompt.ts) raises them
 * for the engine and for the learner's pair tokenizer alike. Each has a stable `code` and a message
 * naming the request field at fault.
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
