/**
 * The demo's chat: the engine runs in a Web Worker (src/engine/client.ts), so streaming a reply
 * never blocks the page. Loads the bundled stories260K on start (it works offline: same-origin
 * files, kept in the Cache API after the first load), or any Llama-family model folder by Hub
 * repo id or URL when online, in f32, f16 or q4.
 *
 * Every model string reaches the page only through textContent (never innerHTML): a model's
 * output is untrusted text.
 */
import { createWorkerEngine, type WorkerEngine } from '../src/engine/client.ts';
import type { ChatCompletionMessageParam, CompletionUsage, FinishReason } from '../src/engine/types.ts';
import type { LoadRequest, ModelInfo, ModelSourceSpec } from '../src/engine/worker-api.ts';
import type { WeightFormat } from '../src/kernels/weights.ts';
import type { LoadProgress } from '../src/model/loader.ts';

export const BUNDLED_MODEL = '/models/stories260K/';
/** Engine sizes for the demo: 64 MiB of KV cache is plenty for one person chatting. */
const ENGINE_OPTIONS = { kvBudgetBytes: 64 * 2 ** 20, maxSeqs: 4 };

/** The elements the chat drives (ids in index.html). */
interface ChatDom {
  modelForm: HTMLFormElement;
  modelField: HTMLInputElement;
  dtype: HTMLSelectElement;
  loadButton: HTMLButtonElement;
  progress: HTMLElement;
  bar: HTMLProgressElement;
  progressText: HTMLElement;
  info: HTMLElement;
  mode: HTMLElement;
  log: HTMLElement;
  form: HTMLFormElement;
  text: HTMLTextAreaElement;
  send: HTMLButtonElement;
  stop: HTMLButtonElement;
  temperature: HTMLInputElement;
  maxTokens: HTMLInputElement;
  usage: HTMLElement;
  error: HTMLElement;
}

function byId<T extends HTMLElement>(id: string, type: { new (): T }): T {
  const el = document.getElementById(id);
  if (!(el instanceof type)) throw new Error(`demo: #${id} is missing from index.html or is not a ${type.name}`);
  return el;
}

function findDom(): ChatDom {
  return {
    modelForm: byId('model-form', HTMLFormElement),
    modelField: byId('model-id', HTMLInputElement),
    dtype: byId('model-dtype', HTMLSelectElement),
    loadButton: byId('model-load', HTMLButtonElement),
    progress: byId('load-progress', HTMLElement),
    bar: byId('load-bar', HTMLProgressElement),
    progressText: byId('load-message', HTMLElement),
    info: byId('model-info', HTMLElement),
    mode: byId('chat-mode', HTMLElement),
    log: byId('chat-log', HTMLElement),
    form: byId('chat-form', HTMLFormElement),
    text: byId('chat-text', HTMLTextAreaElement),
    send: byId('chat-send', HTMLButtonElement),
    stop: byId('chat-stop', HTMLButtonElement),
    temperature: byId('chat-temperature', HTMLInputElement),
    maxTokens: byId('chat-max-tokens', HTMLInputElement),
    usage: byId('chat-usage', HTMLElement),
    error: byId('chat-error', HTMLElement),
  };
}

/** The model field: empty = bundled model; a URL or path = a folder of HF files; owner/name[@rev] = the Hub. */
export function parseModelField(text: string): ModelSourceSpec | string {
  const t = text.trim();
  if (t === '') return { kind: 'url', base: BUNDLED_MODEL };
  if (/^(https?:\/\/|\/|\.\.?\/)/.test(t)) return { kind: 'url', base: t.endsWith('/') ? t : `${t}/` };
  const hub = /^([\w.-]+\/[\w.-]+)(?:@([\w./-]+))?$/.exec(t);
  if (hub) return { kind: 'hub', repo: hub[1], ...(hub[2] ? { revision: hub[2] } : {}) };
  return `"${t}" is neither a Hugging Face repository id (owner/name) nor a URL`;
}

function formatOf(v: string): WeightFormat {
  return v === 'f16' || v === 'q4' ? v : 'f32';
}

/** Fields a typed error may carry (MaceRemoteError has them as own properties). */
interface ErrorLike {
  code?: unknown;
  message?: unknown;
  file?: unknown;
  status?: unknown;
  promptTokens?: unknown;
  maxContext?: unknown;
}

