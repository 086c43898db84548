/**
 * The conversation `<mace-chat>` is having: restored from and saved to IndexedDB, new turns sent,
 * answers streamed from the engine (one at a time, stoppable), regenerated, paged through and rated;
 * and the composer and log controls that do those things.
 *
 * Split from element.ts, which keeps what is the element's own: attributes, lifecycle, the engine,
 * loading and the widget state. This reads those through `SessionHost` (afresh each time: the
 * engine and the state change under it), has display.ts show what changed, and asks learning.ts
 * which adapter answers. The turn rules themselves (context, adapter choice) are conversation.ts.
 */
import type { ModelInfo } from '../../engine/worker-api.ts';
import { ConversationStore, emptyConversation, type Rating, type StoredAnswer, type StoredConversation } from '../conversation-store.ts';
import { dropAnswer, newAnswer, newTurn } from './conversation.ts';
import type { ChatDisplay } from './display.ts';
import type { MaceFeedbackDetail, MaceMessageDetail, WidgetState } from './element.ts';
import type { ChatEngine } from './engine.ts';
import type { LearntAdapterTracker } from './learning.ts';
import { friendlyError } from './messages.ts';
import { parseNumberAttribute } from './model-spec.ts';
import type { WidgetDom } from './view.ts';

/** What the session reads from and asks of the element. */
export interface SessionHost {
  engine(): ChatEngine | null;
  state(): WidgetState;
  /** The loaded model, or null. */
  model(): ModelInfo | null;
  getAttribute(name: string): string | null;
  /** Dispatch one of the element's events (bubbling, composed). */
  emit<T>(type: string, detail: T): void;
  /** Load the model again (the notice's action). */
  reload(): void;
}

/** The answer streaming now. */
interface Streaming {
  turn: number;
  answer: StoredAnswer;
  abort: AbortController;
}

type Settings = { max_tokens: number; temperature: number };

export class ChatSession {
  private readonly store = new ConversationStore();
  private conversationValue: StoredConversation;
  private persist = true;
  private streamingValue: Streaming | null = null;

  constructor(
    initialKey: string,
    private readonly dom: WidgetDom,
    private readonly display: ChatDisplay,
    private readonly learning: LearntAdapterTracker,
    private readonly host: SessionHost,
  ) {
    this.conversationValue = emptyConversation(initialKey);
    this.wire();
  }

  get conversation(): StoredConversation {
    return this.conversationValue;
  }

  get streaming(): Streaming | null {
    return this.streamingValue;
  }

  /** Send a message as if typed (resolves when the answer has finished streaming). */
  async send(text: string): Promise<void> {
    if (this.host.state() !== 'ready' || this.streamingValue || text.trim() === '') return;
    const settings = this.settings();
    if (!settings) return;
    const model = this.host.model();
    const mode = model && !model.hasChatTemplate ? 'completion' : 'chat';
    const turn = newTurn(this.conversationValue, mode, this.host.getAttribute('system-prompt') ?? '', text);
    this.host.emit<MaceMessageDetail>('mace-message', { role: 'user', content: turn.user, completionId: null });
    this.display.renderTurns();
    await this.generate(this.conversationValue.turns.length - 1, settings);
  }

  /** Stop the answer that is streaming. */
  stop(): void {
    this.streamingValue?.abort.abort();
  }

  /** Forget the conversation (here and in IndexedDB). */
  async clear(): Promise<void> {
    this.stop();
    this.conversationValue = emptyConversation(this.conversationValue.key);
    this.display.renderTurns();
    this.display.refreshControls();
    if (this.persist) await this.store.clear(this.conversationValue.key).catch((e: unknown) => this.storageFailed(e));
  }

  // ---- kept in IndexedDB

  /**
   * Bring back the stored conversation of this key (a fresh one if none or unreadable).
   * `current` says whether the load that asked is still the latest: if not, what was read is dropped.
   */
  async restore(key: string, current: () => boolean): Promise<void> {
    this.conversationValue = emptyConversation(key);
    this.display.renderTurns();
    try {
      const found = await this.store.load(key);
      if (!current()) return;
      this.persist = true;
      this.conversationValue = found.conversation;
      if (found.kind === 'unreadable') console.warn(`<mace-chat>: the saved conversation could not be read (${found.error.message}); starting a new one`);
    } catch (e) {
      this.storageFailed(e);
    }
    this.display.renderTurns();
    this.display.refreshControls();
  }

