/**
 * Chat messages → prompt token ids, shared by the engine's chat endpoint and the learner's pair
 * tokenizer (src/learn/pair-tokens.ts), so it lives below both.
 *
 * - Model WITH a chat template: the template rendered with add_generation_prompt.
 * - Model WITHOUT one (stories260K): completion mode — the messages' contents joined with "\n",
 *   encoded with the tokenizer's special tokens (so BOS first); roles are dropped.
 *
 * Oversized prompts are refused before tokenizing (promptCharLimit: message contents counted as they
 * are read, then the rendered template). A conversation longer than the context is, by default,
 * refused with PromptTooLongError naming the limit; with truncation 'auto' (the name and meaning of
 * OpenAI's Responses API option) the oldest messages after the leading system/developer messages are
 * dropped until the prompt leaves room for the reply (`fitChatPrompt`); the last message is never
 * dropped, and a prompt that cannot fit even then is refused as before.
 */
import { InvalidRequestError, PromptTooLongError } from './request-errors.ts';
import type { TextTokenizer } from './tokenizer.ts';

export interface TextContentPart {
  type: 'text';
  text: string;
}

export interface ChatCompletionMessageParam {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool' | string;
  content: string | TextContentPart[];
}

/**
 * Characters a prompt may hold per token of the context window, checked BEFORE tokenizing so that
 * an 80 MB prompt is refused at once instead of after a minute of tokenization. Characters cannot
 * bound tokens from above (a byte-level token covers one byte, a fused <unk> many characters), so
 * this is a documented request limit, not a proof: English averages ~4 characters per token and
 * even long runs of spaces or symbols stay far below 64. The limit is the larger of 64 and the
 * longest token of the vocabulary, times the context. A prompt under it is tokenized and then
 * held to the context in tokens as before (PromptTooLongError).
 */
export const PROMPT_CHARS_PER_TOKEN = 64;

/** Most prompt characters a request may carry for a `maxContext`-token window. */
export function promptCharLimit(maxContext: number, maxTokenChars = 1): number {
  return Math.max(PROMPT_CHARS_PER_TOKEN, maxTokenChars) * maxContext;
}

/** Refuse a prompt of `chars` characters over `limit`, naming `field`. */
export function checkPromptChars(field: string, chars: number, limit: number, maxContext: number): void {
  if (chars > limit) throw new InvalidRequestError(field, `brings the prompt to ${chars} characters; a request may hold at most ${limit} (${limit / maxContext} per token of the ${maxContext}-token context), so it cannot fit and is refused before tokenizing`);
}

/** The context window a prompt must fit, for the early refusal of oversized prompts. */
export interface PromptBound {
  maxContext: number;
}

/** What to do with a conversation longer than the context (OpenAI's `truncation`). */
export type TruncationMode = 'disabled' | 'auto';

export function truncationOf(v: unknown): TruncationMode {
  if (v === undefined || v === null || v === 'disabled') return 'disabled';
  if (v === 'auto') return 'auto';
  throw new InvalidRequestError('truncation', `= ${JSON.stringify(v)} must be 'auto' (drop the oldest messages to fit the context) or 'disabled' (refuse; the default)`);
}

interface PlainMessage {
  role: string;
  content: string;
}

/** A message's text, checked: its parts must be text parts. */
function messageText(m: ChatCompletionMessageParam, i: number): string {
  if (typeof m.content === 'string') return m.content;
  if (Array.isArray(m.content)) {
    return m.content
      .map((part, j) => {
        if (part?.type !== 'text' || typeof part.text !== 'string') throw new InvalidRequestError(`messages[${i}].content[${j}]`, 'must be a text part');
        return part.text;
      })
      .join('');
  }
  throw new InvalidRequestError(`messages[${i}].content`, 'must be a string or an array of text parts');
}

/** Characters of a message's content (before reading the text: an 80 MB part is only measured). */
function messageChars(m: ChatCompletionMessageParam): number {
  if (typeof m.content === 'string') return m.content.length;
  if (Array.isArray(m.content)) return m.content.reduce((a, p) => a + (typeof p?.text === 'string' ? p.text.length : 0), 0);
  return 0;
}

function checkMessages(messages: readonly ChatCompletionMessageParam[]): void {
  if (!Array.isArray(messages) || messages.length === 0) throw new InvalidRequestError('messages', 'must be a non-empty array');
  messages.forEach((m, i) => {
    if (!m || typeof m.role !== 'string') throw new InvalidRequestError(`messages[${i}].role`, 'must be a string');
  });
}

