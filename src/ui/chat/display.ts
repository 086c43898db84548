/**
 * What `<mace-chat>` shows, kept in step with its state: the header, load status and notice for
 * each widget state, which controls are enabled, the conversation log, and the answer streaming
 * into it (redrawn at most once per frame, the log following it only while the reader is at the
 * bottom).
 *
 * view.ts builds the DOM and decides nothing; element.ts owns the state and the engine; this sits
 * between: it reads the element's state through `DisplaySource` and writes the DOM, and never calls
 * the engine or changes the conversation.
 */
import type { ModelInfo } from '../../engine/worker-api.ts';
import type { StoredAnswer, StoredConversation } from '../conversation-store.ts';
import type { WidgetState } from './element.ts';
import { NO_WEBGPU_MESSAGE } from './messages.ts';
import { buildTurn, fillBubble, type TurnView, type WidgetDom } from './view.ts';

/** Follow the stream to the bottom only when the reader is already there (within this many px). */
const STICKY_SCROLL_PX = 48;

/** The element's state as the display reads it (each call reads it afresh: the element replaces these objects). */
export interface DisplaySource {
  state(): WidgetState;
  /** The loaded model, or null. */
  model(): ModelInfo | null;
  conversation(): StoredConversation;
  /** The answer streaming now and the turn it answers, or null. */
  streaming(): { turn: number; answer: StoredAnswer } | null;
}

export class ChatDisplay {
  private turnViews: TurnView[] = [];
  private frameRequested = false;
  /** The reader is at the bottom of the log: streaming text keeps it there. */
  private followStream = true;
  /**
   * Watches the streaming bubble. Its callback runs after layout, so reading the log's height and
   * scrolling there costs no extra layout (a read in the frame that changed the text would force one).
   */
  private readonly streamGrowth: ResizeObserver;

  constructor(
    private readonly root: ShadowRoot,
    private readonly dom: WidgetDom,
    private readonly source: DisplaySource,
  ) {
    this.streamGrowth = new ResizeObserver(() => {
      if (this.source.streaming() && this.followStream) this.dom.log.scrollTop = this.dom.log.scrollHeight;
    });
    const log = dom.log;
    log.addEventListener('scroll', () => (this.followStream = log.scrollHeight - log.scrollTop - log.clientHeight < STICKY_SCROLL_PX), {
      passive: true,
    });
  }

  /** Show a new widget state: header, load status, notice, then the log and controls that depend on it. */
  showState(state: WidgetState, message: string | null): void {
    const d = this.dom;
    const model = this.source.model();
    d.status.hidden = state !== 'loading';
    if (state === 'ready') {
      this.hideNotice();
      if (model) {
        d.title.textContent = model.modelName;
        d.subtitle.textContent = `runs on your GPU · ${model.format}`;
        d.input.placeholder = model.hasChatTemplate ? 'Ask something…' : 'Start a story, the model continues it…';
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
  }

  showNotice(kind: 'error' | 'info', text: string, action?: string): void {
    const d = this.dom;
    d.notice.hidden = false;
    d.notice.className = `notice ${kind}`;
    d.noticeText.textContent = text;
    d.noticeAction.hidden = action === undefined;
    d.noticeAction.textContent = action ?? '';
  }

  hideNotice(): void {
    this.dom.notice.hidden = true;
  }

  refreshControls(): void {
    const d = this.dom;
    const ready = this.source.state() === 'ready';
    const busy = this.source.streaming() !== null;
    d.input.disabled = !ready;
    d.send.disabled = !ready || busy;
    d.send.hidden = busy;
    d.stop.hidden = !busy;
    d.clear.disabled = this.source.conversation().turns.length === 0;
  }

  /** Rebuild the log from the conversation, keeping keyboard focus on the same control. */
  renderTurns(): void {
    const log = this.dom.log;
    const focused = this.root.activeElement;
    const focusKey = focused instanceof HTMLElement && log.contains(focused) ? `${focused.dataset.action}:${focused.dataset.turn}` : null;
    const turns = this.source.conversation().turns;
    const streaming = this.source.streaming();
    const busy = streaming !== null;
    this.turnViews = turns.map((turn, index) =>
      buildTurn(turn, { index, isLast: index === turns.length - 1, streaming: streaming?.turn === index, busy }),
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
      const bubble = streaming && this.turnViews[streaming.turn]?.bubble;
      if (bubble) this.streamGrowth.observe(bubble);
    }
  }

  /** Redraw the streaming bubble at most once per frame. */
  requestStreamFrame(): void {
    if (this.frameRequested) return;
    this.frameRequested = true;
    requestAnimationFrame(() => {
      this.frameRequested = false;
      const s = this.source.streaming();
      const view = s && this.turnViews[s.turn];
      if (!s || !view?.bubble) return;
      fillBubble(view.bubble, s.answer, this.source.conversation().turns[s.turn].mode);
      // No layout read here: the bubble's ResizeObserver scrolls after the browser's own layout.
    });
  }

  private emptyText(): string {
    const state = this.source.state();
    const model = this.source.model();
    if (state === 'loading') return 'Loading the model…';
    if (state !== 'ready') return '';
    if (model && !model.hasChatTemplate) return `${model.modelName} continues text: type the start of a story, e.g. “Once upon a time”.`;
    return 'Ask something. The model runs on your GPU; nothing you type leaves this page.';
  }
}
