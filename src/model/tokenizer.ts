/**
 * Text <-> token ids with @huggingface/tokenizers, chat prompts with @huggingface/jinja (the model's
 * own chat_template from tokenizer_config.json, or chat_template.jinja), and incremental
 * detokenization for streaming. A model without a chat template runs in completion mode:
 * `hasChatTemplate` is false and applyChatTemplate throws a typed error the engine turns into a
 * plain-prompt fallback.
 *
 * Loading checks the files' structure (typed errors naming file and field, never a raw TypeError),
 * encodes a probe text, and renders the chat template once against a probe conversation, so a
 * broken template is reported at load (chat-template.ts) rather than on the first request.
 */
import { Tokenizer } from '@huggingface/tokenizers';
import type { Template } from '@huggingface/jinja';
import { ChatTemplateError, compileTemplate, probeTemplate, renderTemplate, type TemplateSource } from './chat-template.ts';
import type { TokenizerVocabulary } from './validate.ts';

export { ChatTemplateError, ChatTemplateLoadError } from './chat-template.ts';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool' | string;
  content: string;
}

/** tokenizer.json / tokenizer_config.json is malformed: names the file and the field. */
export class TokenizerLoadError extends Error {
  readonly code = 'bad-tokenizer';
  constructor(
    readonly file: string,
    detail: string,
    readonly field = '(file)',
  ) {
    super(`${file}: ${detail}`);
    this.name = 'TokenizerLoadError';
  }
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const describe = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v);

/** A special token in tokenizer_config.json is a string or an AddedToken object with `content`. */
function tokenText(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return null;
}

/** The chat template of tokenizer_config.json: a string, or a list of {name, template} ('default' or the first). */
function pickChatTemplate(cfg: Json): TemplateSource | null {
  const file = 'tokenizer_config.json';
  const t = cfg.chat_template;
  if (t === undefined || t === null) return null;
  if (typeof t === 'string') return { file, name: 'default', text: t };
  if (!Array.isArray(t) || t.length === 0) throw new TokenizerLoadError(file, `chat_template must be a string or a non-empty list of {name, template}, got ${describe(t)}`, 'chat_template');
  t.forEach((e, i) => {
    if (!isObject(e) || typeof e.name !== 'string' || typeof e.template !== 'string') throw new TokenizerLoadError(file, `chat_template[${i}] must be {name: string, template: string}`, `chat_template[${i}]`);
  });
  const named = (t as { name: string; template: string }[]).find((e) => e.name === 'default') ?? (t[0] as { name: string; template: string });
  return { file, name: named.name, text: named.template };
}

/**
 * tokenizer.json's structure, checked before the library sees it: an object with a `model` whose
 * `vocab` is a token -> id object (BPE, WordPiece, WordLevel) or a [token, score] list (Unigram),
 * and `added_tokens` a list of {id, content}. Returns the vocabulary's size and highest id.
 */
function checkTokenizerJson(tj: unknown): TokenizerVocabulary['highestId'] & { size: number; maxChars: number } {
  const file = 'tokenizer.json';
  if (!isObject(tj)) throw new TokenizerLoadError(file, `must hold a JSON object, got ${describe(tj)}`);
  if (!isObject(tj.model)) throw new TokenizerLoadError(file, 'has no "model" object', 'model');
  const vocab = tj.model.vocab;
  let best = { id: -1, token: '', field: 'model.vocab' };
  let maxChars = 1;
  const see = (id: number, token: string, field: string) => {
    if (id > best.id) best = { id, token, field };
    maxChars = Math.max(maxChars, token.length);
  };
  if (vocab === undefined || vocab === null) throw new TokenizerLoadError(file, 'model.vocab is missing: the tokenizer has no vocabulary', 'model.vocab');
  if (Array.isArray(vocab)) {
    vocab.forEach((e, i) => {
      if (!Array.isArray(e) || typeof e[0] !== 'string' || typeof e[1] !== 'number') throw new TokenizerLoadError(file, `model.vocab[${i}] must be a [token, score] pair (a Unigram vocabulary)`, `model.vocab[${i}]`);
      see(i, e[0], 'model.vocab');
    });
  } else if (isObject(vocab)) {
    for (const [token, id] of Object.entries(vocab)) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) throw new TokenizerLoadError(file, `model.vocab[${JSON.stringify(token)}] must be a token id (an integer >= 0), got ${JSON.stringify(id)}`, 'model.vocab');
      see(id, token, 'model.vocab');
    }
  } else throw new TokenizerLoadError(file, `model.vocab must be an object of token ids or a list of [token, score], got ${describe(vocab)}`, 'model.vocab');
  if (tj.model.merges !== undefined && tj.model.merges !== null && !Array.isArray(tj.model.merges)) throw new TokenizerLoadError(file, `model.merges must be a list, got ${describe(tj.model.merges)}`, 'model.merges');
  const added = tj.added_tokens ?? [];
  if (!Array.isArray(added)) throw new TokenizerLoadError(file, `added_tokens must be a list, got ${describe(added)}`, 'added_tokens');
  added.forEach((a, i) => {
    if (!isObject(a) || typeof a.id !== 'number' || !Number.isInteger(a.id) || a.id < 0 || typeof a.content !== 'string') throw new TokenizerLoadError(file, `added_tokens[${i}] must be {id: integer >= 0, content: string}`, `added_tokens[${i}]`);
    see(a.id, a.content, `added_tokens[${i}]`);
  });
  if (best.id < 0) throw new TokenizerLoadError(file, 'model.vocab is empty: the tokenizer has no vocabulary', 'model.vocab');
  return { ...best, size: best.id + 1, maxChars };
}

