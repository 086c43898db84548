/**
 * `<mace-chat>` in a real Chromium, driven through its DOM (shadow root) with a scripted engine:
 * the element's input is an engine, so the test gives it one whose answers, timing and failures it
 * controls. Ratings go through a real FeedbackLog (src/learn/feedback.ts), so "a pair formed" is
 * the learning code's own answer. Conversations persist in the real IndexedDB.
 *
 * Covered: load progress bar; Enter / Shift+Enter; streaming with aria-busy; events; user and
 * model HTML shown as text; links rel=noopener; stop; thumbs with aria-pressed; thumbs-down →
 * Regenerate (same context) → thumbs-up forms a pair; paging answers; the learnt badge and the
 * learnt adapter on new requests (and the adapter attribute overriding it); restore after a
 * "reload"; clear; no WebGPU; load failure with retry; device loss with reload.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MaceRemoteError } from '../../src/engine/errors-wire.ts';
import type { ChatCompletionChunk, ChatCompletionCreateParams } from '../../src/engine/types.ts';
import type { LoadRequest, ModelInfo, ProgressSink } from '../../src/engine/worker-api.ts';
import { FeedbackLog } from '../../src/learn/feedback.ts';
import type { LearningStatus, StatsBatch } from '../../src/scheduler/stats.ts';
import { defineMaceChat, type ChatEngine, type MaceChatElement, type MaceFeedbackDetail, type MaceMessageDetail } from '../../src/ui/chat/index.ts';
import { renderMarkdown } from '../../src/ui/markdown.ts';

defineMaceChat();

const MODEL_INFO: ModelInfo = {
  modelName: 'scripted',
  source: 'test',
  format: 'f32',
  architecture: 'LlamaForCausalLM',
  vocabSize: 512,
  nLayers: 1,
  hiddenSize: 8,
  maxContext: 256,
  hasChatTemplate: true,
  gpu: 'test',
  loadMs: 1,
};

/** A request the engine received, with the handle to answer it. */
interface Pending {
  params: ChatCompletionCreateParams;
  id: string;
  push(text: string): void;
  end(reason?: 'stop' | 'length'): void;
  fail(e: Error): void;
}

/** A deferred promise. */
function deferred<T>(): { promise: Promise<T>; resolve(v: T): void; reject(e: unknown): void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((a, b) => ((resolve = a), (reject = b)));
  return { promise, resolve, reject };
}

/** The scripted engine: the test decides when loads finish and what each request streams. */
class ScriptedEngine implements ChatEngine {
  readonly loads: LoadRequest[] = [];
  readonly requests: Pending[] = [];
  readonly log = new FeedbackLog();
  learningStatus: LearningStatus | null = null;
  /** Set to make the next load wait (the test resolves it) or fail. */
  nextLoad: ReturnType<typeof deferred<ModelInfo>> | null = null;
  progressSink: ProgressSink | undefined;
  private lost = new Set<(e: MaceRemoteError) => void>();
  private stats = new Set<(b: StatsBatch) => void>();
  private serial = 0;
  terminated = false;

  async load(request: LoadRequest, onProgress?: ProgressSink): Promise<ModelInfo> {
    this.loads.push(request);
    this.progressSink = onProgress;
    const gate = this.nextLoad;
    this.nextLoad = null;
    return gate ? gate.promise : { ...MODEL_INFO };
  }

