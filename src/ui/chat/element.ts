/**
 * `<mace-chat>`: a chat with a model that runs on the visitor's GPU, as a custom element (Shadow
 * DOM, no framework).
 *
 * Attributes
 *   model          folder URL of Hugging Face files, or a Hub repo id (owner/name[@revision])
 *   format         weights on the GPU: f32 (default) | f16 | q4
 *   system-prompt  a system message sent first with every turn
 *   adapter        LoRA adapter to answer with; "none" = the base model; absent: the learnt adapter
 *                  once feedback has trained it (version >= 1)
 *   theme          light | dark (default: the page's prefers-color-scheme); colours and sizes are
 *                  CSS custom properties, listed in styles.ts
 *   max-tokens     longest answer in tokens (default 256); temperature (default 0.8)
 *   profile        whose feedback and learnt adapter these are: each profile has its own IndexedDB
 *                  store (`mace-web:<profile>`) and conversation; absent: the site's default store
 *   worker         shared (default) | dedicated: the engine the element makes when given none —
 *                  one engine for all tabs of the site where the browser can, or its own (own-engine.ts)
 * Property `engine`: an engine to share (e.g. the demo's, also watched by <mace-devtools>);
 * without one the element starts its own (the `worker` attribute). Events (bubbling, composed): `mace-message`,
 * `mace-feedback`, `mace-state`; see the Detail types below.
 *
 * The conversation (with each answer's completion id and rating) is kept in IndexedDB per
 * (model, element id) and restored when the element loads that model again.
 *
 * This file is the element itself: attributes and lifecycle, the engine, loading, the widget state
 * and the public surface. The conversation (kept, answered, rated; the composer) is session.ts;
 * what is shown for the state and the turns is display.ts; what learning has made of the feedback
 * (the learnt adapter, its badge and menu) is learning.ts.
 */
import type { MaceRemoteError } from '../../engine/errors-wire.ts';
import type { ModelInfo } from '../../engine/worker-api.ts';
import { conversationKey, type Rating } from '../conversation-store.ts';
import { ChatDisplay } from './display.ts';
import { createDefaultEngine, type ChatEngine } from './engine.ts';
import { LearntAdapterTracker } from './learning.ts';
import { parseWorkerAttribute } from './own-engine.ts';
import { errorCode, friendlyError, NO_WEBGPU_MESSAGE, progressFraction, progressLine } from './messages.ts';
import { parseFormatAttribute, parseModelAttribute, parseProfileAttribute, profileStore } from './model-spec.ts';
import { ChatSession } from './session.ts';
import { warmMarkdownWhenIdle } from '../markdown.ts';
import { adoptStyles } from './styles.ts';
import { buildShell, type WidgetDom } from './view.ts';

export type WidgetState = 'idle' | 'no-webgpu' | 'loading' | 'ready' | 'load-failed' | 'device-lost';

export interface MaceMessageDetail {
  role: 'user' | 'assistant';
  content: string;
  /** The engine's completion id of an answer; null for the user's messages. */
  completionId: string | null;
}

export interface MaceFeedbackDetail {
  completionId: string;
  rating: Rating;
  /** The rating made a liked/disliked pair in its context (training data for the adapter). */
  pairFormed: boolean;
}

export interface MaceStateDetail {
  state: WidgetState;
  /** The model, once loaded. */
  model: ModelInfo | null;
  /** What went wrong, in words, for the failure states. */
  message: string | null;
}

/** Engine sizes for one person chatting: 64 MiB of KV cache, a few sequences. */
const ENGINE_OPTIONS = { kvBudgetBytes: 64 * 2 ** 20, maxSeqs: 4 };
const DEFAULT_ELEMENT_ID = 'mace-chat';
/** Conversation key's model part when the page gave a loaded engine and no model attribute. */
const SHARED_ENGINE_MODEL = 'engine';

export class MaceChatElement extends HTMLElement {
  static readonly observedAttributes = ['model', 'format', 'profile'];

