/**
 * `mace serve` (headless Chromium, the default runtime) on stories260K, driven by the official
 * `openai` npm client, raw fetch and the project's remote client. One server for the file, with
 * --max-concurrent 1 so a request still running in the engine is visible as a 429: that is how
 * the abort test sees that a disconnect cancelled the request in the engine.
 */
import { networkInterfaces } from 'node:os';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createRemoteEngine } from '../../src/engine/remote-client.ts';
import { MaceRemoteError } from '../../src/engine/errors-wire.ts';
import { post, removeAdapterDirs, runMace, startMace, STORIES, writeAdapterDir, type MaceServer } from './serve-helpers.ts';

const T = 120_000;
let srv: MaceServer;
let client: OpenAI;

beforeAll(async () => {
  srv = await startMace(['--max-concurrent', '1', '--max-tokens-limit', '400', '--max-body-bytes', '65536']);
  client = new OpenAI({ baseURL: srv.baseURL, apiKey: 'unused', maxRetries: 0 });
}, T);

afterAll(async () => {
  await srv?.stop();
  removeAdapterDirs();
}, T);

const prompt = 'Once upon a time';
const messages = [{ role: 'user' as const, content: 'Tom had a red ball.' }];

/** A request is running in the engine while the server answers 429 (--max-concurrent 1). */
async function acceptedWithin(ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    const r = await post(`${srv.baseURL}/completions`, { prompt, max_tokens: 1, temperature: 0 });
    if (r.status === 200) return true;
    expect(r.status).toBe(429);
    if (Date.now() > until) return false;
    await new Promise((res) => setTimeout(res, 50));
  }
}