/** A sentence a person can act on, by error code. */
export function friendlyError(e: unknown, doing: string): string {
  const err: ErrorLike = typeof e === 'object' && e !== null ? e : {};
  const msg = typeof err.message === 'string' ? err.message : String(e);
  switch (err.code) {
    case 'webgpu-unavailable':
      return `WebGPU is not available in this browser's workers (${msg}). Try a recent Chrome or Edge, over https or localhost.`;
    case 'no-adapter':
      return `The browser offered no GPU adapter (${msg}). WebGPU may be disabled or the GPU blocklisted (see chrome://gpu).`;
    case 'model-file':
      return err.status === 0
        ? `Could not fetch ${String(err.file)}: the network failed or you are offline. The bundled model (leave the field empty) works offline.`
        : `Could not fetch ${String(err.file)} (${msg}). Check the repository id or URL; gated models need a token, which this demo does not send.`;
    case 'bad-config':
    case 'unsupported-architecture':
    case 'bad-checkpoint':
    case 'bad-safetensors':
    case 'bad-tokenizer':
    case 'bad-model-file':
      return `This model cannot run here: ${msg}`;
    case 'limits-too-small':
      return `This GPU is too small for the model: ${msg}. Try q4 weights or a smaller model.`;
    case 'prompt-too-long':
      return `The message is too long: ${String(err.promptTokens)} tokens, and the context holds ${String(err.maxContext)}.`;
    case 'no-model':
      return 'No model is loaded yet: load one first.';
    case 'device-lost':
      return `The GPU device was lost (${msg}). Load the model again to get a new one.`;
    case 'worker-gone':
      return `The engine worker stopped (${msg}). Reload the page.`;
    default:
      return `${doing} failed: ${msg}`;
  }
}

