/**
 * Text preference pairs → token pairs for the trainer, as TRL's DPOTrainer builds them: the prompt
 * encoded with the tokenizer's special tokens (BOS), or the chat template for message contexts
 * (completion mode when the model has none); each response is the tokens that follow the prompt
 * in the encoding of prompt + response (so a SentencePiece word boundary at the join is encoded as
 * it would be in running text), plus EOS when asked (TRL appends it to file pairs).
 * Pairs longer than the trainer's window are cut as TRL does: responses first to half the window
 * each at most, then the prompt keeps its end.
 */
import { chatPromptIds, type ChatCompletionMessageParam } from '../model/prompt.ts';
import type { TextTokenizer } from '../model/tokenizer.ts';
import type { TokenPair } from './reference.ts';

/** The response ids after `promptIds` in the joint encoding, or its own encoding when the join re-tokenized the prompt. */
function responseIds(tokenizer: TextTokenizer, promptText: string | null, promptIds: number[], response: string): number[] {
  if (promptText !== null) {
    const joint = tokenizer.encode(promptText + response);
    if (joint.length > promptIds.length && promptIds.every((id, i) => joint[i] === id)) return joint.slice(promptIds.length);
  }
  return tokenizer.encode(response, false);
}

export interface TokenizeOptions {
  /** Appended to each response (TRL's behaviour for datasets); null: nothing appended. */
  eos: number | null;
}

export interface TextPair {
  prompt?: string;
  messages?: ChatCompletionMessageParam[];
  chosen: string;
  rejected: string;
}

/** One text pair (a completion prompt or chat messages) as token ids. */
export function tokenizePair(tokenizer: TextTokenizer, p: TextPair, o: TokenizeOptions): TokenPair {
  const chat = p.messages !== undefined;
  const promptIds = chat ? chatPromptIds(tokenizer, p.messages!) : tokenizer.encode(p.prompt ?? '');
  // With a chat template the prompt text is not re-encodable as plain text: responses stand alone.
  const promptText = chat ? null : (p.prompt ?? '');
  const eos = o.eos === null ? [] : [o.eos];
  return {
    prompt: promptIds,
    chosen: [...responseIds(tokenizer, promptText, promptIds, p.chosen), ...eos],
    rejected: [...responseIds(tokenizer, promptText, promptIds, p.rejected), ...eos],
  };
}

/** Fit a pair into `maxTokens` per sequence (prompt + response); null when nothing usable is left. */
export function truncatePair(p: TokenPair, maxTokens: number): TokenPair | null {
  const half = Math.max(1, Math.floor(maxTokens / 2));
  const longest = Math.max(p.chosen.length, p.rejected.length);
  const cut = (r: number[]) => (p.prompt.length + longest > maxTokens ? r.slice(0, Math.min(r.length, half)) : r);
  const chosen = cut(p.chosen), rejected = cut(p.rejected);
  const room = maxTokens - Math.max(chosen.length, rejected.length);
  if (room < 1 || chosen.length === 0 || rejected.length === 0) return null;
  return { prompt: p.prompt.slice(Math.max(0, p.prompt.length - room)), chosen, rejected };
}

export interface TextThumb {
  prompt?: string;
  messages?: ChatCompletionMessageParam[];
  completion: string;
  label: boolean;
}

/** An unpaired example as token ids (KTO): the prompt as for pairs, the completion after it (+ EOS when asked). */
export function tokenizeThumb(tokenizer: TextTokenizer, t: TextThumb, o: TokenizeOptions): { prompt: number[]; completion: number[]; label: boolean } {
  const chat = t.messages !== undefined;
  const promptIds = chat ? chatPromptIds(tokenizer, t.messages!) : tokenizer.encode(t.prompt ?? '');
  const eos = o.eos === null ? [] : [o.eos];
  return { prompt: promptIds, completion: [...responseIds(tokenizer, chat ? null : (t.prompt ?? ''), promptIds, t.completion), ...eos], label: t.label };
}

/** Fit an unpaired example into `maxTokens` (prompt + completion) as truncatePair does; null when nothing usable is left. */
export function truncateThumb<T extends { prompt: number[]; completion: number[]; label: boolean }>(t: T, maxTokens: number): T | null {
  const half = Math.max(1, Math.floor(maxTokens / 2));
  const completion = t.prompt.length + t.completion.length > maxTokens ? t.completion.slice(0, Math.min(t.completion.length, half)) : t.completion;
  const room = maxTokens - completion.length;
  if (room < 1 || completion.length === 0) return null;
  return { ...t, prompt: t.prompt.slice(Math.max(0, t.prompt.length - room)), completion };
}