/** Render and tokenize plain messages (template, or completion mode). */
function encodeMessages(tokenizer: TextTokenizer, plain: readonly PlainMessage[], bound: PromptBound | undefined, limit: number): number[] {
  if (tokenizer.hasChatTemplate) {
    const text = tokenizer.applyChatTemplate(plain);
    if (bound) checkPromptChars('messages', text.length, limit, bound.maxContext); // what the template made of them
    return tokenizer.encodeRendered(text);
  }
  return tokenizer.encode(plain.map((m) => m.content).join('\n'));
}

/**
 * Prompt ids of a chat request (see the file comment). With `bound`, a prompt over promptCharLimit
 * characters is refused before it is rendered or tokenized, naming the content that crossed it.
 */
export function chatPromptIds(tokenizer: TextTokenizer, messages: readonly ChatCompletionMessageParam[], bound?: PromptBound): number[] {
  checkMessages(messages);
  const limit = bound ? promptCharLimit(bound.maxContext, tokenizer.maxTokenChars) : Infinity;
  if (bound) {
    let chars = 0;
    messages.forEach((m, i) => {
      if (typeof m.content === 'string') {
        chars += m.content.length;
        checkPromptChars(`messages[${i}].content`, chars, limit, bound.maxContext);
      } else if (Array.isArray(m.content)) {
        m.content.forEach((p, j) => {
          chars += typeof p?.text === 'string' ? p.text.length : 0;
          checkPromptChars(`messages[${i}].content[${j}].text`, chars, limit, bound.maxContext);
        });
      }
    });
  }
  return encodeMessages(tokenizer, messages.map((m, i) => ({ role: m.role, content: messageText(m, i) })), bound, limit);
}

export interface FittedPrompt {
  ids: number[];
  /** Messages dropped from the start of the conversation (after its leading system messages). */
  droppedMessages: number;
}

/**
 * The prompt of a chat request held to the context: at most maxContext − reserve tokens (reserve ≥ 1,
 * the reply's room). 'disabled': exactly chatPromptIds, PromptTooLongError when too long. 'auto': the
 * fewest oldest messages after the leading system/developer ones are dropped — first by characters
 * (so an 80 MB history is never rendered), then by tokens with a binary search over the count (each
 * step renders and tokenizes once) — keeping at least the last message.
 */
export function fitChatPrompt(tokenizer: TextTokenizer, messages: readonly ChatCompletionMessageParam[], bound: PromptBound, mode: TruncationMode, reserve = 1): FittedPrompt {
  const room = bound.maxContext - Math.max(1, reserve);
  if (mode === 'disabled') {
    const ids = chatPromptIds(tokenizer, messages, bound);
    if (ids.length > bound.maxContext - 1) throw new PromptTooLongError(ids.length, bound.maxContext);
    return { ids, droppedMessages: 0 };
  }
  checkMessages(messages);
  const limit = promptCharLimit(bound.maxContext, tokenizer.maxTokenChars);
  let lead = 0;
  while (lead < messages.length - 1 && (messages[lead].role === 'system' || messages[lead].role === 'developer')) lead++;
  const leadChars = messages.slice(0, lead).reduce((a, m) => a + messageChars(m), 0);
  checkPromptChars(`messages[${messages.length - 1}].content`, leadChars + messageChars(messages[messages.length - 1]), limit, bound.maxContext); // even the least it could keep is too long
  // Drops 0..maxDrop (the last message always stays); fewest drops within the character limit first.
  const maxDrop = messages.length - 1 - lead;
  let chars = leadChars + messages.slice(lead).reduce((a, m) => a + messageChars(m), 0);
  let lo = 0;
  while (chars > limit) chars -= messageChars(messages[lead + lo++]);
  const plain = (drop: number): PlainMessage[] => {
    const keep = [...messages.keys()].filter((i) => i < lead || i >= lead + drop);
    return keep.map((i) => ({ role: messages[i].role, content: messageText(messages[i], i) }));
  };
  const encode = (drop: number) => encodeMessages(tokenizer, plain(drop), bound, limit);
  let ids = encode(lo);
  if (ids.length <= room) return { ids, droppedMessages: lo };
  // Binary search the fewest drops in (lo, maxDrop] that fit (fewer messages never encode longer).
  let hi = maxDrop;
  let best: number[] | null = null;
  let bestDrop = -1;
  lo++;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    ids = encode(mid);
    if (ids.length <= room) {
      best = ids;
      bestDrop = mid;
      hi = mid - 1;
    } else lo = mid + 1;
  }
  if (best === null) {
    // Not even the system messages and the last one leave the reply its room: keep those if they
    // fit at all (the reply stops at the context's end, finish_reason 'length'), else refuse.
    const least = encode(maxDrop);
    if (least.length > bound.maxContext - 1) throw new PromptTooLongError(least.length, bound.maxContext);
    return { ids: least, droppedMessages: maxDrop };
  }
  return { ids: best, droppedMessages: bestDrop };
}
