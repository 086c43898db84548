/**
 * `mace serve`: an OpenAI-compatible HTTP server over a ServeBackend (the engine in this process
 * or in a headless Chromium page; see bin/serve.mjs).
 *
 * Routes: POST /v1/chat/completions, POST /v1/completions (stream: true -> Server-Sent Events
 * `data: {chunk}` ... `data: [DONE]`, OpenAI's wire shape, usage in a last `choices: []` chunk with
 * stream_options.include_usage), GET /v1/models, POST /v1/load_lora_adapter and
 * /v1/unload_lora_adapter (vLLM's shapes, src/server/adapter-routes.ts), GET /health.
 *
 * A request's `model` is the base model's name or a loaded adapter's (as vLLM); anything else is a
 * 404 model_not_found. Limits: body bytes (413), concurrent generations (429), max_tokens (400
 * above the limit; the limit is the default when a request gives none). A client that disconnects
 * cancels its request in the engine. Every error is OpenAI's error JSON (src/server/errors.ts).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { listModels, loadLoraAdapter, unloadLoraAdapter, type AdapterRoots } from './adapter-routes.ts';
import type { Endpoint, ServeBackend } from './backend.ts';
import { parseJsonObject, readBody } from './body.ts';
import { errorResponse, HttpError } from './errors.ts';

export interface ServeOptions {
  /** Interface to bind (default 127.0.0.1: only this machine can connect). */
  host?: string;
  /** 0 picks a free port. Default 8000. */
  port?: number;
  /** When set, every /v1 request needs `Authorization: Bearer <apiKey>` (401 otherwise). */
  apiKey?: string;
  /** Largest body of the generation routes, in bytes. Default 2 MiB. */
  maxBodyBytes?: number;
  /** Largest body of /v1/load_lora_adapter (an uploaded adapter is in it, base64). Default 256 MiB. */
  maxAdapterBytes?: number;
  /** Generations running at once; one more is a 429. Default 32. */
  maxConcurrent?: number;
  /** Most tokens one request may generate; the default max_tokens. Default 2048. */
  maxTokensLimit?: number;
  /** Access-Control-Allow-Origin for browser pages on other origins (the remote client); default none. */
  allowOrigin?: string;
  /** Adapters loaded before the server listens (vLLM's --lora-modules): a failure fails the start. */
  loraModules?: { name: string; path: string }[];
  /** Shown as the base model's `root` in /v1/models (its directory or URL). */
  modelRoot?: string;
  log?: (message: string) => void;
}

export interface RunningServer {
  /** http://host:port (what a client's baseURL is, plus /v1). */
  readonly url: string;
  readonly server: Server;
  /** Stop accepting, cancel the requests in flight, and close. */
  close(): Promise<void>;
}

export const SERVE_DEFAULTS = { host: '127.0.0.1', port: 8000, maxBodyBytes: 2 * 2 ** 20, maxAdapterBytes: 256 * 2 ** 20, maxConcurrent: 32, maxTokensLimit: 2048 } as const;

/** Fields that cannot cross HTTP: the engine's AbortSignal (closing the connection cancels instead). */
const NOT_OVER_HTTP: Record<string, string> = { signal: 'is not a request field over HTTP: close the connection to cancel' };

type Limits = Required<Pick<ServeOptions, 'maxBodyBytes' | 'maxAdapterBytes' | 'maxConcurrent' | 'maxTokensLimit'>>;