export interface TokenizerLoadOptions {
  /** Text of chat_template.jinja (transformers' separate template file): it replaces tokenizer_config.json's chat_template. */
  chatTemplateJinja?: string | null;
}

export class TextTokenizer implements TokenizerVocabulary {
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly bosId: number | null;
  /** The id of tokenizer_config.json's eos_token, or null. */
  readonly eosId: number | null;
  /** EOS ids: the tokenizer's eos_token plus any given by the model config / generation config. */
  readonly eosIds: readonly number[];
  readonly chatTemplate: string | null;
  /** Where the chat template came from (file and template name), or null. */
  readonly chatTemplateSource: Omit<TemplateSource, 'text'> | null;
  /** Highest id + 1 of the vocabulary (model.vocab and added_tokens). */
  readonly vocabSize: number;
  readonly highestId: TokenizerVocabulary['highestId'];
  /** Longest token text in characters (at least 1). */
  readonly maxTokenChars: number;
  private compiled: Template | null = null;

  private constructor(
    private readonly tok: Tokenizer,
    cfg: Json,
    extraEosIds: readonly number[],
    vocab: ReturnType<typeof checkTokenizerJson>,
    template: TemplateSource | null,
  ) {
    this.vocabSize = vocab.size;
    this.highestId = { id: vocab.id, token: vocab.token, field: vocab.field };
    this.maxTokenChars = vocab.maxChars;
    this.bosToken = tokenText(cfg.bos_token);
    this.eosToken = tokenText(cfg.eos_token);
    this.bosId = this.specialId('bos_token', this.bosToken);
    const eos = new Set(extraEosIds);
    this.eosId = this.specialId('eos_token', this.eosToken);
    if (this.eosId !== null) eos.add(this.eosId);
    this.eosIds = [...eos];
    this.chatTemplate = template?.text ?? null;
    this.chatTemplateSource = template ? { file: template.file, name: template.name } : null;
  }

  /** The id of a special token named by tokenizer_config.json, which tokenizer.json must hold. */
  private specialId(field: string, token: string | null): number | null {
    if (token === null) return null;
    const id = this.tok.token_to_id(token);
    if (id === undefined || id === null) throw new TokenizerLoadError('tokenizer_config.json', `${field} ${JSON.stringify(token)} is not a token of tokenizer.json`, field);
    return id;
  }

  /** Build from the parsed (or raw text) tokenizer.json and tokenizer_config.json. */
  static load(tokenizerJson: string | Json, tokenizerConfig: string | Json = {}, extraEosIds: readonly number[] = [], options: TokenizerLoadOptions = {}): TextTokenizer {
    const parse = (v: string | Json, file: string): unknown => {
      if (typeof v !== 'string') return v;
      try {
        return JSON.parse(v) as unknown;
      } catch (e) {
        throw new TokenizerLoadError(file, `is not valid JSON: ${(e as Error).message}`);
      }
    };
    const tj = parse(tokenizerJson, 'tokenizer.json');
    const tc = parse(tokenizerConfig, 'tokenizer_config.json');
    const vocab = checkTokenizerJson(tj);
    if (!isObject(tc)) throw new TokenizerLoadError('tokenizer_config.json', `must hold a JSON object, got ${describe(tc)}`);
    let tok: Tokenizer;
    try {
      tok = new Tokenizer(tj as never, tc as never);
    } catch (e) {
      throw new TokenizerLoadError('tokenizer.json', `could not be loaded: ${(e as Error).message}`);
    }
    const jinja = options.chatTemplateJinja;
    const template = typeof jinja === 'string' ? { file: 'chat_template.jinja', name: 'default', text: jinja } : pickChatTemplate(tc);
    const out = new TextTokenizer(tok, tc, extraEosIds, vocab, template);
    out.probe();
    return out;
  }

  /** Encode and decode a probe text, then render the chat template on a probe conversation. */
  private probe(): void {
    try {
      this.decode(this.encode('Hello, world! 123'));
    } catch (e) {
      throw new TokenizerLoadError('tokenizer.json', `fails on a probe text: ${(e as Error).message}`, 'model');
    }
    if (this.chatTemplate === null) return;
    this.compiled = compileTemplate({ ...this.chatTemplateSource!, text: this.chatTemplate });
    probeTemplate(this.compiled, { ...this.chatTemplateSource!, text: this.chatTemplate }, this.specials());
  }

  private specials() {
    return { bos_token: this.bosToken ?? '', eos_token: this.eosToken ?? '' };
  }

  /** The token text of an id, or undefined when the vocabulary has no such id. */
  tokenOf(id: number): string | undefined {
    return this.tok.id_to_token(id) ?? undefined;
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
  applyChatTemplate(messages: readonly ChatMessage[], addGenerationPrompt = true, vars: Record<string, unknown> = {}): string {
    if (this.chatTemplate === null) throw new ChatTemplateError('this model has no chat_template (completion mode)');
    const source = this.chatTemplateSource!;
    this.compiled ??= compileTemplate({ ...source, text: this.chatTemplate });
    return renderTemplate(this.compiled, source, messages, addGenerationPrompt, this.specials(), vars);
  }

  /** Prompt ids for a chat: template rendered, then encoded without adding BOS twice. */
  encodeChat(messages: readonly ChatMessage[], addGenerationPrompt = true): number[] {
    return this.encodeRendered(this.applyChatTemplate(messages, addGenerationPrompt));
  }

  /** Ids of a rendered chat prompt. Templates usually write the BOS token themselves; only add special tokens when they did not. */
  encodeRendered(text: string): number[] {
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
