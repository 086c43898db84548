/**
 * The widget's DOM: the fixed shell (header, load status, notice, conversation log, composer) and
 * one element per turn. Pure builders: no engine, no state; the element decides what to show
 * (display.ts) and handles the clicks (session.ts; buttons carry data-action and data-turn for delegation).
 *
 * User text only ever reaches the DOM through textContent; model text only through
 * renderMarkdown (sanitized nodes).
 */
import type { StoredAnswer, StoredTurn } from '../conversation-store.ts';
import { renderMarkdown } from '../markdown.ts';
import { icon, type IconName } from './icons.ts';

export interface WidgetDom {
  title: HTMLElement;
  subtitle: HTMLElement;
  learnt: HTMLElement;
  /** Opens the learnt adapter's menu (adapter-menu.ts; shown once a model is loaded and the engine has adapter calls). */
  adapterButton: HTMLButtonElement;
  /** The menu's panel, below the header (filled by AdapterMenu). */
  adapterPanel: HTMLElement;
  clear: HTMLButtonElement;
  status: HTMLElement;
  bar: HTMLProgressElement;
  statusLine: HTMLElement;
  notice: HTMLElement;
  noticeText: HTMLElement;
  noticeAction: HTMLButtonElement;
  log: HTMLElement;
  empty: HTMLElement;
  form: HTMLFormElement;
  input: HTMLTextAreaElement;
  send: HTMLButtonElement;
  stop: HTMLButtonElement;
  hint: HTMLElement;
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, className?: string, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A button with an icon, a visible label or none, and an accessible name. */
export function iconButton(name: IconName, label: string, options: { visibleLabel?: boolean; action?: string; className?: string } = {}): HTMLButtonElement {
  const b = el('button', options.className);
  b.type = 'button';
  b.append(icon(name));
  if (options.visibleLabel) b.append(document.createTextNode(label));
  else b.setAttribute('aria-label', label);
  b.title = label;
  if (options.action) b.dataset.action = options.action;
  return b;
}

export function buildShell(root: ShadowRoot): WidgetDom {
  const bar = el('header', 'bar');
  const titles = el('div');
  titles.style.minWidth = '0';
  const title = el('div', 'title', 'Chat');
  const subtitle = el('div', 'subtitle');
  titles.append(title, subtitle);
  const learnt = el('span', 'learnt');
  learnt.hidden = true;
  const adapterButton = iconButton('layers', 'Learnt adapter: versions, download, import', { className: 'adapter-toggle' });
  adapterButton.hidden = true;
  const adapterPanel = el('div', 'adapter-menu');
  adapterPanel.id = 'mace-adapter-menu';
  adapterPanel.setAttribute('role', 'region');
  adapterPanel.setAttribute('aria-label', 'Learnt adapter');
  adapterPanel.hidden = true;
  adapterButton.setAttribute('aria-controls', adapterPanel.id);
  const clear = iconButton('clear', 'Clear conversation', { className: 'clear' });
  bar.append(titles, el('span', 'spacer'), learnt, adapterButton, clear);

  const status = el('div', 'status');
  status.setAttribute('role', 'status');
  status.hidden = true;
  const progress = el('progress');
  progress.max = 1;
  progress.setAttribute('aria-label', 'Loading model');
  const statusLine = el('div', 'line');
  status.append(progress, statusLine);

  const notice = el('div', 'notice');
  notice.setAttribute('role', 'alert');
  notice.hidden = true;
  const noticeText = el('div', 'text');
  const noticeAction = el('button');
  noticeAction.type = 'button';
  noticeAction.hidden = true;
  notice.append(noticeText, noticeAction);

  // role=log is a polite live region: finished additions are announced; a streaming answer is
  // aria-busy until it ends, so it is read once, whole, not token by token.
  const log = el('div', 'log');
  log.setAttribute('role', 'log');
  log.setAttribute('aria-live', 'polite');
  log.setAttribute('aria-label', 'Conversation');
  log.tabIndex = 0;
  const empty = el('p', 'empty');

  const form = el('form', 'composer');
  const input = el('textarea');
  input.rows = 1;
  input.setAttribute('aria-label', 'Message');
  input.setAttribute('aria-describedby', 'mace-hint');
  const send = iconButton('send', 'Send', { className: 'send' });
  send.type = 'submit';
  const stop = iconButton('stop', 'Stop', { className: 'stop', visibleLabel: true });
  stop.hidden = true;
  form.append(input, send, stop);
  const hint = el('p', 'hint', 'Enter sends · Shift+Enter adds a line');
  hint.id = 'mace-hint';

  root.append(bar, adapterPanel, status, notice, log, form, hint);
  return { title, subtitle, learnt, adapterButton, adapterPanel, clear, status, bar: progress, statusLine, notice, noticeText, noticeAction, log, empty, form, input, send, stop, hint };
}

/** Fill an answer's bubble with its rendered text (called per frame while it streams). */
export function fillBubble(bubble: HTMLElement, answer: StoredAnswer, mode: StoredTurn['mode']): void {
  // In completion mode the answer continues the user's text: the ellipsis says so.
  const text = mode === 'completion' && answer.content !== '' ? `…${answer.content}` : answer.content;
  bubble.replaceChildren(renderMarkdown(text));
}

function answerMeta(answer: StoredAnswer): string {
  const parts: string[] = [];
  if (answer.finishReason === 'abort') parts.push('stopped');
  if (answer.finishReason === 'length') parts.push('reached the length limit');
  if (answer.finishReason === 'error') parts.push('interrupted');
  if (answer.finishReason !== null && answer.content === '') parts.push('no text');
  if (answer.adapter) parts.push(`learnt adapter ${answer.adapter}`);
  return parts.join(' · ');
}

export interface TurnViewState {
  index: number;
  /** The conversation's last turn: only it can be regenerated. */
  isLast: boolean;
  /** The shown answer is streaming now. */
  streaming: boolean;
  /** Some answer is streaming (no regenerate, no paging meanwhile). */
  busy: boolean;
}

export interface TurnView {
  root: HTMLElement;
  /** The shown answer's bubble, or null when the turn has no answer yet. */
  bubble: HTMLElement | null;
}

function thumb(kind: 'up' | 'down', answer: StoredAnswer, index: number, disabled: boolean): HTMLButtonElement {
  const b = iconButton(kind === 'up' ? 'thumbUp' : 'thumbDown', kind === 'up' ? 'Good response' : 'Bad response', { action: kind });
  b.dataset.turn = String(index);
  b.setAttribute('aria-pressed', String(answer.rating === kind));
  b.disabled = disabled;
  return b;
}

function regenerateButton(index: number, withLabel: boolean): HTMLButtonElement {
  const b = iconButton('regenerate', 'Regenerate', { action: 'regenerate', visibleLabel: withLabel });
  b.dataset.turn = String(index);
  return b;
}

export function buildTurn(turn: StoredTurn, s: TurnViewState): TurnView {
  const root = el('div', 'turn');
  root.dataset.turn = String(s.index);

  const user = el('div', 'msg user');
  user.append(el('div', 'bubble', turn.user));
  root.append(user);

  const answer = turn.answers[turn.selected];
  if (!answer) return { root, bubble: null };

  const msg = el('div', 'msg assistant');
  msg.setAttribute('aria-busy', String(s.streaming));
  const bubble = el('div', 'bubble');
  fillBubble(bubble, answer, turn.mode);
  msg.append(bubble);
  const meta = answerMeta(answer);
  if (meta && !s.streaming) msg.append(el('div', 'meta', meta));

  if (!s.streaming) {
    const actions = el('div', 'actions');
    const unrateable = answer.completionId === null;
    actions.append(thumb('up', answer, s.index, unrateable), thumb('down', answer, s.index, unrateable));
    const offerRegenerate = s.isLast && !s.busy && answer.rating === 'down';
    if (s.isLast && !s.busy && !offerRegenerate) actions.append(regenerateButton(s.index, false));
    if (turn.answers.length > 1) {
      const pager = el('span', 'pager');
      const prev = iconButton('chevronLeft', 'Previous answer', { action: 'prev' });
      const next = iconButton('chevronRight', 'Next answer', { action: 'next' });
      prev.dataset.turn = next.dataset.turn = String(s.index);
      prev.disabled = s.busy || turn.selected === 0;
      next.disabled = s.busy || turn.selected === turn.answers.length - 1;
      const count = el('span', undefined, `${turn.selected + 1} / ${turn.answers.length}`);
      count.setAttribute('aria-label', `Answer ${turn.selected + 1} of ${turn.answers.length}`);
      pager.append(prev, count, next);
      actions.append(pager);
    }
    msg.append(actions);
    if (offerRegenerate) {
      // A thumbs-down offers a new answer to the same context; rating that one up forms a pair.
      const offer = el('div', 'offer', 'Not helpful? ');
      offer.append(regenerateButton(s.index, true));
      msg.append(offer);
    }
  }
  root.append(msg);
  return { root, bubble };
}