/** Wait until `res` can take more, or is gone (a vanished client must not hang the stream). */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendText(res: ServerResponse, text: string): void {
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * The request's `model` -> the adapter it names (null: the base model). Unknown names are 404, as
 * OpenAI and vLLM answer them.
 */
async function adapterOf(backend: ServeBackend, params: Record<string, unknown>): Promise<string | null> {
  const model = params.model;
  if (model === undefined || model === null || model === backend.modelName) return null;
  if (typeof model !== 'string') throw new HttpError(400, `model must be a string, got ${JSON.stringify(model)}`, 'model', 'invalid_value');
  const names = (await backend.listAdapters()).map((a) => a.name);
  if (!names.includes(model)) throw new HttpError(404, `The model '${model}' does not exist (served: ${[backend.modelName, ...names].map((n) => `'${n}'`).join(', ')})`, 'model', 'model_not_found');
  return model;
}

/** max_tokens past the server's limit is refused; none given: the limit. */
function capMaxTokens(params: Record<string, unknown>, limit: number): void {
  for (const f of ['max_tokens', 'max_completion_tokens']) {
    const v = params[f];
    if (typeof v === 'number' && v > limit) throw new HttpError(400, `${f} = ${v} is above this server's limit of ${limit} tokens per request (--max-tokens-limit)`, f, 'invalid_value');
  }
  if ((params.max_tokens ?? null) === null && (params.max_completion_tokens ?? null) === null) params.max_tokens = limit;
}

/** One engine chunk -> the chunks OpenAI sends: usage moves to a last `choices: []` chunk when asked for, else it goes. */
function wireChunks(chunk: Record<string, unknown>, model: string, includeUsage: boolean): Record<string, unknown>[] {
  const { usage, ...rest } = chunk;
  const out: Record<string, unknown>[] = [{ ...rest, model, ...(includeUsage ? { usage: null } : {}) }];
  if (includeUsage && usage) out.push({ id: rest.id, object: rest.object, created: rest.created, model, choices: [], usage });
  return out;
}

/** What the Server class keeps between requests. */
interface State {
  backend: ServeBackend;
  limits: Limits;
  roots: AdapterRoots;
  active: number;
  /** Cancels every request in flight (close()). */
  controllers: Set<AbortController>;
  created: number;
  modelRoot: string;
  log: (message: string) => void;
}

async function generate(state: State, endpoint: Endpoint, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { backend, limits } = state;
  if (state.active >= limits.maxConcurrent) throw new HttpError(429, `this server runs at most ${limits.maxConcurrent} requests at once (--max-concurrent); try again later`, null, 'rate_limit_exceeded');
  state.active++;
  const controller = new AbortController();
  state.controllers.add(controller);
  // The response closing before it finished means the client went away: cancel in the engine.
  const onClose = () => {
    if (!res.writableFinished) controller.abort();
  };
  res.on('close', onClose);
  const t0 = Date.now();
  // The access log line: what the engine said last (an 'abort' here is a cancelled request).
  let finish: unknown = null;
  let tokens: unknown = null;
  const note = (r: Record<string, unknown> | null) => {
    const choice = (r?.choices as { finish_reason?: unknown }[] | undefined)?.[0];
    if (choice?.finish_reason) finish = choice.finish_reason;
    const u = r?.usage as { completion_tokens?: unknown } | null | undefined;
    if (u) tokens = u.completion_tokens;
  };
  let streamed = false;
  try {
    const params = parseJsonObject(await readBody(req, limits.maxBodyBytes), req.headers['content-type']);
    for (const [f, why] of Object.entries(NOT_OVER_HTTP)) if (f in params) throw new HttpError(400, `${f} ${why}`, f, 'unknown_field');
    const stream = params.stream ?? false;
    if (typeof stream !== 'boolean') throw new HttpError(400, `stream must be a boolean, got ${JSON.stringify(stream)}`, 'stream', 'invalid_value');
    const model = typeof params.model === 'string' ? params.model : backend.modelName;
    const adapter = await adapterOf(backend, params);
    delete params.model;
    if (adapter !== null) {
      if ((params.adapter ?? null) !== null && params.adapter !== adapter) throw new HttpError(400, `adapter '${String(params.adapter)}' and model '${adapter}' name different adapters`, 'adapter', 'invalid_value');
      params.adapter = adapter;
    }
    capMaxTokens(params, limits.maxTokensLimit);
    const so = params.stream_options as { include_usage?: unknown } | null | undefined;
    const includeUsage = typeof so === 'object' && so !== null && so.include_usage === true;
    if (!stream) {
      const result = (await backend.run(endpoint, params, null, controller.signal)) as Record<string, unknown>;
      note(result);
      if (!controller.signal.aborted) sendJson(res, 200, { ...result, model });
      return;
    }
    // Headers wait for the first chunk: a request the engine refuses still gets its 4xx status.
    streamed = true;
    const onChunk = async (chunk: unknown) => {
      note(chunk as Record<string, unknown>);
      if (controller.signal.aborted || res.destroyed) return;
      if (!res.headersSent) res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      for (const c of wireChunks(chunk as Record<string, unknown>, model, includeUsage)) {
        if (!res.write(`data: ${JSON.stringify(c)}\n\n`)) await drained(res);
      }
    };
    await backend.run(endpoint, params, onChunk, controller.signal);
    if (res.destroyed) return;
    if (!res.headersSent) res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
    res.end('data: [DONE]\n\n');
  } finally {
    state.active--;
    state.controllers.delete(controller);
    res.off('close', onClose);
    if (finish !== null) state.log(`${req.method} ${req.url} ${streamed ? 'stream' : 'json'}: finish_reason ${String(finish)}, ${String(tokens)} tokens, ${Date.now() - t0} ms${controller.signal.aborted ? ' (client gone: cancelled)' : ''}`);
  }
}

async function jsonBody(req: IncomingMessage, cap: number): Promise<Record<string, unknown>> {
  return parseJsonObject(await readBody(req, cap), req.headers['content-type']);
}

type Handler = (state: State, req: IncomingMessage, res: ServerResponse) => Promise<void>;

const ROUTES: Record<string, { method: 'GET' | 'POST'; auth: boolean; handle: Handler }> = {
  '/v1/chat/completions': { method: 'POST', auth: true, handle: (s, req, res) => generate(s, 'chat', req, res) },
  '/v1/completions': { method: 'POST', auth: true, handle: (s, req, res) => generate(s, 'completions', req, res) },
  '/v1/models': { method: 'GET', auth: true, handle: async (s, _req, res) => sendJson(res, 200, await listModels(s.backend, s.roots, s.modelRoot, s.created)) },
  '/v1/load_lora_adapter': { method: 'POST', auth: true, handle: async (s, req, res) => sendText(res, await loadLoraAdapter(s.backend, s.roots, await jsonBody(req, s.limits.maxAdapterBytes))) },
  '/v1/unload_lora_adapter': { method: 'POST', auth: true, handle: async (s, req, res) => sendText(res, await unloadLoraAdapter(s.backend, s.roots, await jsonBody(req, s.limits.maxBodyBytes))) },
  '/health': { method: 'GET', auth: false, handle: async (_s, _req, res) => sendText(res, '') },
};

function positive(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`mace serve: ${name} = ${v} must be a positive integer`);
  return v;
}