  readonly chat = {
    completions: {
      create: async (params: ChatCompletionCreateParams & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>> => {
        const id = `chatcmpl-${++this.serial}`;
        const queue: (ChatCompletionChunk | Error | null)[] = [];
        let wake: (() => void) | null = null;
        const put = (item: ChatCompletionChunk | Error | null) => {
          queue.push(item);
          wake?.();
        };
        const chunk = (content: string | undefined, finish: 'stop' | 'length' | 'abort' | null): ChatCompletionChunk => ({
          id,
          object: 'chat.completion.chunk',
          created: 0,
          model: 'scripted',
          choices: [{ index: 0, delta: content === undefined ? {} : { content }, finish_reason: finish, logprobs: null }],
          usage: null,
        });
        let answer = '';
        const log = this.log;
        const record = () => log.recordCompletion({ completionId: id, messages: params.messages, answer });
        params.signal?.addEventListener('abort', () => put(chunk(undefined, 'abort')));
        this.requests.push({
          params,
          id,
          push: (text) => ((answer += text), put(chunk(text, null))),
          end: (reason = 'stop') => put(chunk(undefined, reason)),
          fail: (e) => put(e),
        });
        return {
          async *[Symbol.asyncIterator]() {
            for (;;) {
              while (queue.length === 0) await new Promise<void>((r) => (wake = r));
              const item = queue.shift()!;
              if (item instanceof Error) throw item;
              if (item === null) return;
              yield item;
              if (item.choices[0].finish_reason) {
                record();
                return;
              }
            }
          },
        };
      },
    },
  };

  async feedback(f: { completionId: string; rating: 'up' | 'down' }) {
    return this.log.rate(f.completionId, f.rating);
  }

  onDeviceLost(listener: (e: MaceRemoteError) => void): () => void {
    this.lost.add(listener);
    return () => this.lost.delete(listener);
  }

  onStats(listener: (b: StatsBatch) => void): () => void {
    this.stats.add(listener);
    return () => this.stats.delete(listener);
  }

  readonly learning = { status: async () => this.learningStatus };

  terminate(): void {
    this.terminated = true;
  }

  loseDevice(): void {
    const e = new MaceRemoteError({ name: 'DeviceLostError', code: 'device-lost', message: 'GPU device lost (destroyed)', fields: {} });
    for (const l of this.lost) l(e);
  }

  finetune(version: number): void {
    const batch: StatsBatch = {
      timeOrigin: performance.timeOrigin,
      records: [
        {
          type: 'finetune',
          t: performance.now(),
          adapter: 'feedback',
          adapterVersion: version,
          step: version,
          loss: 0.6,
          'rewards/chosen': 0.1,
          'rewards/rejected': -0.1,
          'rewards/margins': 0.2,
          'rewards/accuracies': 1,
          grad_norm: 0.5,
          learning_rate: 1e-4,
          skipped: false,
          durationMs: 10,
          tokens: 32,
        },
      ],
    };
    for (const l of this.stats) l(batch);
  }
}

/** What engine.learning.status() reports once the adapter 'feedback' reached `version`. */
function learning(version: number): LearningStatus {
  return { enabled: true, policy: 'mace', adapter: 'feedback', version, steps: version, pairs: version, pendingPairs: 0, failedSteps: 0, last: null };
}

let serial = 0;
const mounted: HTMLElement[] = [];

/** A widget with a fresh id (its own stored conversation) on a scripted engine. */
function mount(engine: ScriptedEngine, attrs: Record<string, string> = {}, id = `w${Date.now()}-${++serial}`): MaceChatElement {
  const el = document.createElement('mace-chat');
  el.id = id;
  for (const [k, v] of Object.entries({ model: '/models/scripted/', ...attrs })) el.setAttribute(k, v);
  el.engine = engine;
  document.body.append(el);
  mounted.push(el);
  return el;
}

afterEach(() => {
  for (const el of mounted.splice(0)) el.remove();
});

const shadow = (el: MaceChatElement) => el.shadowRoot!;
const $ = <T extends Element = HTMLElement>(el: MaceChatElement, sel: string) => shadow(el).querySelector<T>(sel)!;
const $$ = (el: MaceChatElement, sel: string) => [...shadow(el).querySelectorAll<HTMLElement>(sel)];
const input = (el: MaceChatElement) => $<HTMLTextAreaElement>(el, 'textarea');
/** Buttons by accessible name (aria-label, else text). */
const buttons = (el: MaceChatElement, name: string) =>
  $$(el, 'button').filter((b) => !b.hidden && (b.getAttribute('aria-label') ?? b.textContent?.trim()) === name) as HTMLButtonElement[];
const assistantBubbles = (el: MaceChatElement) => $$(el, '.msg.assistant .bubble');

async function ready(el: MaceChatElement): Promise<void> {
  await expect.poll(() => el.state).toBe('ready');
}

function typeAndEnter(el: MaceChatElement, text: string, shift = false): void {
  const t = input(el);
  t.value = text;
  t.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', shiftKey: shift, bubbles: true, cancelable: true }));
}

/** Send a message and wait until the engine has the request. */
async function ask(el: MaceChatElement, engine: ScriptedEngine, text: string): Promise<Pending> {
  const before = engine.requests.length;
  typeAndEnter(el, text);
  await expect.poll(() => engine.requests.length).toBe(before + 1);
  return engine.requests[before];
}

async function answered(el: MaceChatElement, req: Pending, text: string): Promise<void> {
  req.push(text);
  req.end();
  await expect.poll(() => $(el, '.msg.assistant')?.getAttribute('aria-busy')).toBe('false');
}

describe('<mace-chat> loading', () => {
  it('shows a progress bar while the model loads, then enables the input', async () => {
    const engine = new ScriptedEngine();
    engine.nextLoad = deferred<ModelInfo>();
    const gate = engine.nextLoad;
    const el = mount(engine, { format: 'q4' });
    await expect.poll(() => el.state).toBe('loading');
    expect(engine.loads[0]).toMatchObject({ source: { kind: 'url', base: '/models/scripted/' }, format: 'q4' });
    const bar = $<HTMLProgressElement>(el, 'progress');
    expect(bar.getAttribute('aria-label')).toBe('Loading model');
    expect($(el, '.status').hidden).toBe(false);
    expect(input(el).disabled).toBe(true);
    engine.progressSink!({ phase: 'weights', loaded: 512 * 1024, total: 2 * 2 ** 20, file: 'model.safetensors' });
    expect(bar.value).toBeCloseTo(0.25);
    expect($(el, '.status .line').textContent).toBe('Uploading weights from model.safetensors (512 KiB of 2.0 MiB)');
    gate.resolve({ ...MODEL_INFO });
    await ready(el);
    expect($(el, '.status').hidden).toBe(true);
    expect(input(el).disabled).toBe(false);
    expect($(el, '.title').textContent).toBe('scripted');
  });

  it('a Hub repo id loads from the Hub', async () => {
    const engine = new ScriptedEngine();
    const el = mount(engine, { model: 'HuggingFaceTB/SmolLM2-135M-Instruct@main' });
    await ready(el);
    expect(engine.loads[0].source).toEqual({ kind: 'hub', repo: 'HuggingFaceTB/SmolLM2-135M-Instruct', revision: 'main' });
  });

  it('a profile loads with its own feedback store (its adapter and ratings apart from others); a bad one is refused by name', async () => {
    const engine = new ScriptedEngine();
    const el = mount(engine, { profile: 'alice' });
    await ready(el);
    expect(engine.loads[0].feedbackStore).toBe('mace-web:alice');
    const plain = new ScriptedEngine();
    await ready(mount(plain));
    expect(plain.loads[0].feedbackStore).toBeUndefined(); // the site's default store
    const bad = new ScriptedEngine();
    const el2 = mount(bad, { profile: 'no spaces please' });
    await expect.poll(() => el2.state).toBe('load-failed');
    expect($(el2, '.notice').textContent).toContain('profile="no spaces please"');
    expect(bad.loads).toHaveLength(0);
  });

  it('a bad model attribute is a load failure naming the attribute', async () => {
    const engine = new ScriptedEngine();
    const el = mount(engine, { model: 'not a model' });
    await expect.poll(() => el.state).toBe('load-failed');
    expect($(el, '.notice').textContent).toContain('model="not a model"');
    expect(engine.loads).toHaveLength(0);
  });

  it('load failure: a friendly message and Try again, which loads again', async () => {
    const engine = new ScriptedEngine();
    engine.nextLoad = deferred<ModelInfo>();
    engine.nextLoad.reject(new MaceRemoteError({ name: 'ModelFileError', code: 'model-file', message: 'HTTP 404', fields: { file: 'config.json', status: 404 } }));
    const el = mount(engine);
    await expect.poll(() => el.state).toBe('load-failed');
    expect($(el, '.notice').getAttribute('role')).toBe('alert');
    expect($(el, '.notice').textContent).toContain('Could not fetch config.json');
    buttons(el, 'Try again')[0].click();
    await ready(el);
    expect(engine.loads).toHaveLength(2);
    expect($(el, '.notice').hidden).toBe(true);
  });

  it('without WebGPU: a friendly message, no engine, no crash', async () => {
    Object.defineProperty(navigator, 'gpu', { value: undefined, configurable: true });
    try {
      const el = document.createElement('mace-chat');
      el.setAttribute('model', '/models/scripted/');
      document.body.append(el);
      mounted.push(el);
      expect(el.state).toBe('no-webgpu');
      expect(el.engine).toBeNull();
      expect($(el, '.notice').textContent).toContain('does not offer WebGPU');
      expect(input(el).disabled).toBe(true);
    } finally {
      delete (navigator as { gpu?: unknown }).gpu;
    }
    expect(navigator.gpu).toBeTruthy();
  });

  it('device lost: a message and Reload model, which loads again', async () => {
    const engine = new ScriptedEngine();
    const el = mount(engine);
    await ready(el);
    engine.loseDevice();
    expect(el.state).toBe('device-lost');
    expect($(el, '.notice').textContent).toContain('GPU stopped responding');
    expect(input(el).disabled).toBe(true);
    buttons(el, 'Reload model')[0].click();
    await ready(el);
    expect(engine.loads).toHaveLength(2);
  });
});

describe('<mace-chat> chatting', () => {
  it('Enter sends, Shift+Enter does not; the answer streams with aria-busy; events carry role, content and completion id', async () => {
    const engine = new ScriptedEngine();
    const el = mount(engine, { 'system-prompt': 'You are terse.', 'max-tokens': '40', temperature: '0' });
    await ready(el);
    const events: MaceMessageDetail[] = [];
    el.addEventListener('mace-message', (e) => events.push(e.detail));
    typeAndEnter(el, 'line one', true);
    expect(engine.requests).toHaveLength(0);
    const req = await ask(el, engine, 'Hello');
    expect(req.params).toMatchObject({
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'Hello' },
      ],
      stream: true,
      max_tokens: 40,
      temperature: 0,
    });
    expect(req.params.adapter).toBeUndefined();
    expect(input(el).value).toBe('');
    expect($(el, '[role=log]').getAttribute('aria-live')).toBe('polite');
    expect(buttons(el, 'Stop')).toHaveLength(1);
    req.push('Hi ');
    req.push('there.');
    await expect.poll(() => assistantBubbles(el)[0]?.textContent).toBe('Hi there.');
    expect($(el, '.msg.assistant').getAttribute('aria-busy')).toBe('true');
    req.end();
    await expect.poll(() => $(el, '.msg.assistant').getAttribute('aria-busy')).toBe('false');
    expect(buttons(el, 'Stop')).toHaveLength(0);
    await expect.poll(() => events.length).toBe(2);
    expect(events).toEqual([
      { role: 'user', content: 'Hello', completionId: null },
      { role: 'assistant', content: 'Hi there.', completionId: req.id },
    ]);
    // The second turn sends the conversation so far.
    const req2 = await ask(el, engine, 'More?');
    expect(req2.params.messages.map((m) => m.content)).toEqual(['You are terse.', 'Hello', 'Hi there.', 'More?']);
    await answered(el, req2, 'No.');
  });

