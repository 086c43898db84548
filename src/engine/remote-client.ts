/**
 * The engine's OpenAI-style surface over HTTP: `createRemoteEngine({baseURL})` gives the same
 * `chat.completions.create` / `completions.create` as the in-thread and worker engines, backed by
 * an OpenAI-compatible server (`mace serve`, vLLM, ...) instead of the local GPU. Works wherever
 * `fetch` and ReadableStream exist (browsers, Node >= 18).
 *
 * - stream: true resolves (after the server accepted the request) with an AsyncIterable of chunks
 *   parsed from the Server-Sent Events; usage is asked for (stream_options.include_usage) and put
 *   on the final chunk, where the local engines have it. Leaving the `for await` early closes the
 *   connection, which cancels the request on the server.
 * - signal: aborting mid-stream ends the stream with a last chunk whose finish_reason is 'abort'
 *   (as the local engines); a non-streaming request rejects with the signal's reason (no partial
 *   answer comes back over HTTP).
 * - Errors: the server's error JSON becomes a MaceRemoteError (as from the worker): `name` and
 *   `code` are the engine's when the server is `mace serve` (its `mace` extension of the error
 *   object), else 'RemoteApiError' and OpenAI's code; `status`, `param` and `type` are fields.
 *   An unreachable server is a MaceRemoteError with code 'remote-unreachable'.
 */
import { MaceRemoteError, type WireValue } from './errors-wire.ts';
import type { ChatCompletions, Completions } from './openai.ts';

export interface RemoteEngineOptions {
  /** The server's OpenAI base URL, e.g. http://127.0.0.1:8000/v1 (as the openai client's baseURL). */
  baseURL: string;
  /** Sent as Authorization: Bearer <apiKey>. */
  apiKey?: string;
  /** Default `model` of requests that give none (the server's default model when absent). */
  model?: string;
  /** fetch to use (tests, proxies); default globalThis.fetch. */
  fetch?: typeof fetch;
}

export interface RemoteModel {
  id: string;
  object: 'model';
  owned_by?: string;
  parent?: string | null;
  root?: string | null;
  max_model_len?: number;
}

export interface RemoteEngine {
  readonly chat: { readonly completions: ChatCompletions };
  readonly completions: Completions;
  /** GET /models: the base model and, on mace serve or vLLM, each loaded LoRA adapter. */
  models(): Promise<RemoteModel[]>;
  readonly baseURL: string;
}

function unreachable(url: string, e: unknown): MaceRemoteError {
  const cause = (e as { cause?: { message?: string } })?.cause?.message ?? (e as Error)?.message ?? String(e);
  return new MaceRemoteError({ name: 'RemoteUnreachableError', code: 'remote-unreachable', message: `cannot reach ${url}: ${cause}`, fields: { url } });
}

/** A server's error response (OpenAI's {error: {...}}, or any text) as a MaceRemoteError. */
export function remoteError(status: number, text: string): MaceRemoteError {
  let err: Record<string, unknown> | null = null;
  try {
    const j = JSON.parse(text) as { error?: unknown };
    if (j && typeof j.error === 'object' && j.error !== null) err = j.error as Record<string, unknown>;
  } catch {
    /* not JSON: the text is the message */
  }
  if (!err || typeof err.message !== 'string') return new MaceRemoteError({ name: 'RemoteApiError', code: `http-${status}`, message: `HTTP ${status}: ${text.slice(0, 500)}`, fields: { status } });
  const mace = err.mace as { name?: unknown; code?: unknown; fields?: Record<string, WireValue> } | undefined;
  const str = (v: unknown) => (typeof v === 'string' ? v : null);
  const fields: Record<string, WireValue> = { ...(mace?.fields ?? {}), status, param: str(err.param), type: str(err.type), openaiCode: str(err.code) };
  return new MaceRemoteError({
    name: str(mace?.name) ?? 'RemoteApiError',
    code: str(mace?.code) ?? str(err.code) ?? `http-${status}`,
    message: err.message,
    fields,
  });
}

/**
 * Server-Sent Events -> the `data` of each event (lines joined by \n), in order. Comments and
 * other fields (event, id, retry) are skipped: OpenAI streams use data only.
 */
