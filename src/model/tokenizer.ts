/**
 * Text <-> token ids with @huggingface/tokenizers, chat prompts with @huggingface/jinja (the model's
 * own chat_template from tokenizer_config.json), and incremental detokenization for streaming.
 * A model without a chat template runs in completion mode: `hasChatTemplate` is false and
 * applyChatTemplate throws a typed error the engine turns into a plain-prompt fallback.
 */
import { Tokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool' | string;
  content: string;
}

export class TokenizerLoadError extends Error {
  readonly code = 'bad-tokenizer';
  constructor(
    readonly file: string,
    detail: string,
  ) {
    super(`${file}: ${detail}`);
    this.name = 'TokenizerLoadError';
  }
}

export class ChatTemplateError extends Error {
  readonly code = 'chat-template';
  constructor(detail: string) {
    super(`chat template: ${detail}`);
    this.name = 'ChatTemplateError';
  }
}

type Json = Record<string, unknown>;

/** A special token in tokenizer_config.json is a string or an AddedToken object with `content`. */
function tokenText(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return null;
}

function pickChatTemplate(cfg: Json): string | null {
  const t = cfg.chat_template;
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) {
    const named = t.find((e) => e && (e as Json).name === 'default') ?? t[0];
    return named && typeof (named as Json).template === 'string' ? ((named as Json).template as string) : null;
  }
  return null;
}

export class TextTokenizer {
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly bosId: number | null;
  /** EOS ids: the tokenizer's eos_token plus any given by the model config / generation config. */
  readonly eosIds: readonly number[];
  readonly chatTemplate: string | null;
  private compiled: Template | null = null;

  private constructor(
    private readonly tok: Tokenizer,
    cfg: Json,
    extraEosIds: readonly number[],
  ) {
    this.bosToken = tokenText(cfg.bos_token);
    this.eosToken = tokenText(cfg.eos_token);
    this.bosId = this.bosToken === null ? null : (tok.token_to_id(this.bosToken) ?? null);
    const eos = new Set(extraEosIds);
    const eosId = this.eosToken === null ? undefined : tok.token_to_id(this.eosToken);
    if (eosId !== undefined && eosId !== null) eos.add(eosId);
    this.eosIds = [...eos];
    this.chatTemplate = pickChatTemplate(cfg);
  }

  /** Build from the parsed (or raw text) tokenizer.json and tokenizer_config.json. */
  static load(tokenizerJson: string | Json, tokenizerConfig: string | Json = {}, extraEosIds: readonly number[] = []): TextTokenizer {
    const parse = (v: string | Json, file: string): Json => {
      if (typeof v !== 'string') return v;
      try {
        return JSON.parse(v) as Json;
      } catch (e) {
        throw new TokenizerLoadError(file, `is not valid JSON: ${(e as Error).message}`);
      }
    };
    const tj = parse(tokenizerJson, 'tokenizer.json');
    const tc = parse(tokenizerConfig, 'tokenizer_config.json');
    if (typeof tj.model !== 'object' || tj.model === null) throw new TokenizerLoadError('tokenizer.json', 'has no "model" object');
    let tok: Tokenizer;
    try {
      tok = new Tokenizer(tj as never, tc as never);
    } catch (e) {
      throw new TokenizerLoadError('tokenizer.json', `could not be loaded: ${(e as Error).message}`);
    }
    return new TextTokenizer(tok, tc, extraEosIds);
  }

  get hasChatTemplate(): boolean {
    return this.chatTemplate !== null;
  }

  /** Token ids of `text`; with addSpecialTokens (default) the tokenizer's post-processor adds BOS. */
  encode(text: string, addSpecialTokens = true): number[] {
    return this.tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  decode(ids: readonly number[], skipSpecialTokens = true): string {
    if (ids.length === 0) return '';
    return this.tok.decode([...ids], { skip_special_tokens: skipSpecialTokens });
  }

  /** The prompt text for `messages` rendered by the model's chat template. */
  applyChatTemplate(messages: readonly ChatMessage[], addGenerationPrompt = true): string {
    if (this.chatTemplate === null) throw new ChatTemplateError('this model has no chat_template (completion mode)');
    try {
      this.compiled ??= new Template(this.chatTemplate);
      return this.compiled.render({
        messages: messages.map((m) => ({ ...m })),
        add_generation_prompt: addGenerationPrompt,
        bos_token: this.bosToken ?? '',
        eos_token: this.eosToken ?? '',
      });
    } catch (e) {
      if (e instanceof ChatTemplateError) throw e;
      throw new ChatTemplateError((e as Error).message);
    }
  }

  /** Prompt ids for a chat: template rendered, then encoded without adding BOS twice. */
  encodeChat(messages: readonly ChatMessage[], addGenerationPrompt = true): number[] {
    const text = this.applyChatTemplate(messages, addGenerationPrompt);
    // Templates usually write the BOS token themselves; only add special tokens when they did not.
    const startsWithBos = this.bosToken !== null && text.startsWith(this.bosToken);
    return this.encode(text, !startsWithBos);
  }

  /**
   * A decoder that turns a growing list of ids into text deltas (for streaming). `context` is the
   * end of the prompt: decoding new ids after it keeps the leading space SentencePiece encodes in
   * "▁" (decoded alone, "▁named" would lose it and a continuation would read "foxnamed").
   */
  streamDecoder(context: readonly number[] = []): StreamDecoder {
    return new StreamDecoder((ids) => this.decode(ids), context);
  }
}

/**
 * Incremental detokenization. Decoding token by token breaks multi-byte characters (byte-fallback
 * tokens) and drops the leading space SentencePiece encodes in "▁"; so we decode a short window of
 * recent ids and emit only what is new, holding back text that ends in an incomplete character (U+FFFD).
 */
export class StreamDecoder {
  private ids: number[];
  private prefixOffset = 0; // start of the window that is decoded each time
  private readOffset: number; // ids before this were already emitted as text (or are context)

  constructor(
    private readonly decode: (ids: number[]) => string,
    context: readonly number[] = [],
  ) {
    this.ids = [...context];
    this.readOffset = this.ids.length;
  }

  /** Add one id; returns the new text (possibly empty). */
  push(id: number): string {
    this.ids.push(id);
    const prefix = this.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = this.decode(this.ids.slice(this.prefixOffset));
    if (full.length > prefix.length && !full.endsWith('\uFFFD')) {
      const delta = full.slice(prefix.length);
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      return delta;
    }
    return '';
  }

  /** Whatever is still held back (at the end of generation). */
  flush(): string {
    const prefix = this.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = this.decode(this.ids.slice(this.prefixOffset));
    this.prefixOffset = this.readOffset = this.ids.length;
    return full.slice(prefix.length);
  }
}