  it('user input and model output with HTML are shown as text and never run', async () => {
    const engine = new ScriptedEngine();
    const el = mount(engine);
    await ready(el);
    const w = window as unknown as { __pwned?: number };
    const payload = '<img src=x onerror="window.__pwned = 1"><script>window.__pwned = 2</script>';
    const req = await ask(el, engine, payload);
    expect($(el, '.msg.user .bubble').textContent).toBe(payload);
    await answered(el, req, 'Sure: <img src=x onerror="window.__pwned = 3"> and [x](javascript:window.__pwned=4) and [docs](https://example.com)');
    const bubble = assistantBubbles(el)[0];
    expect(shadow(el).querySelectorAll('img, script, iframe')).toHaveLength(0);
    expect(bubble.textContent).toContain('<img src=x onerror="window.__pwned = 3">');
    const links = [...bubble.querySelectorAll('a')];
    expect(links.map((a) => [a.getAttribute('href'), a.rel, a.target])).toEqual([['https://example.com/', 'noopener noreferrer nofollow', '_blank']]);
    await new Promise((r) => setTimeout(r, 50)); // an onerror would have fired by now
    expect(w.__pwned).toBeUndefined();
  });

  it('completion mode (no chat template) sends only the text to continue and shows the continuation', async () => {
    const engine = new ScriptedEngine();
    engine.nextLoad = deferred<ModelInfo>();
    engine.nextLoad.resolve({ ...MODEL_INFO, hasChatTemplate: false, modelName: 'stories' });
    const el = mount(engine);
    await ready(el);
    expect(input(el).placeholder).toContain('story');
    const req = await ask(el, engine, 'Once upon a time');
    await answered(el, req, ' there was a cat.');
    const req2 = await ask(el, engine, 'The end');
    expect(req2.params.messages).toEqual([{ role: 'user', content: 'The end' }]);
    await answered(el, req2, '.');
    expect(assistantBubbles(el)[0].textContent).toBe('… there was a cat.');
  });

