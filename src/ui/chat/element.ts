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
 */
import type { MaceRemoteError } from '../../engine/errors-wire.ts';
import type { ModelInfo } from '../../engine/worker-api.ts';
import type { StatsBatch } from '../../scheduler/stats.ts';
import { ConversationStore, conversationKey, emptyConversation, type Rating, type StoredAnswer, type StoredConversation } from '../conversation-store.ts';
import { adapterFor, dropAnswer, newAnswer, newerLearnt, newTurn, type LearntAdapter } from './conversation.ts';
import { createDefaultEngine, type ChatEngine } from './engine.ts';
import { parseWorkerAttribute } from './own-engine.ts';
import { errorCode, friendlyError, NO_WEBGPU_MESSAGE, progressFraction, progressLine } from './messages.ts';
import { parseFormatAttribute, parseModelAttribute, parseNumberAttribute, parseProfileAttribute, profileStore } from './model-spec.ts';
import { warmMarkdownWhenIdle } from '../markdown.ts';
import { adoptStyles } from './styles.ts';
import { AdapterMenu } from './adapter-menu.ts';
import { buildShell, buildTurn, fillBubble, type TurnView, type WidgetDom } from './view.ts';

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
/** Follow the stream to the bottom only when the reader is already there (within this many px). */
const STICKY_SCROLL_PX = 48;

interface Streaming {
  turn: number;
  answer: StoredAnswer;
  abort: AbortController;
}

export class MaceChatElement extends HTMLElement {
  static readonly observedAttributes = ['model', 'format', 'profile'];