function fmtBytes(n: number): string {
  return n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${(n / 1024).toFixed(0)} KiB`;
}

function progressLine(p: LoadProgress): string {
  const what = { files: 'Reading', download: 'Downloading', headers: 'Checking', weights: 'Uploading weights from', done: 'Loaded' }[p.phase];
  const amount = p.phase === 'download' || p.phase === 'weights' ? ` (${fmtBytes(p.loaded)}${p.total ? ` of ${fmtBytes(p.total)}` : ''})` : '';
  return `${what} ${p.file}${amount}`;
}

function usageLine(u: CompletionUsage, reason: FinishReason | null): string {
  const parts = [`${u.completion_tokens} tokens`, `TTFT ${u.ttft_ms.toFixed(0)} ms`, `prefill ${u.prefill_tokens_per_s.toFixed(0)} tok/s`, `decode ${u.decode_tokens_per_s.toFixed(1)} tok/s`];
  if (reason) parts.push(reason === 'length' ? 'stopped at max tokens' : reason === 'abort' ? 'stopped' : 'finished');
  return parts.join(' · ');
}

/** One chat: the worker engine, the model in it, and the conversation so far. */
class ChatApp {
  private readonly engine: WorkerEngine;
  private model: ModelInfo | null = null;
  private history: ChatCompletionMessageParam[] = [];
  private generating: AbortController | null = null;
  private loading = false;

  constructor(private readonly dom: ChatDom) {
    this.engine = createWorkerEngine();
    this.engine.onDeviceLost((e) => {
      this.model = null;
      this.generating?.abort();
      this.showError(friendlyError(e, 'The GPU'));
      this.refresh();
    });
    dom.modelForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.load();
    });
    dom.form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.send();
    });
    dom.text.addEventListener('keydown', (ev) => {
      // Enter sends, Shift+Enter is a newline; never while an IME is composing.
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        void this.send();
      }
    });
    dom.stop.addEventListener('click', () => this.generating?.abort());
    this.refresh();
  }

  /** Buttons follow the state: one load or one reply at a time. */
  private refresh(): void {
    const d = this.dom;
    d.loadButton.disabled = this.loading;
    d.send.disabled = this.loading || !this.model || this.generating !== null;
    d.stop.disabled = this.generating === null;
    d.text.disabled = this.loading || !this.model;
  }

  private showError(text: string | null): void {
    this.dom.error.hidden = text === null;
    this.dom.error.textContent = text ?? '';
  }

  async load(): Promise<void> {
    const d = this.dom;
    const spec = parseModelField(d.modelField.value);
    if (typeof spec === 'string') return this.showError(spec);
    this.generating?.abort();
    this.loading = true;
    this.model = null;
    this.showError(null);
    this.refresh();
    d.progress.hidden = false;
    d.bar.removeAttribute('value'); // indeterminate until sizes are known
    d.progressText.textContent = 'Starting the engine worker…';
    d.info.textContent = '';
    d.mode.textContent = '';
    d.usage.textContent = '';
    const request: LoadRequest = { source: spec, format: formatOf(d.dtype.value), engine: ENGINE_OPTIONS };
    try {
      this.model = await this.engine.load(request, (p) => {
        if (p.total > 0) d.bar.value = p.loaded / p.total;
        d.progressText.textContent = progressLine(p);
      });
      this.history = [];
      d.log.replaceChildren();
      this.describeModel(this.model);
      d.progress.hidden = true;
      d.text.focus();
    } catch (e) {
      d.progress.hidden = true;
      this.showError(friendlyError(e, 'Loading the model'));
    } finally {
      this.loading = false;
      this.refresh();
    }
  }

  private describeModel(m: ModelInfo): void {
    this.dom.info.textContent = `${m.modelName} · ${m.architecture}, ${m.nLayers} layers, hidden ${m.hiddenSize}, vocab ${m.vocabSize} · ${m.format} weights · context ${m.maxContext} · loaded in ${(m.loadMs / 1000).toFixed(1)} s on ${m.gpu}`;
    this.dom.mode.textContent = m.hasChatTemplate
      ? 'Chat mode: the conversation is formatted with the model’s chat template.'
      : `${m.modelName} has no chat template, so it runs in completion mode: each message is a prompt the model continues (for this tiny model, a children’s story). Try “Once upon a time”.`;
    this.dom.text.placeholder = m.hasChatTemplate ? 'Ask something…' : 'Once upon a time…';
  }

  private bubble(role: 'user' | 'assistant', text: string): HTMLElement {
    const row = document.createElement('div');
    row.className = `msg ${role}`;
    const body = document.createElement('div');
    body.className = 'body';
    body.textContent = text;
    row.append(body);
    this.dom.log.append(row);
    return body;
  }

  /** Numbers from the settings row, clamped to what the engine accepts. */
  private settings(): { temperature: number; max_tokens: number } {
    const t = Number(this.dom.temperature.value);
    const n = Number(this.dom.maxTokens.value);
    return { temperature: Number.isFinite(t) ? Math.min(2, Math.max(0, t)) : 0.8, max_tokens: Number.isInteger(n) && n > 0 ? n : 200 };
  }

  async send(): Promise<void> {
    const d = this.dom;
    const text = d.text.value;
    if (!this.model || this.generating || text.trim() === '') return;
    const withTemplate = this.model.hasChatTemplate;
    // Completion mode continues the text just sent; with a template the whole conversation goes.
    const messages: ChatCompletionMessageParam[] = withTemplate ? [...this.history, { role: 'user', content: text }] : [{ role: 'user', content: text }];
    d.text.value = '';
    this.showError(null);
    this.bubble('user', text);
    const out = this.bubble('assistant', '');
    out.classList.add('pending');
    const ac = new AbortController();
    this.generating = ac;
    this.refresh();
    d.usage.textContent = 'Generating…';
    let reply = '';
    try {
      const stream = await this.engine.chat.completions.create({ messages, stream: true, signal: ac.signal, ...this.settings() });
      for await (const chunk of stream) {
        const c = chunk.choices[0];
        if (c.delta.content) {
          reply += c.delta.content;
          // In completion mode the reply continues the user's text: the ellipsis says so.
          out.textContent = withTemplate ? reply : `…${reply}`;
          out.classList.remove('pending');
          d.log.scrollTop = d.log.scrollHeight;
        }
        if (chunk.usage) d.usage.textContent = usageLine(chunk.usage, c.finish_reason);
      }
      if (withTemplate) this.history = [...messages, { role: 'assistant', content: reply }];
      if (reply === '') out.textContent = '(no text)';
    } catch (e) {
      out.parentElement?.remove();
      d.usage.textContent = '';
      this.showError(friendlyError(e, 'The reply'));
    } finally {
      out.classList.remove('pending');
      this.generating = null;
      this.refresh();
    }
  }
}

/** Mount the chat in the Chat card and load the bundled model. */
export function mountChat(): void {
  const dom = findDom();
  dom.modelField.value = '';
  dom.modelField.placeholder = `${BUNDLED_MODEL} (bundled) — or owner/name, or a URL`;
  const app = new ChatApp(dom);
  void app.load();
}