  it('a reader at the bottom follows the stream; one who scrolled up stays put', async () => {
    const engine = new ScriptedEngine();
    const el = mount(engine);
    el.style.height = '18rem';
    await ready(el);
    const log = $(el, '.log');
    const gapBelow = () => log.scrollHeight - log.scrollTop - log.clientHeight;
    const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    const req = await ask(el, engine, 'A long story, please');
    for (let i = 0; i < 40; i++) {
      req.push(`Line ${i} of the story goes on.\n`);
      await frame();
    }
    expect(log.scrollHeight).toBeGreaterThan(log.clientHeight * 2);
    expect(gapBelow()).toBeLessThan(4);
    log.scrollTop = 0;
    await frame();
    for (let i = 0; i < 10; i++) {
      req.push(`More ${i}.\n`);
      await frame();
    }
    expect(log.scrollTop).toBe(0);
    req.end();
  });

  it('Stop aborts the stream; the answer is kept and marked stopped', async () => {
    const engine = new ScriptedEngine();
    const el = mount(engine);
    await ready(el);
    const req = await ask(el, engine, 'Tell me everything');
    req.push('Well');
    buttons(el, 'Stop')[0].click();
    expect(req.params.signal?.aborted).toBe(true);
    await expect.poll(() => $(el, '.msg.assistant .meta')?.textContent).toBe('stopped');
    expect(assistantBubbles(el)[0].textContent).toBe('Well');
    expect(input(el).disabled).toBe(false);
  });