export async function* sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let data: string[] = [];
  try {
    for (;;) {
      const { done, value } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + (buffer.startsWith('\r\n', nl) ? 2 : 1));
        if (line === '') {
          if (data.length) yield data.join('\n');
          data = [];
        } else if (line.startsWith('data:')) data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
      }
      if (done) {
        if (buffer.startsWith('data:')) data.push(buffer.slice(buffer.startsWith('data: ') ? 6 : 5));
        if (data.length) yield data.join('\n');
        return;
      }
    }
  } finally {
    // Leaving early (break, abort, error): cancelling the body closes the connection.
    await reader.cancel().catch(() => undefined);
  }
}

type Chunk = { id?: string; object?: string; created?: number; model?: string; choices?: { finish_reason?: string | null }[]; usage?: unknown; error?: unknown };

/** The last chunk when the client aborts: finish_reason 'abort', as the local engines end. */
function abortChunk(last: Chunk | null, chat: boolean): Chunk {
  const choice = chat ? { index: 0, delta: {}, finish_reason: 'abort', logprobs: null } : { index: 0, text: '', finish_reason: 'abort', logprobs: null };
  return { id: last?.id ?? '', object: chat ? 'chat.completion.chunk' : 'text_completion', created: last?.created ?? Math.floor(Date.now() / 1000), model: last?.model ?? '', choices: [choice as never], usage: null };
}

/**
 * Chunks of an OpenAI stream, usage folded into the final chunk: a finishing chunk is held until
 * the next event, and a `choices: []` usage chunk after it becomes its usage.
 */
async function* chunkStream(res: Response, chat: boolean, signal: AbortSignal | undefined): AsyncGenerator<Chunk> {
  let held: Chunk | null = null;
  let last: Chunk | null = null;
  try {
    for await (const data of sseData(res.body!)) {
      if (data === '[DONE]') break;
      let c: Chunk;
      try {
        c = JSON.parse(data) as Chunk;
      } catch {
        throw new MaceRemoteError({ name: 'RemoteApiError', code: 'bad-stream', message: `the server sent an event that is not JSON: ${data.slice(0, 200)}`, fields: {} });
      }
      if (c.error) throw remoteError(500, JSON.stringify({ error: c.error }));
      last = c;
      if (held && Array.isArray(c.choices) && c.choices.length === 0 && c.usage) {
        yield { ...held, usage: c.usage };
        held = null;
        continue;
      }
      if (held) yield held;
      held = null;
      if (c.choices?.some((ch) => ch.finish_reason)) held = c;
      else yield c;
    }
    if (held) yield { ...held, usage: held.usage ?? null };
  } catch (e) {
    if (signal?.aborted) {
      yield abortChunk(last, chat);
      return;
    }
    throw e;
  }
}

export function createRemoteEngine(options: RemoteEngineOptions): RemoteEngine {
  const base = options.baseURL.replace(/\/+$/, '');
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const headers = (json: boolean): Record<string, string> => ({ ...(json ? { 'content-type': 'application/json' } : {}), ...(options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {}) });

  async function send(path: string, init: RequestInit): Promise<Response> {
    const url = base + path;
    let res: Response;
    try {
      res = await doFetch(url, init);
    } catch (e) {
      if ((init.signal as AbortSignal | undefined)?.aborted) throw (init.signal as AbortSignal).reason;
      throw unreachable(url, e);
    }
    if (!res.ok) throw remoteError(res.status, await res.text());
    return res;
  }

  function create(path: string, chat: boolean) {
    return async (p: object): Promise<unknown> => {
      // The signal stays here: it aborts the fetch, and closing the connection cancels on the server.
      const { signal, ...fields } = p as { signal?: AbortSignal } & Record<string, unknown>;
      const stream = fields.stream === true;
      const body: Record<string, unknown> = { ...fields };
      if (body.model === undefined && options.model !== undefined) body.model = options.model;
      // Usage on the final chunk, as the local engines give it (unless the caller said otherwise).
      if (stream && (body.stream_options ?? null) === null) body.stream_options = { include_usage: true };
      const res = await send(path, { method: 'POST', headers: headers(true), body: JSON.stringify(body), signal });
      if (!stream) return res.json();
      return { [Symbol.asyncIterator]: () => chunkStream(res, chat, signal) };
    };
  }

  return {
    baseURL: base,
    chat: { completions: { create: create('/chat/completions', true) as ChatCompletions['create'] } },
    completions: { create: create('/completions', false) as Completions['create'] },
    async models() {
      const res = await send('/models', { method: 'GET', headers: headers(false) });
      const j = (await res.json()) as { data?: RemoteModel[] };
      return j.data ?? [];
    },
  };
}