export async function startServer(backend: ServeBackend, options: ServeOptions = {}): Promise<RunningServer> {
  const o = { ...SERVE_DEFAULTS, ...options };
  const log = options.log ?? (() => {});
  const limits: Limits = { maxBodyBytes: positive('maxBodyBytes', o.maxBodyBytes), maxAdapterBytes: positive('maxAdapterBytes', o.maxAdapterBytes), maxConcurrent: positive('maxConcurrent', o.maxConcurrent), maxTokensLimit: positive('maxTokensLimit', o.maxTokensLimit) };
  const state: State = { backend, limits, roots: new Map(), active: 0, controllers: new Set(), created: Math.floor(Date.now() / 1000), modelRoot: options.modelRoot ?? backend.modelName, log };
  const key = options.apiKey === undefined ? null : digest(options.apiKey);
  for (const m of options.loraModules ?? []) {
    try {
      log(await loadLoraAdapter(backend, state.roots, { lora_name: m.name, lora_path: m.path }));
    } catch (e) {
      throw new Error(`mace serve: --lora-modules ${m.name}=${m.path}: ${(e as Error).message}`);
    }
  }

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (options.allowOrigin) {
      res.setHeader('access-control-allow-origin', options.allowOrigin);
      res.setHeader('access-control-allow-headers', 'authorization, content-type');
      res.setHeader('access-control-allow-methods', 'GET, POST, OPTIONS');
      if (req.method === 'OPTIONS') return void res.writeHead(204).end();
    }
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const route = ROUTES[path];
    if (!route) throw new HttpError(404, `Invalid URL (${req.method} ${path}); routes: ${Object.entries(ROUTES).map(([p, r]) => `${r.method} ${p}`).join(', ')}`, null, 'unknown_url');
    if (req.method !== route.method) throw new HttpError(405, `${path} takes ${route.method}, not ${req.method}`, null, 'method_not_allowed');
    if (route.auth && key !== null) {
      const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
      if (!m || !timingSafeEqual(digest(m[1]), key)) throw new HttpError(401, 'Incorrect API key provided: pass it as Authorization: Bearer <key> (the server was started with --api-key)', null, 'invalid_api_key');
    }
    await route.handle(state, req, res);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      const { status, body } = errorResponse(e, req.url?.startsWith('/v1/completions') ? 'prompt' : 'messages');
      if (status >= 500) log(`mace serve: ${req.method} ${req.url}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      if (res.destroyed) return;
      if (!res.headersSent) {
        // A body not read to its end would be parsed as the next request: close the connection after a refusal mid-body.
        if (!req.complete) res.setHeader('connection', 'close');
        return sendJson(res, status, body);
      }
      // Mid-stream: the error as one more event (the openai client raises it), then the end.
      res.end(`data: ${JSON.stringify(body)}\n\ndata: [DONE]\n\n`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${host}:${addr.port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of state.controllers) c.abort();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
