/**
 * The pure parts of `mace serve` and the remote client: engine errors -> OpenAI error JSON
 * (src/server/errors.ts), the error JSON -> MaceRemoteError, and the SSE parser
 * (src/engine/remote-client.ts) on the ways servers split and end events.
 */
import { describe, expect, it } from 'vitest';
import { AdapterNotFoundError } from '../../src/engine/adapters.ts';
import { EngineClosedError, InvalidRequestError, PromptTooLongError } from '../../src/engine/errors.ts';
import { remoteError, sseData } from '../../src/engine/remote-client.ts';
import { AdapterConfigError } from '../../src/learn/errors.ts';
import type { ServeBackend } from '../../src/server/backend.ts';
import { errorResponse, HttpError } from '../../src/server/errors.ts';
import { startServer } from '../../src/server/http.ts';

function streamOf(parts: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(c) {
      for (const p of parts) c.enqueue(enc.encode(p));
      c.close();
    },
  });
}

async function all(parts: string[]): Promise<string[]> {
  const out = [];
  for await (const d of sseData(streamOf(parts))) out.push(d);
  return out;
}

describe('engine errors as OpenAI error JSON', () => {
  it('maps each typed error to its status, type, param and code, keeping the engine error in `mace`', () => {
    const bad = errorResponse(new InvalidRequestError('top_p', 'must be in (0, 1]'));
    expect(bad).toEqual({ status: 400, body: { error: { message: 'request: top_p must be in (0, 1]', type: 'invalid_request_error', param: 'top_p', code: 'invalid-request', mace: { name: 'InvalidRequestError', code: 'invalid-request', fields: { param: 'top_p' } } } } });
    const long = errorResponse(new PromptTooLongError(900, 512), 'prompt');
    expect([long.status, long.body.error.code, long.body.error.param, long.body.error.mace?.fields]).toEqual([400, 'context_length_exceeded', 'prompt', { promptTokens: 900, maxContext: 512 }]);
    const missing = errorResponse(new AdapterNotFoundError('x', []));
    expect([missing.status, missing.body.error.type, missing.body.error.code, missing.body.error.param]).toEqual([404, 'not_found_error', 'model_not_found', 'model']);
    expect(errorResponse(new AdapterConfigError('r', '= 0')).status).toBe(400);
    expect(errorResponse(new EngineClosedError('destroyed')).status).toBe(503);
    const internal = errorResponse(new TypeError('boom'));
    expect([internal.status, internal.body.error.type, internal.body.error.code]).toEqual([500, 'server_error', 'internal']);
    expect(errorResponse(new HttpError(413, 'too big', null, 'request_too_large')).body).toEqual({ error: { message: 'too big', type: 'invalid_request_error', param: null, code: 'request_too_large' } });
  });

  it('the remote client rebuilds the typed error from the JSON (and copes with non-JSON bodies)', () => {
    const { status, body } = errorResponse(new InvalidRequestError('seed', 'must be an integer'));
    const e = remoteError(status, JSON.stringify(body));
    expect([e.name, e.code, e.message, e.param, e.status, e.type]).toEqual(['InvalidRequestError', 'invalid-request', 'request: seed must be an integer', 'seed', 400, 'invalid_request_error']);
    // vLLM or OpenAI: no `mace` extension, OpenAI's code.
    const v = remoteError(404, JSON.stringify({ error: { message: 'The model `m` does not exist.', type: 'NotFoundError', param: null, code: 404 } }));
    expect([v.name, v.code, v.status]).toEqual(['RemoteApiError', 'http-404', 404]);
    const text = remoteError(502, '<html>bad gateway</html>');
    expect([text.code, text.message]).toEqual(['http-502', 'HTTP 502: <html>bad gateway</html>']);
  });
});

describe('SSE parsing', () => {
  it('yields each event data, whatever the chunk boundaries and line endings', async () => {
    const events = ['data: {"a":1}\n\n', 'data: {"b":2}\r\n\r\n', 'data: [DONE]\n\n'].join('');
    const want = ['{"a":1}', '{"b":2}', '[DONE]'];
    expect(await all([events])).toEqual(want);
    // One byte at a time: a boundary inside "\r\n" or inside a multi-byte character is fine.
    expect(await all([...events])).toEqual(want);
    const utf8 = 'data: {"t":"é😀"}\n\n';
    const bytes = new TextEncoder().encode(utf8);
    const split = new ReadableStream<Uint8Array>({ start(c) { for (const b of bytes) c.enqueue(new Uint8Array([b])); c.close(); } });
    const got = [];
    for await (const d of sseData(split)) got.push(d);
    expect(got).toEqual(['{"t":"é😀"}']);
  });

  it('joins multi-line data, skips comments and other fields, and flushes an event the stream did not end', async () => {
    expect(await all([': keep-alive\n\nevent: x\nid: 3\ndata: line1\ndata:line2\n\n', 'data: last'])).toEqual(['line1\nline2', 'last']);
  });
});