  it('Clear while an answer streams stops it and leaves the composer ready', async () => {
    const engine = new ScriptedEngine();
    const el = mount(engine);
    await ready(el);
    const req = await ask(el, engine, 'Go on and on');
    req.push('and on');
    buttons(el, 'Clear conversation')[0].click();
    expect(req.params.signal?.aborted).toBe(true);
    await expect.poll(() => buttons(el, 'Stop').length).toBe(0);
    expect($$(el, '.msg')).toHaveLength(0);
    expect($<HTMLButtonElement>(el, 'button.send').disabled).toBe(false);
  });

  it('a request that fails before any text removes the answer and says why', async () => {
    const engine = new ScriptedEngine();
    const el = mount(engine);
    await ready(el);
    const req = await ask(el, engine, 'x');
    req.fail(new MaceRemoteError({ name: 'PromptTooLongError', code: 'prompt-too-long', message: 'too long', fields: { promptTokens: 300, maxContext: 256 } }));
    await expect.poll(() => $(el, '.notice').hidden).toBe(false);
    expect($(el, '.notice').textContent).toContain('300 tokens');
    expect(assistantBubbles(el)).toHaveLength(0);
  });
});

describe('<mace-chat> feedback and learning', () => {
  it('thumbs: names, aria-pressed, engine feedback, events; thumbs-down → Regenerate → thumbs-up forms a pair', async () => {
    const engine = new ScriptedEngine();
    const el = mount(engine);
    await ready(el);
    const feedback: MaceFeedbackDetail[] = [];
    el.addEventListener('mace-feedback', (e) => feedback.push(e.detail));
    const first = await ask(el, engine, 'Tell me a story.');
    await answered(el, first, 'The dog ran away.');
    const good = buttons(el, 'Good response')[0];
    const bad = buttons(el, 'Bad response')[0];
    expect([good.getAttribute('aria-pressed'), bad.getAttribute('aria-pressed')]).toEqual(['false', 'false']);
    expect(buttons(el, 'Regenerate')).toHaveLength(1);

    bad.click();
    await expect.poll(() => feedback.length).toBe(1);
    expect(feedback[0]).toEqual({ completionId: first.id, rating: 'down', pairFormed: false });
    expect(engine.log.rating(first.id)?.rating).toBe('down');
    expect(buttons(el, 'Bad response')[0].getAttribute('aria-pressed')).toBe('true');
    expect($(el, '.offer').textContent).toContain('Not helpful?');

    buttons(el, 'Regenerate')[0].click();
    await expect.poll(() => engine.requests.length).toBe(2);
    const second = engine.requests[1];
    expect(second.params.messages).toEqual(first.params.messages);
    await answered(el, second, 'The cat came home.');
    expect($(el, '.pager').textContent).toContain('2 / 2');
    buttons(el, 'Good response')[0].click();
    await expect.poll(() => feedback.length).toBe(2);
    expect(feedback[1]).toEqual({ completionId: second.id, rating: 'up', pairFormed: true });
    expect(engine.log.pairs()).toHaveLength(1);
    expect(engine.log.pairs()[0]).toMatchObject({ chosen: 'The cat came home.', rejected: 'The dog ran away.' });

    // Paging back shows the first answer with its rating.
    buttons(el, 'Previous answer')[0].click();
    expect(assistantBubbles(el)[0].textContent).toBe('The dog ran away.');
    expect(buttons(el, 'Bad response')[0].getAttribute('aria-pressed')).toBe('true');
    expect($(el, '.pager').textContent).toContain('1 / 2');
  });

  it('shows "learnt · vN" from finetune stats and answers with the learnt adapter; adapter="none" overrides', async () => {
    const engine = new ScriptedEngine();
    engine.learningStatus = learning(0);
    const el = mount(engine);
    await ready(el);
    const badge = $(el, '.learnt');
    expect(badge.hidden).toBe(true);
    engine.finetune(1);
    expect(badge.hidden).toBe(false);
    expect(badge.textContent).toBe('learnt · v1');
    expect(el.learntVersion).toBe(1);
    const req = await ask(el, engine, 'Hi');
    expect(req.params.adapter).toBe('feedback');
    await answered(el, req, 'Hello.');
    engine.finetune(3);
    expect(badge.textContent).toBe('learnt · v3');
    el.setAttribute('adapter', 'none');
    const req2 = await ask(el, engine, 'Again');
    expect(req2.params.adapter).toBeUndefined();
    await answered(el, req2, 'Hello again.');
  });

  it("the adapter menu lists the saved versions, serves an older one (the badge follows), downloads PEFT files, imports picked files and resets", async () => {
    const engine = new ScriptedEngine();
    const files = { weights: new Uint8Array([1, 2, 3, 4]), config: '{"peft_type":"LORA","r":4}' };
    const calls: string[] = [];
    const info = (version: number, learnt: number) => ({ version, savedAt: 1_700_000_000_000 + version, meta: { label: 'learnt', metrics: { version: learnt, steps: learnt } }, bytes: 4, latest: version === 2 });
    let serving = 2;
    const status = () => learning(serving === 1 ? 3 : serving === 2 ? 5 : 0);
    Object.assign(engine, {
      adapter: {
        export: async () => (calls.push('export'), files),
        versions: async () => ({ versions: [info(2, 5), info(1, 3)], serving, learning: status() }),
        serve: async (v: number) => {
          calls.push(`serve ${v}`);
          serving = v;
          return status();
        },
        reset: async () => (calls.push('reset'), (serving = 0), status()),
        import: async (f: { weights: Uint8Array; config: string }) => (calls.push(`import ${f.weights.length} ${f.config}`), { learning: status(), saved: null }),
      },
    });
    engine.learningStatus = learning(0);
    const el = mount(engine);
    await ready(el);
    const root = el.shadowRoot!;
    const toggle = root.querySelector<HTMLButtonElement>('button.adapter-toggle')!;
    const panel = root.querySelector<HTMLElement>('.adapter-menu')!;
    expect(toggle.hidden).toBe(false); // offered once ready, before anything is learnt (import works then)
    expect(toggle.getAttribute('aria-label')).toBe('Learnt adapter: versions, download, import');
    expect(panel.hidden).toBe(true);
    toggle.click();
    await expect.poll(() => panel.querySelectorAll('.versions li').length).toBe(2);
    expect(toggle.getAttribute('aria-expanded')).toBe('true');
    expect(panel.querySelector('.menu-line')!.textContent).toBe('Serving v5');
    expect([...panel.querySelectorAll('.versions .version')].map((n) => n.textContent)).toEqual(['v5', 'v3']);
    const serveV3 = panel.querySelector<HTMLButtonElement>('button[aria-label="Serve v3"]')!;
    expect(panel.querySelector<HTMLButtonElement>('button[aria-label="Serve v5"]')!.disabled).toBe(true); // serving
    // Roll back to v3: the engine serves store version 1, the badge shows v3.
    serveV3.click();
    await expect.poll(() => calls.includes('serve 1')).toBe(true);
    await expect.poll(() => $(el, '.learnt').textContent).toBe('learnt · v3');
    await expect.poll(() => panel.querySelector('.menu-line')!.textContent).toBe('Serving v3');

    // Download: the serving adapter's two PEFT files, named by its version.
    const saved: { name: string; blob: Blob }[] = [];
    const realCreate = URL.createObjectURL;
    const realClick = HTMLAnchorElement.prototype.click;
    const blobs = new Map<string, Blob>();
    URL.createObjectURL = (b: Blob | MediaSource) => {
      const url = realCreate.call(URL, b);
      blobs.set(url, b as Blob);
      return url;
    };
    HTMLAnchorElement.prototype.click = function (this: HTMLAnchorElement) {
      saved.push({ name: this.download, blob: blobs.get(this.href)! });
    };
    try {
      panel.querySelector<HTMLButtonElement>('button[data-action="download"]')!.click();
      await expect.poll(() => saved.length).toBe(2);
    } finally {
      URL.createObjectURL = realCreate;
      HTMLAnchorElement.prototype.click = realClick;
    }
    expect(saved.map((f) => f.name)).toEqual(['learnt-v3-adapter_model.safetensors', 'learnt-v3-adapter_config.json']);
    expect(new Uint8Array(await saved[0].blob.arrayBuffer())).toEqual(files.weights);
    expect(await saved[1].blob.text()).toBe(files.config);

    // Import: the two picked files go to the engine as PEFT files.
    const picker = panel.querySelector<HTMLInputElement>('input[type=file]')!;
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array([9, 8, 7])], 'adapter_model.safetensors'));
    dt.items.add(new File(['{"r":4}'], 'adapter_config.json'));
    picker.files = dt.files;
    picker.dispatchEvent(new Event('change'));
    await expect.poll(() => calls.at(-1)).toBe('import 3 {"r":4}');
    // One file only: refused in the panel, nothing sent.
    const one = new DataTransfer();
    one.items.add(new File(['{}'], 'adapter_config.json'));
    picker.files = one.files;
    picker.dispatchEvent(new Event('change'));
    await expect.poll(() => panel.querySelector('[role=alert]')?.textContent ?? '').toContain('pick two files');
    expect(calls.filter((c) => c.startsWith('import'))).toHaveLength(1);

    // Reset goes back to the base model.
    panel.querySelector<HTMLButtonElement>('button[data-action="reset"]')!.click();
    await expect.poll(() => panel.querySelector('.menu-line')!.textContent).toBe('Serving the base model (nothing learnt yet)');
    expect(calls).toContain('reset');
    expect($(el, '.learnt').hidden).toBe(true);
    // Escape closes the panel.
    panel.dispatchEvent(new KeyboardEvent('keydown', { key: 'Escape', bubbles: true }));
    expect(panel.hidden).toBe(true);
    expect(toggle.getAttribute('aria-expanded')).toBe('false');
  });

  it('the adapter menu shows a failed switch in the panel and keeps serving what it served', async () => {
    const engine = new ScriptedEngine();
    Object.assign(engine, {
      adapter: {
        export: async () => ({ weights: new Uint8Array([1]), config: '{}' }),
        versions: async () => ({ versions: [{ version: 4, savedAt: 1, meta: {}, bytes: 1, latest: true }, { version: 3, savedAt: 1, meta: {}, bytes: 1, latest: false }], serving: 4, learning: learning(4) }),
        serve: async () => {
          throw new Error('stored record 3 is corrupt');
        },
      },
    });
    engine.learningStatus = learning(4);
    const el = mount(engine);
    await ready(el);
    const panel = el.shadowRoot!.querySelector<HTMLElement>('.adapter-menu')!;
    el.shadowRoot!.querySelector<HTMLButtonElement>('button.adapter-toggle')!.click();
    await expect.poll(() => panel.querySelectorAll('.versions li').length).toBe(2);
    expect(panel.querySelector('button[data-action="reset"]')).toBeNull(); // an engine without reset: no button
    panel.querySelector<HTMLButtonElement>('button[aria-label="Serve v3"]')!.click();
    await expect.poll(() => panel.querySelector('[role=alert]')?.textContent ?? '').toBe('Switching the adapter failed: stored record 3 is corrupt');
    expect(panel.querySelector('.menu-line')!.textContent).toBe('Serving v4');
    await expect.poll(() => $(el, '.learnt').textContent).toBe('learnt · v4');
  });

  it('learning status from the engine sets the badge on load', async () => {
    const engine = new ScriptedEngine();
    engine.learningStatus = learning(4);
    const el = mount(engine);
    await ready(el);
    await expect.poll(() => $(el, '.learnt').textContent).toBe('learnt · v4');
  });
});