describe('mace serve (Chromium) with the openai client', () => {
  // Each test starts with the engine free: a request a failed test left running must not turn the
  // next tests' requests into 429s.
  beforeEach(async () => {
    expect(await acceptedWithin(20_000)).toBe(true);
  }, T);

  it('binds 127.0.0.1 by default: the URL says so and other interfaces refuse', async () => {
    expect(srv.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const port = new URL(srv.url).port;
    const other = Object.values(networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal);
    if (other) await expect(fetch(`http://${other.address}:${port}/health`)).rejects.toThrow();
    expect((await fetch(`${srv.url}/health`)).status).toBe(200);
  });

  it('GET /v1/models lists the base model', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([STORIES]);
    expect((models.data[0] as unknown as { max_model_len: number }).max_model_len).toBe(512);
  });

  it('completions: non-streaming and streaming give the same greedy text', async () => {
    const whole = await client.completions.create({ model: STORIES, prompt, max_tokens: 6, temperature: 0 });
    expect(whole.object).toBe('text_completion');
    expect(whole.choices[0].text.length).toBeGreaterThan(0);
    expect(whole.usage?.completion_tokens).toBe(6);
    let text = '';
    for await (const c of await client.completions.create({ model: STORIES, prompt, max_tokens: 6, temperature: 0, stream: true })) text += c.choices[0]?.text ?? '';
    expect(text).toBe(whole.choices[0].text);
  }, T);

  it('chat: streamed deltas assemble to the non-streaming message; include_usage adds a last choices: [] chunk', async () => {
    const whole = await client.chat.completions.create({ model: STORIES, messages, max_tokens: 6, temperature: 0 });
    expect(whole.choices[0].message.role).toBe('assistant');
    const stream = await client.chat.completions.create({ model: STORIES, messages, max_tokens: 6, temperature: 0, stream: true, stream_options: { include_usage: true } });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe(whole.choices[0].message.content);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toMatchObject({ prompt_tokens: whole.usage!.prompt_tokens, completion_tokens: 6 });
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
    expect(chunks.at(-2)!.choices[0].finish_reason).toBe('length');
  }, T);

  it('aborting mid-stream cancels the request in the engine; the next request runs', async () => {
    const controller = new AbortController();
    const stream = await client.completions.create({ prompt, max_tokens: 400, temperature: 0, ignore_eos: true, stream: true } as never, { signal: controller.signal });
    let got = 0;
    // The openai client ends the iteration quietly (or with APIUserAbortError, by version) on abort;
    // a chunk already buffered may still arrive after abort(), so the loop stops itself at the second.
    try {
      for await (const _c of stream as unknown as AsyncIterable<unknown>) {
        if (++got < 2) continue;
        controller.abort();
        break;
      }
    } catch (e) {
      expect((e as Error).name).toMatch(/Abort/);
    }
    expect(got).toBe(2);
    // Cancelled, the engine is free at once (400 tokens would take seconds on SwiftShader), and the
    // server's access log has the engine's own finish_reason for it: 'abort', not 'length'.
    expect(await acceptedWithin(3000)).toBe(true);
    expect(srv.stderr()).toMatch(/POST \/v1\/completions stream: finish_reason abort, \d+ tokens, \d+ ms \(client gone: cancelled\)/);
  }, T);

  it('a second concurrent request is refused with 429 (--max-concurrent 1)', async () => {
    const controller = new AbortController();
    const first = await client.completions.create({ prompt, max_tokens: 400, ignore_eos: true, stream: true } as never, { signal: controller.signal });
    const it = (first as unknown as AsyncIterable<unknown>)[Symbol.asyncIterator]();
    await it.next();
    const err = await client.completions.create({ model: STORIES, prompt, max_tokens: 2 }).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect(err.code).toBe('rate_limit_exceeded');
    controller.abort();
    await it.next().catch(() => undefined);
    expect(await acceptedWithin(3000)).toBe(true);
  }, T);

  it('typed errors: unknown and unsupported fields, bad values, unknown model, max_tokens over the limit', async () => {
    const bad = (p: Record<string, unknown>) => client.chat.completions.create({ messages, max_tokens: 2, ...p } as never).catch((e) => e);
    const unknown = await bad({ temprature: 0.5 });
    expect(unknown).toBeInstanceOf(OpenAI.BadRequestError);
    expect(unknown.status).toBe(400);
    expect(unknown.param).toBe('temprature');
    expect(unknown.type).toBe('invalid_request_error');
    const range = await bad({ temperature: 7 });
    expect([range.status, range.param]).toEqual([400, 'temperature']);
    const model = await bad({ model: 'gpt-4o' });
    expect(model).toBeInstanceOf(OpenAI.NotFoundError);
    expect([model.code, model.param]).toEqual(['model_not_found', 'model']);
    const over = await bad({ max_tokens: 401 });
    expect([over.status, over.param]).toEqual([400, 'max_tokens']);
    const signal = await post(`${srv.baseURL}/chat/completions`, { messages, signal: {} });
    expect([signal.status, signal.body.error.param]).toEqual([400, 'signal']);
    const stream = await post(`${srv.baseURL}/completions`, { prompt, stream: 'yes' });
    expect([stream.status, stream.body.error.param]).toEqual([400, 'stream']);
  }, T);

  it('HTTP-level errors: bad JSON 400, non-object 400, too large 413, unknown route 404, wrong method 405', async () => {
    const json = await post(`${srv.baseURL}/completions`, '{"prompt": ');
    expect([json.status, json.body.error.code, json.body.error.type]).toEqual([400, 'invalid_json', 'invalid_request_error']);
    expect((await post(`${srv.baseURL}/completions`, '[1, 2]')).status).toBe(400);
    const big = await post(`${srv.baseURL}/completions`, { prompt: 'x'.repeat(70_000) });
    expect([big.status, big.body.error.code]).toEqual([413, 'request_too_large']);
    expect((await post(`${srv.baseURL}/embeddings`, { input: 'x' })).status).toBe(404);
    expect((await fetch(`${srv.baseURL}/chat/completions`)).status).toBe(405);
    // The server is still well after all of that.
    expect((await client.completions.create({ model: STORIES, prompt, max_tokens: 1 })).choices[0].finish_reason).toBe('length');
  }, T);

  it('LoRA: load by path (mace adapters push), listed as a model, selected by `model`, unloaded (vLLM shapes)', async () => {
    const dir = writeAdapterDir(11);
    const pushed = await runMace(['adapters', 'push', '--adapter', dir, '--server', srv.url, '--name', 'storyteller']);
    expect(pushed.stderr).toContain('lora_path');
    expect([pushed.code, pushed.stdout.trim()]).toEqual([0, "Success: LoRA adapter 'storyteller' added successfully."]);
    const models = await client.models.list();
    expect(models.data.map((m) => [m.id, (m as unknown as { parent: string | null }).parent])).toEqual([[STORIES, null], ['storyteller', STORIES]]);
    const base = await client.completions.create({ model: STORIES, prompt, max_tokens: 8, temperature: 0 });
    const tuned = await client.completions.create({ model: 'storyteller', prompt, max_tokens: 8, temperature: 0 });
    expect(tuned.model).toBe('storyteller');
    expect(tuned.choices[0].text).not.toBe(base.choices[0].text);
    const again = await post(`${srv.baseURL}/load_lora_adapter`, { lora_name: 'storyteller', lora_path: dir });
    expect([again.status, again.body.error.param]).toEqual([400, 'lora_name']);
    const missing = await post(`${srv.baseURL}/load_lora_adapter`, { lora_name: 'nothing', lora_path: '/nonexistent/adapter' });
    expect([missing.status, missing.body.error.param]).toEqual([404, 'lora_path']);
    const extra = await post(`${srv.baseURL}/load_lora_adapter`, { lora_name: 'x', lora_path: dir, lora_int_id: 3 });
    expect([extra.status, extra.body.error.param]).toEqual([400, 'lora_int_id']);
    // Unloading an adapter a stream is using fails that stream with the engine's error, sent as an SSE event.
    const running = await client.completions.create({ model: 'storyteller', prompt, max_tokens: 400, ignore_eos: true, stream: true } as never);
    const chunks = (running as unknown as AsyncIterable<unknown>)[Symbol.asyncIterator]();
    await chunks.next();
    const un = await post(`${srv.baseURL}/unload_lora_adapter`, { lora_name: 'storyteller' });
    expect([un.status, un.text]).toEqual([200, "Success: LoRA adapter 'storyteller' removed successfully."]);
    const midStream = await (async () => {
      for (;;) if ((await chunks.next()).done) return null;
    })().catch((e) => e);
    expect(midStream).toBeInstanceOf(OpenAI.APIError);
    expect(midStream.error.mace.name).toBe('AdapterUnloadedError');
    expect((await post(`${srv.baseURL}/unload_lora_adapter`, { lora_name: 'storyteller' })).status).toBe(404);
    const gone = await client.completions.create({ model: 'storyteller', prompt, max_tokens: 2 }).catch((e) => e);
    expect(gone).toBeInstanceOf(OpenAI.NotFoundError);
  }, T);

  it('LoRA upload (mace extension, adapters push --upload) serves the same weights as the path form', async () => {
    const dir = writeAdapterDir(11);
    const pushed = await runMace(['adapters', 'push', '--adapter', dir, '--server', `${srv.url}/v1`, '--name', 'uploaded', '--upload']);
    expect(pushed.code).toBe(0);
    const a = await client.completions.create({ model: 'uploaded', prompt, max_tokens: 8, temperature: 0 });
    const base = await client.completions.create({ model: STORIES, prompt, max_tokens: 8, temperature: 0 });
    expect(a.choices[0].text).not.toBe(base.choices[0].text);
    const badFile = await post(`${srv.baseURL}/load_lora_adapter`, { lora_name: 'broken', lora_files: { 'adapter_config.json': '{"r": 4}', 'adapter_model.safetensors': 'AAAA' } });
    expect(badFile.status).toBe(400);
    expect(badFile.body.error.mace.code).toMatch(/^bad-/);
    expect((await post(`${srv.baseURL}/unload_lora_adapter`, { lora_name: 'uploaded' })).status).toBe(200);
    const refused = await runMace(['adapters', 'push', '--adapter', '/nonexistent', '--server', srv.url, '--name', 'n']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('AdapterPushError (adapter-files)');
  }, T);

  it('the remote client: same API and text as the local engines, typed errors, abort ends with finish_reason abort', async () => {
    const remote = createRemoteEngine({ baseURL: srv.baseURL });
    expect((await remote.models()).map((m) => m.id)).toEqual([STORIES]);
    const whole = await remote.chat.completions.create({ messages, max_tokens: 6, temperature: 0 });
    let text = '';
    let usage = null;
    for await (const c of await remote.chat.completions.create({ messages, max_tokens: 6, temperature: 0, stream: true })) {
      text += c.choices[0].delta.content ?? '';
      if (c.usage) usage = c.usage;
    }
    expect(text).toBe(whole.choices[0].message.content);
    expect(usage).toMatchObject({ completion_tokens: 6 });
    const err = await remote.completions.create({ prompt, max_tokens: 2, temperature: 9 }).catch((e) => e);
    expect(err).toBeInstanceOf(MaceRemoteError);
    expect([err.name, err.code, err.param, err.status]).toEqual(['InvalidRequestError', 'invalid-request', 'temperature', 400]);
    const controller = new AbortController();
    const reasons: (string | null)[] = [];
    for await (const c of await remote.completions.create({ prompt, max_tokens: 400, ignore_eos: true, stream: true, signal: controller.signal })) {
      reasons.push(c.choices[0].finish_reason);
      if (reasons.length === 2) controller.abort();
    }
    expect(reasons.at(-1)).toBe('abort');
    expect(await acceptedWithin(3000)).toBe(true);
    const down = await createRemoteEngine({ baseURL: 'http://127.0.0.1:9/v1' }).models().catch((e) => e);
    expect([down.name, down.code]).toEqual(['RemoteUnreachableError', 'remote-unreachable']);
  }, T);
});
