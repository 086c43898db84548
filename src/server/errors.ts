/**
 * Errors of `mace serve` on the wire: every failure is an HTTP status and OpenAI's error body
 * `{error: {message, type, param, code}}` (what the official `openai` client parses into
 * BadRequestError, NotFoundError, ...). The engine's typed errors keep their `param` and their stable
 * code; `name` is a mace extension of the body so the remote client (src/engine/remote-client.ts)
 * can rebuild the same typed error.
 *
 * Pure data in, pure data out (no node: imports): the HTTP layer and tests share it.
 */
import { serializeError, type WireValue } from '../engine/errors-wire.ts';

/** OpenAI's error object, with the engine error's name and data fields as extensions. */
export interface OpenAIErrorBody {
  error: {
    message: string;
    type: string;
    param: string | null;
    code: string | null;
    /** mace extension: the engine error as it was (class name, stable code, data fields such as file or promptTokens). */
    mace?: { name: string; code: string; fields: Record<string, WireValue> };
  };
}

/** A failure the HTTP layer itself raises (bad JSON, too large, unknown route, limits). */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly type: string = typeForStatus(status),
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** OpenAI's error types by status (its API and the python client use these names). */
function typeForStatus(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

/** Engine error codes -> HTTP status. Codes not listed are the server's fault (500). */
const STATUS_BY_CODE: Record<string, number> = {
  'invalid-request': 400,
  'prompt-too-long': 400,
  'adapter-not-found': 404,
  'adapter-unloaded': 404,
  'bad-adapter-config': 400,
  'bad-peft-adapter': 400,
  'bad-adapter-shape': 400,
  'bad-adapter-slot': 400,
  'engine-closed': 503,
};

/** OpenAI's own codes where one exists (clients test for these), else the engine's. */
const OPENAI_CODE: Record<string, string> = {
  'prompt-too-long': 'context_length_exceeded',
  'adapter-not-found': 'model_not_found',
};

/** The request field an engine error is about, when its own fields do not say. */
function paramOf(code: string, fields: Record<string, WireValue>, promptParam: string): string | null {
  if (typeof fields.param === 'string') return fields.param;
  if (code === 'prompt-too-long') return promptParam;
  if (code === 'adapter-not-found' || code === 'adapter-unloaded') return 'model';
  if (typeof fields.field === 'string') return fields.field;
  return null;
}

/**
 * Any thrown value -> HTTP status and OpenAI error body. `promptParam`: the field holding the
 * prompt on this route ('messages' for chat, 'prompt' for completions), named by a too-long prompt.
 */
export function errorResponse(e: unknown, promptParam = 'messages'): { status: number; body: OpenAIErrorBody } {
  if (e instanceof HttpError) return { status: e.status, body: { error: { message: e.message, type: e.type, param: e.param, code: e.code } } };
  const wire = serializeError(e);
  const status = STATUS_BY_CODE[wire.code] ?? 500;
  // remoteStack: an error revived from the page carries its page-side stack; it stays in the log.
  const { remoteStack: _r, ...fields } = wire.fields;
  return {
    status,
    body: {
      error: {
        message: wire.message,
        type: typeForStatus(status),
        param: paramOf(wire.code, wire.fields, promptParam),
        code: OPENAI_CODE[wire.code] ?? wire.code,
        mace: { name: wire.name, code: wire.code, fields },
      },
    },
  };
}