describe('mace serve / adapters push arguments', () => {
  it('serve: 127.0.0.1:8000 by default, limits and runtime from the options; bad values are usage errors', async () => {
    const { parseArgs, UsageError } = await import('../../bin/args.mjs');
    expect(parseArgs(['serve', '--model', 'm'])).toMatchObject({ command: 'serve', host: '127.0.0.1', port: 8000, maxConcurrent: 32, maxTokensLimit: 2048, maxLoras: 4, runtime: 'browser', apiKey: undefined });
    expect(parseArgs(['serve', '--model', 'm', '--port', '0', '--node', '--api-key', '-k-', '--max-loras', '0'])).toMatchObject({ port: 0, runtime: 'node', apiKey: '-k-', maxLoras: 0 });
    expect(() => parseArgs(['serve'])).toThrow(/needs --model/);
    expect(() => parseArgs(['serve', '--model', 'm', '--port', '70000'])).toThrow(UsageError);
    expect(() => parseArgs(['serve', '--model', 'm', '--json'])).toThrow(/does not take --json/);
    expect(parseArgs(['adapters', 'push', '--adapter', 'd', '--server', 'http://h:1/v1', '--name', 'n'])).toEqual({ command: 'adapters-push', adapter: 'd', server: 'http://h:1/v1', name: 'n', apiKey: undefined, upload: false });
    expect(() => parseArgs(['adapters', 'push', '--adapter', 'd', '--name', 'n'])).toThrow(/needs --server/);
    expect(() => parseArgs(['adapters', 'push', '--adapter', 'd', '--server', 'h:1', '--name', 'n'])).toThrow(/http\(s\) URL/);
  });
});

describe('the HTTP layer over a scripted backend (no GPU)', () => {
  /** A backend whose stream is three chunks shaped as the engine's (usage on the last). */
  function scripted(): ServeBackend & { seen: Record<string, unknown>[] } {
    const seen: Record<string, unknown>[] = [];
    const chunk = (text: string, last: boolean) => ({ id: 'cmpl-1', object: 'text_completion', created: 1, model: 'base', choices: [{ index: 0, text, finish_reason: last ? 'length' : null, logprobs: null }], usage: last ? { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } : null });
    return {
      seen,
      modelName: 'base',
      maxContext: 64,
      async run(_e, params, onChunk) {
        seen.push(params);
        if (!onChunk) return { id: 'cmpl-1', object: 'text_completion', created: 1, model: 'base', choices: [{ index: 0, text: 'ab', finish_reason: 'length', logprobs: null }], usage: null };
        for (const c of [chunk('a', false), chunk('b', false), chunk('', true)]) await onChunk(c);
        return null;
      },
      loadAdapter: async () => { throw new Error('no adapters here'); },
      unloadAdapter: async () => { throw new Error('no adapters here'); },
      listAdapters: async () => [],
    };
  }

  it('streams without usage unless include_usage; applies the max_tokens default; CORS only with allowOrigin', async () => {
    const backend = scripted();
    const server = await startServer(backend, { port: 0, maxTokensLimit: 7, allowOrigin: 'http://page.example' });
    try {
      const res = await fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'x', stream: true }) });
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
      expect(res.headers.get('access-control-allow-origin')).toBe('http://page.example');
      const events = [];
      for await (const d of sseData(res.body!)) events.push(d);
      expect(events.at(-1)).toBe('[DONE]');
      const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
      expect(chunks.map((c) => c.choices[0].text)).toEqual(['a', 'b', '']);
      expect(chunks.every((c) => !('usage' in c))).toBe(true);
      expect(backend.seen[0]).toMatchObject({ prompt: 'x', max_tokens: 7 });
      expect('model' in backend.seen[0]).toBe(false);
      const pre = await fetch(`${server.url}/v1/chat/completions`, { method: 'OPTIONS', headers: { origin: 'http://page.example', 'access-control-request-method': 'POST' } });
      expect([pre.status, pre.headers.get('access-control-allow-headers')]).toEqual([204, 'authorization, content-type']);
    } finally {
      await server.close();
    }
    const plain = await startServer(scripted(), { port: 0 });
    try {
      const res = await fetch(`${plain.url}/v1/models`);
      expect(res.headers.get('access-control-allow-origin')).toBeNull();
      expect((await fetch(`${plain.url}/v1/models`, { method: 'OPTIONS' })).status).toBe(405);
    } finally {
      await plain.close();
    }
  });
});