  private readonly dom: WidgetDom;
  private readonly adapterMenu: AdapterMenu;
  private readonly store = new ConversationStore();
  private engineValue: ChatEngine | null = null;
  private ownsEngine = false;
  /** Unsubscribes of the current engine's listeners. */
  private listeners: (() => void)[] = [];
  private stateValue: WidgetState = 'idle';
  private model: ModelInfo | null = null;
  /** Latest load wins: an older load finishing late changes nothing. */
  private loadSerial = 0;
  private conversation: StoredConversation = emptyConversation(conversationKey(SHARED_ENGINE_MODEL, DEFAULT_ELEMENT_ID));
  private persist = true;
  private streaming: Streaming | null = null;
  private learnt: LearntAdapter | null = null;
  private turnViews: TurnView[] = [];
  private frameRequested = false;
  /** The reader is at the bottom of the log: streaming text keeps it there. */
  private followStream = true;
  /**
   * Watches the streaming bubble. Its callback runs after layout, so reading the log's height and
   * scrolling there costs no extra layout (a read in the frame that changed the text would force one).
   */
  private readonly streamGrowth = new ResizeObserver(() => {
    if (this.streaming && this.followStream) this.dom.log.scrollTop = this.dom.log.scrollHeight;
  });
  private started = false;

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    adoptStyles(root);
    this.dom = buildShell(root);
    this.adapterMenu = new AdapterMenu(this.dom.adapterButton, this.dom.adapterPanel, {
      controls: () => this.engine?.adapter ?? null,
      // A switch or reset may go back in versions: the badge shows what serves now.
      changed: (s) => {
        if (s) this.learnt = { adapter: s.adapter, version: s.version };
        this.updateLearnt();
      },
    });
    this.wire();
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
    return this.learnt?.version ?? 0;
  }

  /** Send a message as if typed (resolves when the answer has finished streaming). */
  async send(text: string): Promise<void> {
    if (this.stateValue !== 'ready' || this.streaming || text.trim() === '') return;
    const settings = this.settings();
    if (!settings) return;
    const mode = this.model && !this.model.hasChatTemplate ? 'completion' : 'chat';
    const turn = newTurn(this.conversation, mode, this.getAttribute('system-prompt') ?? '', text);
    this.emit<MaceMessageDetail>('mace-message', { role: 'user', content: turn.user, completionId: null });
    this.renderTurns();
    await this.generate(this.conversation.turns.length - 1, settings);
  }

  /** Stop the answer that is streaming. */
  stop(): void {
    this.streaming?.abort.abort();
  }

  /** Forget the conversation (here and in IndexedDB). */
  async clearConversation(): Promise<void> {
    this.stop();
    this.conversation = emptyConversation(this.conversation.key);
    this.renderTurns();
    this.refreshControls();
    if (this.persist) await this.store.clear(this.conversation.key).catch((e: unknown) => this.storageFailed(e));
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
    if (engine.onStats) this.listeners.push(engine.onStats((batch) => this.onStats(batch)));
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
    this.learnt = null;
    this.updateLearnt();
    const modelAttr = this.getAttribute('model');
    // A profile keeps its own conversation too (its feedback and adapter live in its own store).
    const profileAttr = this.getAttribute('profile')?.trim();
    const key = conversationKey(modelAttr?.trim() || SHARED_ENGINE_MODEL, (this.id || DEFAULT_ELEMENT_ID) + (profileAttr ? `@${profileAttr}` : ''));
    const restoring = this.restore(key, serial);

    if (modelAttr === null) {
      // No model to load: the page gave an engine it loaded itself, or nothing at all yet.
      await restoring;
      if (serial !== this.loadSerial) return;
      if (this.ownsEngine) this.setState('idle', 'No model: set the model attribute to a Hugging Face repository id or a folder URL.');
      else this.setState('ready', null);
      void this.refreshLearning();
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
      void this.refreshLearning();
    } catch (e) {
      if (serial !== this.loadSerial) return;
      this.setState(errorCode(e) === 'webgpu-unavailable' ? 'no-webgpu' : 'load-failed', friendlyError(e, 'Loading the model'));
    }
  }

  /** Bring back the stored conversation of this key (a fresh one if none or unreadable). */
  private async restore(key: string, serial: number): Promise<void> {
    this.conversation = emptyConversation(key);
    this.renderTurns();
    try {
      const found = await this.store.load(key);
      if (serial !== this.loadSerial) return;
      this.persist = true;
      this.conversation = found.conversation;
      if (found.kind === 'unreadable') console.warn(`<mace-chat>: the saved conversation could not be read (${found.error.message}); starting a new one`);
    } catch (e) {
      this.storageFailed(e);
    }
    this.renderTurns();
    this.refreshControls();
  }

  private storageFailed(e: unknown): void {
    // Chat still works without IndexedDB (private windows, blocked storage); it is just not kept.
    this.persist = false;
    console.warn(`<mace-chat>: the conversation is not saved: ${e instanceof Error ? e.message : String(e)}`);
  }

  private async save(): Promise<void> {
    if (!this.persist) return;
    this.conversation.updatedAt = Date.now();
    await this.store.save(this.conversation).catch((e: unknown) => this.storageFailed(e));
  }

  // ---- answering

  private settings(): { max_tokens: number; temperature: number } | null {
    try {
      return {
        max_tokens: parseNumberAttribute('max-tokens', this.getAttribute('max-tokens'), 256, 1, 32768, true),
        temperature: parseNumberAttribute('temperature', this.getAttribute('temperature'), 0.8, 0, 2),
      };
    } catch (e) {
      this.showNotice('error', friendlyError(e, 'Reading the settings'));
      return null;
    }
  }

  /** Stream a new answer to turn `index` (its first, or another one after Regenerate). */
  private async generate(index: number, settings: { max_tokens: number; temperature: number }): Promise<void> {
    const engine = this.engineValue;
    const turn = this.conversation.turns[index];
    if (!engine || !turn) return;
    const conversation = this.conversation;
    const adapter = adapterFor(this.getAttribute('adapter'), this.learnt);
    const answer = newAnswer(turn, adapter);
    const abort = new AbortController();
    this.streaming = { turn: index, answer, abort };
    this.hideNotice();
    this.renderTurns();
    this.refreshControls();
    let failure: unknown = null;
    try {
      const stream = await engine.chat.completions.create({
        messages: turn.context.map((m) => ({ ...m })),
        stream: true,
        signal: abort.signal,
        ...settings,
        ...(adapter ? { adapter } : {}),
      });
      for await (const chunk of stream) {
        answer.completionId ??= chunk.id;
        const choice = chunk.choices[0];
        if (choice?.delta.content) {
          answer.content += choice.delta.content;
          this.requestStreamFrame();
        }
        if (choice?.finish_reason) answer.finishReason = choice.finish_reason;
      }
      answer.finishReason ??= abort.signal.aborted ? 'abort' : 'stop';
    } catch (e) {
      if (abort.signal.aborted) answer.finishReason = 'abort';
      else {
        failure = e;
        answer.finishReason = 'error';
      }
    }
    const kept = !(failure && answer.content === '');
    if (!kept) dropAnswer(turn, answer);
    this.streaming = null;
    this.refreshControls();
    if (conversation !== this.conversation) return; // cleared or another model meanwhile
    this.renderTurns();
    if (failure && this.stateValue === 'ready') this.showNotice('error', friendlyError(failure, 'The answer'));
    await this.save();
    if (kept && !failure) this.emit<MaceMessageDetail>('mace-message', { role: 'assistant', content: answer.content, completionId: answer.completionId });
  }

  /** Redraw the streaming bubble at most once per frame. */
  private requestStreamFrame(): void {
    if (this.frameRequested) return;
    this.frameRequested = true;
    requestAnimationFrame(() => {
      this.frameRequested = false;
      const s = this.streaming;
      const view = s && this.turnViews[s.turn];
      if (!s || !view?.bubble) return;
      fillBubble(view.bubble, s.answer, this.conversation.turns[s.turn].mode);
      // No layout read here: the bubble's ResizeObserver scrolls after the browser's own layout.
    });
  }

  private async regenerate(index: number): Promise<void> {
    if (this.stateValue !== 'ready' || this.streaming || index !== this.conversation.turns.length - 1) return;
    const settings = this.settings();
    if (settings) await this.generate(index, settings);
  }

  // ---- feedback and learning

  private async rate(index: number, rating: Rating): Promise<void> {
    const engine = this.engineValue;
    const turn = this.conversation.turns[index];
    const answer = turn?.answers[turn.selected];
    if (!engine || !answer || answer.completionId === null || answer.rating === rating) return;
    const completionId = answer.completionId;
    const previous = answer.rating;
    answer.rating = rating;
    this.renderTurns();
    try {
      const result = await engine.feedback({ completionId, rating });
      const pairFormed = result.added.length > 0;
      this.emit<MaceFeedbackDetail>('mace-feedback', { completionId, rating, pairFormed });
      if (pairFormed) void this.refreshLearning();
    } catch (e) {
      answer.rating = previous;
      this.renderTurns();
      this.showNotice('error', friendlyError(e, 'Saving your rating'));
    }
    await this.save();
  }

  private onStats(batch: StatsBatch): void {
    let changed = false;
    for (const r of batch.records) {
      if (r.type !== 'finetune') continue;
      const next = newerLearnt(this.learnt, { adapter: r.adapter, version: r.adapterVersion });
      changed ||= next !== this.learnt;
      this.learnt = next;
    }
    if (changed) this.updateLearnt();
  }

  private async refreshLearning(): Promise<void> {
    const engine = this.engineValue;
    if (!engine?.learning) return;
    try {
      const s = await engine.learning.status();
      if (!s || engine !== this.engineValue) return;
      this.learnt = newerLearnt(this.learnt, { adapter: s.adapter, version: s.version });
      this.updateLearnt();
    } catch {
      // No model loaded (yet): the badge stays as it is; finetune stats will update it.
    }
  }

  private updateLearnt(): void {
    const badge = this.dom.learnt;
    const l = this.learnt;
    badge.hidden = !l || l.version < 1;
    this.dom.adapterButton.hidden = this.stateValue !== 'ready' || !this.engine?.adapter;
    if (this.dom.adapterButton.hidden) this.adapterMenu.close();
    if (!l || l.version < 1) return;
    badge.textContent = `learnt · v${l.version}`;
    const attr = this.getAttribute('adapter');
    const used = adapterFor(attr, l) === l.adapter;
    badge.title = `Learnt from your feedback: adapter "${l.adapter}", version ${l.version}. ${used ? 'New answers use it.' : `Not used: the adapter attribute says "${attr}".`}`;
  }

  private onDeviceLost(e: MaceRemoteError): void {
    this.stop();
    this.model = null;
    this.setState('device-lost', friendlyError(e, 'The GPU'));
  }

  // ---- state and rendering

  private setState(state: WidgetState, message: string | null): void {
    this.stateValue = state;
    const d = this.dom;
    this.updateLearnt(); // the adapter menu is offered only while a model is ready
    d.status.hidden = state !== 'loading';
    if (state === 'ready') {
      this.hideNotice();
      if (this.model) {
        d.title.textContent = this.model.modelName;
        d.subtitle.textContent = `runs on your GPU · ${this.model.format}`;
        d.input.placeholder = this.model.hasChatTemplate ? 'Ask something…' : 'Start a story, the model continues it…';
      } else {
        d.input.placeholder = 'Ask something…';
      }
    } else if (state === 'load-failed') {
      this.showNotice('error', message ?? 'The model could not be loaded.', 'Try again');
    } else if (state === 'device-lost') {
      this.showNotice('error', message ?? 'The GPU was lost.', 'Reload model');
    } else if (state === 'no-webgpu') {
      d.title.textContent = 'Chat unavailable';
      d.subtitle.textContent = 'needs WebGPU';
      this.showNotice('error', message ?? NO_WEBGPU_MESSAGE);
    } else if (state === 'idle') {
      this.showNotice('info', message ?? 'No model.');
    } else {
      this.hideNotice();
    }
    this.renderTurns();
    this.refreshControls();
    this.emit<MaceStateDetail>('mace-state', { state, model: this.model, message });
  }

  private showNotice(kind: 'error' | 'info', text: string, action?: string): void {
    const d = this.dom;
    d.notice.hidden = false;
    d.notice.className = `notice ${kind}`;
    d.noticeText.textContent = text;
    d.noticeAction.hidden = action === undefined;
    d.noticeAction.textContent = action ?? '';
  }

  private hideNotice(): void {
    this.dom.notice.hidden = true;
  }

  private refreshControls(): void {
    const d = this.dom;
    const ready = this.stateValue === 'ready';
    const busy = this.streaming !== null;
    d.input.disabled = !ready;
    d.send.disabled = !ready || busy;
    d.send.hidden = busy;
    d.stop.hidden = !busy;
    d.clear.disabled = this.conversation.turns.length === 0;
  }

  /** Rebuild the log from the conversation, keeping keyboard focus on the same control. */
  private renderTurns(): void {
    const log = this.dom.log;
    const focused = this.shadowRoot?.activeElement;
    const focusKey = focused instanceof HTMLElement && log.contains(focused) ? `${focused.dataset.action}:${focused.dataset.turn}` : null;
    const turns = this.conversation.turns;
    const busy = this.streaming !== null;
    this.turnViews = turns.map((turn, index) =>
      buildTurn(turn, { index, isLast: index === turns.length - 1, streaming: this.streaming?.turn === index, busy }),
    );
    if (turns.length === 0) {
      this.dom.empty.textContent = this.emptyText();
      log.replaceChildren(this.dom.empty);
    } else {
      log.replaceChildren(...this.turnViews.map((v) => v.root));
    }
    if (focusKey) {
      const [action, turn] = focusKey.split(':');
      const again = log.querySelector<HTMLElement>(`button[data-action="${action}"][data-turn="${turn}"]`);
      (again ?? this.dom.input).focus();
    }
    this.streamGrowth.disconnect();
    if (busy) {
      log.scrollTop = log.scrollHeight;
      this.followStream = true;
      const bubble = this.streaming && this.turnViews[this.streaming.turn]?.bubble;
      if (bubble) this.streamGrowth.observe(bubble);
    }
  }

  private emptyText(): string {
    if (this.stateValue === 'loading') return 'Loading the model…';
    if (this.stateValue !== 'ready') return '';
    if (this.model && !this.model.hasChatTemplate) return `${this.model.modelName} continues text: type the start of a story, e.g. “Once upon a time”.`;
    return 'Ask something. The model runs on your GPU; nothing you type leaves this page.';
  }

  private emit<T>(type: string, detail: T): void {
    this.dispatchEvent(new CustomEvent<T>(type, { detail, bubbles: true, composed: true }));
  }

  // ---- input

  private wire(): void {
    const d = this.dom;
    d.form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.sendTyped();
    });
    d.input.addEventListener('keydown', (ev) => {
      // Enter sends, Shift+Enter is a newline; never while an IME is composing. Escape stops.
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        this.sendTyped();
      } else if (ev.key === 'Escape' && this.streaming) {
        ev.preventDefault();
        this.stop();
      }
    });
    d.stop.addEventListener('click', () => {
      this.stop();
      d.input.focus();
    });
    d.clear.addEventListener('click', () => void this.clearConversation());
    d.noticeAction.addEventListener('click', () => this.reload());
    d.log.addEventListener(
      'scroll',
      () => (this.followStream = d.log.scrollHeight - d.log.scrollTop - d.log.clientHeight < STICKY_SCROLL_PX),
      { passive: true },
    );
    d.log.addEventListener('click', (ev) => {
      const button = ev.target instanceof Element ? ev.target.closest<HTMLButtonElement>('button[data-action]') : null;
      if (!button || button.disabled) return;
      const index = Number(button.dataset.turn);
      switch (button.dataset.action) {
        case 'up':
        case 'down':
          void this.rate(index, button.dataset.action);
          break;
        case 'regenerate':
          void this.regenerate(index);
          break;
        case 'prev':
        case 'next':
          this.page(index, button.dataset.action === 'next' ? 1 : -1);
          break;
      }
    });
  }

  private sendTyped(): void {
    const text = this.dom.input.value;
    if (this.stateValue !== 'ready' || this.streaming || text.trim() === '') return;
    this.dom.input.value = '';
    void this.send(text);
  }

  private page(index: number, step: 1 | -1): void {
    const turn = this.conversation.turns[index];
    if (!turn || this.streaming) return;
    turn.selected = Math.max(0, Math.min(turn.answers.length - 1, turn.selected + step));
    this.renderTurns();
    void this.save();
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
