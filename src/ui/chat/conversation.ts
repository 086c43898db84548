/**
 * The widget's conversation rules, apart from the DOM: what a new turn sends, which adapter serves
 * it, and how answers are added and chosen.
 */
import type { StoredAnswer, StoredConversation, StoredMessage, StoredTurn } from '../conversation-store.ts';

/**
 * The messages a new turn sends. With a chat template the whole conversation goes (each earlier
 * turn with the answer shown for it); in completion mode (no template) the model continues the
 * text just typed, so only that (after the system prompt, if any) is sent.
 */
export function contextFor(turns: readonly StoredTurn[], mode: StoredTurn['mode'], systemPrompt: string, userText: string): StoredMessage[] {
  const out: StoredMessage[] = [];
  if (systemPrompt.trim() !== '') out.push({ role: 'system', content: systemPrompt });
  if (mode === 'chat') {
    for (const t of turns) {
      const shown = t.answers[t.selected];
      // A turn without a usable answer is left out: the model would otherwise see two user messages in a row.
      if (!shown || shown.content === '') continue;
      out.push({ role: 'user', content: t.user }, { role: 'assistant', content: shown.content });
    }
  }
  out.push({ role: 'user', content: userText });
  return out;
}

/** Learning as the widget knows it: the adapter feedback trains and its version. */
export interface LearntAdapter {
  adapter: string;
  version: number;
}

/**
 * The adapter a new answer names. The `adapter` attribute wins (empty or "none": the base model);
 * without it, the learnt adapter once it has had at least one applied step.
 */
export function adapterFor(attribute: string | null, learnt: LearntAdapter | null): string | null {
  if (attribute !== null) {
    const a = attribute.trim();
    return a === '' || a === 'none' ? null : a;
  }
  return learnt && learnt.version >= 1 ? learnt.adapter : null;
}

/** A newer learnt state replaces an older one; a record for another adapter name replaces it too. */
export function newerLearnt(current: LearntAdapter | null, next: LearntAdapter): LearntAdapter {
  if (!current || current.adapter !== next.adapter || next.version > current.version) return next;
  return current;
}

export function newTurn(conversation: StoredConversation, mode: StoredTurn['mode'], systemPrompt: string, userText: string): StoredTurn {
  const turn: StoredTurn = { context: contextFor(conversation.turns, mode, systemPrompt, userText), user: userText, mode, answers: [], selected: 0 };
  conversation.turns.push(turn);
  return turn;
}

/** Start a new answer to a turn and show it. */
export function newAnswer(turn: StoredTurn, adapter: string | null): StoredAnswer {
  const answer: StoredAnswer = { completionId: null, content: '', rating: null, finishReason: null, adapter };
  turn.answers.push(answer);
  turn.selected = turn.answers.length - 1;
  return answer;
}

/** Drop an answer that never produced anything (the request failed before its first chunk). */
export function dropAnswer(turn: StoredTurn, answer: StoredAnswer): void {
  const i = turn.answers.indexOf(answer);
  if (i >= 0) turn.answers.splice(i, 1);
  turn.selected = Math.max(0, Math.min(turn.selected, turn.answers.length - 1));
}