describe('<mace-chat> persistence', () => {
  it('restores the conversation (answers, ratings, chosen answer) for the same model and id; Clear forgets it', async () => {
    const id = `persist-${Date.now()}`;
    const engine = new ScriptedEngine();
    const el = mount(engine, {}, id);
    await ready(el);
    const req = await ask(el, engine, 'Remember <me>');
    await answered(el, req, 'I **will**.');
    buttons(el, 'Good response')[0].click();
    await expect.poll(() => engine.log.rating(req.id)?.rating).toBe('up');
    el.remove();

    // A "reload": a new element, same id and model, another engine.
    const again = mount(new ScriptedEngine(), {}, id);
    await ready(again);
    await expect.poll(() => $$(again, '.msg.user .bubble').map((b) => b.textContent)).toEqual(['Remember <me>']);
    expect(assistantBubbles(again)[0].innerHTML).toBe('<p>I <strong>will</strong>.</p>');
    expect(buttons(again, 'Good response')[0].getAttribute('aria-pressed')).toBe('true');

    // Another element id has its own conversation.
    const other = mount(new ScriptedEngine(), {}, `${id}-other`);
    await ready(other);
    expect($$(other, '.msg')).toHaveLength(0);

    buttons(again, 'Clear conversation')[0].click();
    await expect.poll(() => $$(again, '.msg')).toHaveLength(0);
    again.remove();
    const third = mount(new ScriptedEngine(), {}, id);
    await ready(third);
    await new Promise((r) => setTimeout(r, 50));
    expect($$(third, '.msg')).toHaveLength(0);
  });

  it('changing the model attribute loads that model and switches to its own conversation', async () => {
    const engine = new ScriptedEngine();
    const el = mount(engine);
    await ready(el);
    const req = await ask(el, engine, 'About the first model');
    await answered(el, req, 'First.');
    el.setAttribute('model', 'owner/second');
    await expect.poll(() => engine.loads.length).toBe(2);
    expect(engine.loads[1].source).toEqual({ kind: 'hub', repo: 'owner/second' });
    await ready(el);
    await expect.poll(() => $$(el, '.msg').length).toBe(0);
    el.setAttribute('model', '/models/scripted/');
    await ready(el);
    await expect.poll(() => $$(el, '.msg.user .bubble').map((b) => b.textContent)).toEqual(['About the first model']);
    expect(engine.loads).toHaveLength(3);
  });

  it('an element that made its own engine terminates it when removed', async () => {
    const el = document.createElement('mace-chat');
    document.body.append(el); // no model attribute: an engine, but nothing to load
    await expect.poll(() => el.state).toBe('idle');
    const own = el.engine as { terminate(): void } | null;
    expect(own).not.toBeNull();
    let terminated = false;
    const original = own!.terminate.bind(own);
    own!.terminate = () => ((terminated = true), original());
    el.remove();
    await expect.poll(() => terminated).toBe(true);
    expect(el.engine).toBeNull();
  });
});

describe('renderMarkdown (DOMPurify layer)', () => {
  it('gives sanitized nodes: markdown structure, no live HTML, safe links', () => {
    const frag = renderMarkdown('# Hi\n\n<b onclick="x()">bold?</b> **bold** [a](https://a.example "t")\n\n| a | b |\n|---|:-:|\n| 1 | 2 |');
    const div = document.createElement('div');
    div.append(frag);
    expect(div.querySelector('h1')?.textContent).toBe('Hi');
    expect(div.querySelector('b')).toBeNull();
    expect(div.textContent).toContain('<b onclick="x()">bold?</b>');
    expect(div.querySelector('strong')?.textContent).toBe('bold');
    const a = div.querySelector('a')!;
    expect([a.href, a.rel, a.target, a.title]).toEqual(['https://a.example/', 'noopener noreferrer nofollow', '_blank', 't']);
    expect(div.querySelectorAll('td')).toHaveLength(2);
    expect([...div.querySelectorAll('*')].flatMap((n) => [...n.attributes].map((x) => x.name)).filter((n) => n.startsWith('on'))).toEqual([]);
  });
});