  private readonly dom: WidgetDom;
  private readonly display: ChatDisplay;
  private readonly learning: LearntAdapterTracker;
  private readonly session: ChatSession;
  private engineValue: ChatEngine | null = null;
  private ownsEngine = false;
  /** Unsubscribes of the current engine's listeners. */
  private listeners: (() => void)[] = [];
  private stateValue: WidgetState = 'idle';
  private model: ModelInfo | null = null;
  /** Latest load wins: an older load finishing late changes nothing. */
  private loadSerial = 0;
  private started = false;

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    adoptStyles(root);
    this.dom = buildShell(root);
    // The parts read the element's state through closures: its fields are replaced as it runs.
    this.learning = new LearntAdapterTracker(this.dom, {
      engine: () => this.engine,
      ready: () => this.stateValue === 'ready',
      adapterAttribute: () => this.getAttribute('adapter'),
    });
    this.display = new ChatDisplay(root, this.dom, {
      state: () => this.stateValue,
      model: () => this.model,
      conversation: () => this.session.conversation,
      streaming: () => this.session.streaming,
    });
    this.session = new ChatSession(conversationKey(SHARED_ENGINE_MODEL, DEFAULT_ELEMENT_ID), this.dom, this.display, this.learning, {
      engine: () => this.engineValue,
      state: () => this.stateValue,
      model: () => this.model,
      getAttribute: (name) => this.getAttribute(name),
      emit: (type, detail) => this.emit(type, detail),
      reload: () => this.reload(),
    });
  }

  // ---- public surface

  /** The engine the element talks to (given by the page, or its own once connected). */
  get engine(): ChatEngine | null {
    return this.engineValue;
  }

  set engine(engine: ChatEngine | null) {
    if (engine === this.engineValue) return;
    this.dropEngine();
    this.engineValue = engine;
    this.ownsEngine = false;
    if (this.isConnected) this.start();
  }

  get state(): WidgetState {
    return this.stateValue;
  }

  /** The loaded model, or null. */
  get modelInfo(): ModelInfo | null {
    return this.model;
  }

  /** Version of the adapter learnt from feedback (0 before the first applied step). */
  get learntVersion(): number {
    return this.learning.version;
  }

  /** Send a message as if typed (resolves when the answer has finished streaming). */
  send(text: string): Promise<void> {
    return this.session.send(text);
  }

  /** Stop the answer that is streaming. */
  stop(): void {
    this.session.stop();
  }

  /** Forget the conversation (here and in IndexedDB). */
  clearConversation(): Promise<void> {
    return this.session.clear();
  }

  /** Load the model again (after a failure or a device loss). */
  reload(): void {
    void this.load();
  }

  // ---- lifecycle

  connectedCallback(): void {
    warmMarkdownWhenIdle();
    // A page may set `engine` before the element is defined: that value sits on the instance and
    // would hide the accessor; move it through the setter.
    if (Object.prototype.hasOwnProperty.call(this, 'engine')) {
      const given = (this as { engine: ChatEngine | null }).engine;
      delete (this as { engine?: unknown }).engine;
      this.engine = given;
    }
    this.start();
  }

  disconnectedCallback(): void {
    this.stop();
    // A move within the page disconnects and reconnects at once: keep the engine through that.
    queueMicrotask(() => {
      if (!this.isConnected) this.dropEngine();
    });
  }

  attributeChangedCallback(_name: string, oldValue: string | null, newValue: string | null): void {
    if (oldValue !== newValue && this.started) void this.load();
  }

  /** Engine, listeners and first load; a second call with the same engine does nothing. */
  private start(): void {
    if (this.started) return;
    if (typeof navigator === 'undefined' || !('gpu' in navigator) || !navigator.gpu) {
      this.setState('no-webgpu', NO_WEBGPU_MESSAGE);
      return;
    }
    if (!this.engineValue) {
      this.engineValue = createDefaultEngine(parseWorkerAttribute(this.getAttribute('worker')));
      this.ownsEngine = true;
    }
    this.started = true;
    const engine = this.engineValue;
    this.listeners.push(engine.onDeviceLost((e) => this.onDeviceLost(e)));
    if (engine.onStats) this.listeners.push(engine.onStats((batch) => this.learning.onStats(batch)));
    void this.load();
  }

  private dropEngine(): void {
    this.stop();
    for (const off of this.listeners) off();
    this.listeners = [];
    if (this.ownsEngine) this.engineValue?.terminate?.();
    if (this.ownsEngine) this.engineValue = null;
    this.ownsEngine = false;
    this.started = false;
    this.loadSerial++; // a load in flight no longer concerns this element
  }

  // ---- loading

  private async load(): Promise<void> {
    const engine = this.engineValue;
    if (!engine) return;
    const serial = ++this.loadSerial;
    this.stop();
    this.model = null;
    this.learning.forget();
    const modelAttr = this.getAttribute('model');
    // A profile keeps its own conversation too (its feedback and adapter live in its own store).
    const profileAttr = this.getAttribute('profile')?.trim();
    const key = conversationKey(modelAttr?.trim() || SHARED_ENGINE_MODEL, (this.id || DEFAULT_ELEMENT_ID) + (profileAttr ? `@${profileAttr}` : ''));
    const restoring = this.session.restore(key, () => serial === this.loadSerial);

    if (modelAttr === null) {
      // No model to load: the page gave an engine it loaded itself, or nothing at all yet.
      await restoring;
      if (serial !== this.loadSerial) return;
      if (this.ownsEngine) this.setState('idle', 'No model: set the model attribute to a Hugging Face repository id or a folder URL.');
      else this.setState('ready', null);
      void this.learning.refresh();
      return;
    }

    let request;
    try {
      const feedbackStore = profileStore(parseProfileAttribute(this.getAttribute('profile')));
      request = { source: parseModelAttribute(modelAttr), format: parseFormatAttribute(this.getAttribute('format')), engine: ENGINE_OPTIONS, ...(feedbackStore ? { feedbackStore } : {}) };
    } catch (e) {
      await restoring;
      if (serial === this.loadSerial) this.setState('load-failed', friendlyError(e, 'Loading the model'));
      return;
    }
    this.setState('loading', null);
    this.dom.bar.removeAttribute('value'); // indeterminate until sizes are known
    this.dom.statusLine.textContent = 'Starting the engine…';
    this.dom.title.textContent = modelAttr;
    try {
      const [info] = await Promise.all([
        engine.load(request, (p) => {
          if (serial !== this.loadSerial) return;
          const f = progressFraction(p);
          if (f === null) this.dom.bar.removeAttribute('value');
          else this.dom.bar.value = f;
          this.dom.statusLine.textContent = progressLine(p);
        }),
        restoring,
      ]);
      if (serial !== this.loadSerial) return;
      this.model = info;
      this.setState('ready', null);
      void this.learning.refresh();
    } catch (e) {
      if (serial !== this.loadSerial) return;
      this.setState(errorCode(e) === 'webgpu-unavailable' ? 'no-webgpu' : 'load-failed', friendlyError(e, 'Loading the model'));
    }
  }

  private onDeviceLost(e: MaceRemoteError): void {
    this.stop();
    this.model = null;
    this.setState('device-lost', friendlyError(e, 'The GPU'));
  }

  // ---- state (what each state shows: display.ts)

  private setState(state: WidgetState, message: string | null): void {
    this.stateValue = state;
    this.learning.update(); // the adapter menu is offered only while a model is ready
    this.display.showState(state, message);
    this.emit<MaceStateDetail>('mace-state', { state, model: this.model, message });
  }

  private emit<T>(type: string, detail: T): void {
    this.dispatchEvent(new CustomEvent<T>(type, { detail, bubbles: true, composed: true }));
  }
}

declare global {
  interface HTMLElementTagNameMap {
    'mace-chat': MaceChatElement;
  }
  interface HTMLElementEventMap {
    'mace-message': CustomEvent<MaceMessageDetail>;
    'mace-feedback': CustomEvent<MaceFeedbackDetail>;
    'mace-state': CustomEvent<MaceStateDetail>;
  }
}
