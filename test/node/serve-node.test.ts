/**
 * `mace serve --node` (the engine in the server's process, through Dawn) on stories260K, with
 * --api-key: the same OpenAI surface as the Chromium runtime (serve-openai.test.ts covers the
 * rest), the Bearer check, --lora-modules, and an adapter pushed with the key.
 */
import { connect } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRemoteEngine } from '../../src/engine/remote-client.ts';
import { post, removeAdapterDirs, runMace, startMace, STORIES, writeAdapterDir, type MaceServer } from './serve-helpers.ts';

const T = 120_000;
const KEY = 'test-key-1234';
let srv: MaceServer;
let client: OpenAI;

beforeAll(async () => {
  srv = await startMace(['--node', '--max-concurrent', '2', '--api-key', KEY, '--max-tokens-limit', '64', '--lora-modules', `pre=${writeAdapterDir(21, 2)}`]);
  client = new OpenAI({ baseURL: srv.baseURL, apiKey: KEY, maxRetries: 0 });
}, T);

afterAll(async () => {
  await srv?.stop();
  removeAdapterDirs();
}, T);

const messages = [{ role: 'user' as const, content: 'Lily saw a cat.' }];

describe('mace serve --node (Dawn) with --api-key', () => {
  it('refuses a missing or wrong key with 401 on /v1 routes; /health needs none', async () => {
    const wrong = await new OpenAI({ baseURL: srv.baseURL, apiKey: 'nope', maxRetries: 0 }).models.list().catch((e) => e);
    expect(wrong).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(wrong.code).toBe('invalid_api_key');
    expect((await post(`${srv.baseURL}/completions`, { prompt: 'x' })).status).toBe(401);
    expect((await fetch(`${srv.url}/health`)).status).toBe(200);
    // --lora-modules loaded its adapter before the server listened.
    expect((await client.models.list()).data.map((m) => m.id)).toEqual([STORIES, 'pre']);
  });

  it('streams the same greedy text as the non-streaming answer; the default max_tokens is the limit', async () => {
    const whole = await client.chat.completions.create({ model: STORIES, messages, max_tokens: 5, temperature: 0 });
    let text = '';
    for await (const c of await client.chat.completions.create({ model: STORIES, messages, max_tokens: 5, temperature: 0, stream: true })) text += c.choices[0]?.delta?.content ?? '';
    expect(text).toBe(whole.choices[0].message.content);
    const unbounded = await client.completions.create({ model: STORIES, prompt: 'One day', temperature: 0, ignore_eos: true } as never);
    expect(unbounded.usage?.completion_tokens).toBe(64);
  }, T);

  it('clients that vanish mid-body free their slot (--max-concurrent 2, three of them, then a request runs)', async () => {
    const { hostname, port } = new URL(srv.url);
    for (let i = 0; i < 3; i++) {
      await new Promise<void>((resolve) => {
        const s = connect(Number(port), hostname, () => {
          s.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"prompt":`);
          setTimeout(() => (s.destroy(), resolve()), 200);
        });
      });
    }
    await new Promise((r) => setTimeout(r, 200));
    expect((await client.completions.create({ model: STORIES, prompt: 'One day', max_tokens: 2 })).usage?.completion_tokens).toBe(2);
  }, T);

  it('a prompt longer than the context is a 400 context_length_exceeded naming the prompt field, streaming or not', async () => {
    for (const stream of [false, true]) {
      const e = await client.completions.create({ model: STORIES, prompt: 'x '.repeat(3000), stream } as never).catch((err) => err);
      expect(e).toBeInstanceOf(OpenAI.BadRequestError);
      expect([e.code, e.param, e.error.mace.name]).toEqual(['context_length_exceeded', 'prompt', 'PromptTooLongError']);
    }
    const chat = await client.chat.completions.create({ model: STORIES, messages: [{ role: 'user', content: 'x '.repeat(3000) }] }).catch((err) => err);
    expect([chat.status, chat.param]).toEqual([400, 'messages']);
  }, T);

  it('a pushed adapter (with the key) changes the greedy text; the remote client sends the key too', async () => {
    const dir = writeAdapterDir(5);
    const pushed = await runMace(['adapters', 'push', '--adapter', dir, '--server', srv.url, '--name', 'lily', '--api-key', KEY]);
    expect([pushed.code, pushed.stdout.trim()]).toEqual([0, "Success: LoRA adapter 'lily' added successfully."]);
    const remote = createRemoteEngine({ baseURL: srv.baseURL, apiKey: KEY, model: 'lily' });
    expect((await remote.models()).map((m) => m.id)).toEqual([STORIES, 'pre', 'lily']);
    const tuned = await remote.completions.create({ prompt: 'One day', max_tokens: 8, temperature: 0 });
    const base = await remote.completions.create({ model: STORIES, prompt: 'One day', max_tokens: 8, temperature: 0 });
    expect(tuned.model).toBe('lily');
    expect(tuned.choices[0].text).not.toBe(base.choices[0].text);
    const noKey = await createRemoteEngine({ baseURL: srv.baseURL }).models().catch((e) => e);
    expect([noKey.status, noKey.openaiCode]).toEqual([401, 'invalid_api_key']);
    const refused = await runMace(['adapters', 'push', '--adapter', dir, '--server', srv.url, '--name', 'lily2']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('answered 401');
  }, T);
});
