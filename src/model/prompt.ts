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
 *
 * Tools (chat.completions `tools`, src/engine/structured/tools.ts): a template that mentions
 * `tools` renders them (HF's convention: the variable `tools`, assistant messages' `tool_calls`
 * with `function.arguments` as an object, tool messages' `tool_call_id`); any other template, and
 * completion mode, get the documented fallback: `toolsFallback` as (the start of) the system
 * message, assistant tool calls written out as their JSON, tool results as user messages.
 */
import { InvalidRequestError, PromptTooLongError } from './request-errors.ts';
import type { TextTokenizer } from './tokenizer.ts';

export interface TextContentPart {
  type: 'text';
  text: string;
}

export interface ChatCompletionMessageParam {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool' | string;
  /** Null only on an assistant message that made tool calls. */
  content: string | TextContentPart[] | null;
  /** An assistant message's calls (OpenAI's shape: arguments as a JSON string). */
  tool_calls?: MessageToolCall[];
  /** A tool message: the call it answers. */
  tool_call_id?: string;
  name?: string;
}

export interface MessageToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** Tools a chat prompt renders (see the file comment). */
export interface PromptTools {
  /** The request's tools, as the template's `tools` variable. */
  tools: readonly unknown[];
  /** The fallback system text for templates that do not take tools. */
  toolsFallback: string;
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
  [extra: string]: unknown;
}

/** A message's text, checked: its parts must be text parts. */
function messageText(m: ChatCompletionMessageParam, i: number): string {
  if (typeof m.content === 'string') return m.content;
  if (m.content === null && m.role === 'assistant' && Array.isArray(m.tool_calls) && m.tool_calls.length) return '';
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
    if (m.tool_calls !== undefined && m.tool_calls !== null) {
      if (m.role !== 'assistant') throw new InvalidRequestError(`messages[${i}].tool_calls`, 'is for assistant messages only');
      if (!Array.isArray(m.tool_calls)) throw new InvalidRequestError(`messages[${i}].tool_calls`, 'must be an array of tool calls');
      (m.tool_calls as MessageToolCall[]).forEach((c, j) => {
        const f = c?.function;
        if (c?.type !== 'function' || typeof c.id !== 'string' || typeof f?.name !== 'string' || typeof f.arguments !== 'string') throw new InvalidRequestError(`messages[${i}].tool_calls[${j}]`, "must be {id, type: 'function', function: {name, arguments (a JSON string)}}");
      });
    }
    if (m.role === 'tool' && typeof m.tool_call_id !== 'string') throw new InvalidRequestError(`messages[${i}].tool_call_id`, 'is required on a tool message: the id of the call it answers');
  });
}

/** The template takes tools when its text mentions them (HF templates read the `tools` variable). */
export function templateTakesTools(tokenizer: TextTokenizer): boolean {
  return tokenizer.chatTemplate !== null && /\btools\b/.test(tokenizer.chatTemplate);
}

function parsedArguments(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return s; // not JSON: the template gets the string as it came
  }
}

/** A message for the template (HF's tool conventions) or the fallback form. */
function plainMessage(m: ChatCompletionMessageParam, i: number, tools: PromptTools | null, native: boolean): PlainMessage {
  const content = messageText(m, i);
  if (native) {
    const plain: PlainMessage = { role: m.role, content };
    if (m.tool_calls?.length) plain.tool_calls = m.tool_calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.function.name, arguments: parsedArguments(c.function.arguments) } }));
    if (m.tool_call_id !== undefined) plain.tool_call_id = m.tool_call_id;
    if (m.name !== undefined) plain.name = m.name;
    return plain;
  }
  if (m.tool_calls?.length) {
    const calls = m.tool_calls.map((c) => JSON.stringify({ name: c.function.name, arguments: parsedArguments(c.function.arguments) })).join('\n');
    return { role: m.role, content: content ? `${content}\n${calls}` : calls };
  }
  if (m.role === 'tool' && tools) return { role: 'user', content: `Tool result (${m.tool_call_id}): ${content}` };
  return { role: m.role, content };
}

/** The plain messages of `indices`, with the tools fallback's system text first when it applies. */
function plainMessages(tokenizer: TextTokenizer, messages: readonly ChatCompletionMessageParam[], indices: readonly number[], tools: PromptTools | null): PlainMessage[] {
  const native = tools !== null && templateTakesTools(tokenizer);
  const plain = indices.map((i) => plainMessage(messages[i], i, tools, native || tools === null));
  if (!tools || native) return plain;
  if (plain.length && (plain[0].role === 'system' || plain[0].role === 'developer')) return [{ ...plain[0], content: `${tools.toolsFallback}\n\n${plain[0].content}` }, ...plain.slice(1)];
  return [{ role: 'system', content: tools.toolsFallback }, ...plain];
}

/** Render and tokenize plain messages (template, or completion mode). */
function encodeMessages(tokenizer: TextTokenizer, plain: readonly PlainMessage[], bound: PromptBound | undefined, limit: number, tools: PromptTools | null = null): number[] {
  if (tokenizer.hasChatTemplate) {
    const text = tokenizer.applyChatTemplate(plain, true, tools && templateTakesTools(tokenizer) ? { tools: tools.tools } : {});
    if (bound) checkPromptChars('messages', text.length, limit, bound.maxContext); // what the template made of them
    return tokenizer.encodeRendered(text);
  }
  return tokenizer.encode(plain.map((m) => m.content).join('\n'));
}

/**
 * Prompt ids of a chat request (see the file comment). With `bound`, a prompt over promptCharLimit
 * characters is refused before it is rendered or tokenized, naming the content that crossed it.
 */
export function chatPromptIds(tokenizer: TextTokenizer, messages: readonly ChatCompletionMessageParam[], bound?: PromptBound, tools: PromptTools | null = null): number[] {
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
  return encodeMessages(tokenizer, plainMessages(tokenizer, messages, [...messages.keys()], tools), bound, limit, tools);
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
export function fitChatPrompt(tokenizer: TextTokenizer, messages: readonly ChatCompletionMessageParam[], bound: PromptBound, mode: TruncationMode, reserve = 1, tools: PromptTools | null = null): FittedPrompt {
  const room = bound.maxContext - Math.max(1, reserve);
  if (mode === 'disabled') {
    const ids = chatPromptIds(tokenizer, messages, bound, tools);
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
  const plain = (drop: number): PlainMessage[] => plainMessages(tokenizer, messages, [...messages.keys()].filter((i) => i < lead || i >= lead + drop), tools);
  const encode = (drop: number) => encodeMessages(tokenizer, plain(drop), bound, limit, tools);
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