  private storageFailed(e: unknown): void {
    // Chat still works without IndexedDB (private windows, blocked storage); it is just not kept.
    this.persist = false;
    console.warn(`<mace-chat>: the conversation is not saved: ${e instanceof Error ? e.message : String(e)}`);
  }

  private async save(): Promise<void> {
    if (!this.persist) return;
    this.conversationValue.updatedAt = Date.now();
    await this.store.save(this.conversationValue).catch((e: unknown) => this.storageFailed(e));
  }

  // ---- answering

  private settings(): Settings | null {
    try {
      return {
        max_tokens: parseNumberAttribute('max-tokens', this.host.getAttribute('max-tokens'), 256, 1, 32768, true),
        temperature: parseNumberAttribute('temperature', this.host.getAttribute('temperature'), 0.8, 0, 2),
      };
    } catch (e) {
      this.display.showNotice('error', friendlyError(e, 'Reading the settings'));
      return null;
    }
  }

  /** Stream a new answer to turn `index` (its first, or another one after Regenerate). */
  private async generate(index: number, settings: Settings): Promise<void> {
    const engine = this.host.engine();
    const turn = this.conversationValue.turns[index];
    if (!engine || !turn) return;
    const conversation = this.conversationValue;
    const adapter = this.learning.adapterForAnswer();
    const answer = newAnswer(turn, adapter);
    const abort = new AbortController();
    this.streamingValue = { turn: index, answer, abort };
    this.display.hideNotice();
    this.display.renderTurns();
    this.display.refreshControls();
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
          this.display.requestStreamFrame();
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
    this.streamingValue = null;
    this.display.refreshControls();
    if (conversation !== this.conversationValue) return; // cleared or another model meanwhile
    this.display.renderTurns();
    if (failure && this.host.state() === 'ready') this.display.showNotice('error', friendlyError(failure, 'The answer'));
    await this.save();
    if (kept && !failure) this.host.emit<MaceMessageDetail>('mace-message', { role: 'assistant', content: answer.content, completionId: answer.completionId });
  }

  private async regenerate(index: number): Promise<void> {
    if (this.host.state() !== 'ready' || this.streamingValue || index !== this.conversationValue.turns.length - 1) return;
    const settings = this.settings();
    if (settings) await this.generate(index, settings);
  }

  // ---- feedback (what learning makes of it: learning.ts)

  private async rate(index: number, rating: Rating): Promise<void> {
    const engine = this.host.engine();
    const turn = this.conversationValue.turns[index];
    const answer = turn?.answers[turn.selected];
    if (!engine || !answer || answer.completionId === null || answer.rating === rating) return;
    const completionId = answer.completionId;
    const previous = answer.rating;
    answer.rating = rating;
    this.display.renderTurns();
    try {
      const result = await engine.feedback({ completionId, rating });
      const pairFormed = result.added.length > 0;
      this.host.emit<MaceFeedbackDetail>('mace-feedback', { completionId, rating, pairFormed });
      if (pairFormed) void this.learning.refresh();
    } catch (e) {
      answer.rating = previous;
      this.display.renderTurns();
      this.display.showNotice('error', friendlyError(e, 'Saving your rating'));
    }
    await this.save();
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
      } else if (ev.key === 'Escape' && this.streamingValue) {
        ev.preventDefault();
        this.stop();
      }
    });
    d.stop.addEventListener('click', () => {
      this.stop();
      d.input.focus();
    });
    d.clear.addEventListener('click', () => void this.clear());
    d.noticeAction.addEventListener('click', () => this.host.reload());
    // The log's scroll (whether to follow the stream) is display.ts's.
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
    if (this.host.state() !== 'ready' || this.streamingValue || text.trim() === '') return;
    this.dom.input.value = '';
    void this.send(text);
  }

  private page(index: number, step: 1 | -1): void {
    const turn = this.conversationValue.turns[index];
    if (!turn || this.streamingValue) return;
    turn.selected = Math.max(0, Math.min(turn.answers.length - 1, turn.selected + step));
    this.display.renderTurns();
    void this.save();
  }
}
