/**
 * Chat templates with @huggingface/jinja: compiled once, checked at load by rendering a probe
 * conversation, and rendered per request. Errors say which file and which template, carry the
 * jinja library's own message, and the template line when it can be found.
 *
 * The probe is the conversation every chat model must take: system, user, assistant, user, with
 * add_generation_prompt. A template may refuse a conversation shape on purpose through
 * raise_exception (Mistral's first templates refuse a system message: roles must alternate
 * user/assistant); such a refusal is not a broken template, so the probe then drops the system
 * message, and then keeps one user message. Any other failure (a syntax error, an undefined
 * attribute, a filter the library lacks) is a broken template: ChatTemplateLoadError.
 */
import { parse, Template, tokenize } from '@huggingface/jinja';

export interface TemplateSource {
  /** tokenizer_config.json or chat_template.jinja */
  file: string;
  /** 'default', or the entry's name in a list of named templates */
  name: string;
  text: string;
}

interface Where {
  file: string;
  name: string;
}

/** A chat template refused or failed on a request's messages (or the model has none). */
export class ChatTemplateError extends Error {
  readonly code = 'chat-template';
  constructor(
    detail: string,
    readonly file?: string,
    readonly template?: string,
  ) {
    super(`chat template: ${detail}${file ? ` (${file}, template '${template}')` : ''}`);
    this.name = 'ChatTemplateError';
  }
}

/** The model's chat template does not parse, or fails on the probe conversation: found at load. */
export class ChatTemplateLoadError extends Error {
  readonly code = 'bad-chat-template';
  constructor(
    readonly file: string,
    readonly template: string,
    /** 1-based line of the template, or null when the library's error does not tell. */
    readonly line: number | null,
    /** The jinja library's message. */
    readonly jinjaMessage: string,
    what: string,
  ) {
    super(`${file}: chat template '${template}'${line === null ? '' : ` (line ${line})`} ${what}: ${jinjaMessage}`);
    this.name = 'ChatTemplateLoadError';
  }
}

/** raise_exception(...) of a template: a deliberate refusal of the conversation. */
class TemplateRaise extends Error {}

/**
 * The library defines raise_exception itself (as a plain Error, and a render cannot redefine a
 * global), so templates are compiled with the calls renamed to this function of ours, whose
 * errors are told apart from the template's own failures.
 */
const RAISE = '__mace_raise_exception';
const withOwnRaise = (text: string) => text.replace(/\braise_exception\b/g, RAISE);

const OPTIONS = { lstrip_blocks: true, trim_blocks: true };
/**
 * Most characters a probe conversation (~80 characters of messages) may render to. Real templates
 * add role markers and at most a default system prompt or tool preamble of a few KiB.
 */
export const MAX_PROBE_RENDER_CHARS = 64 * 1024;
const MAX_LOCATE_LINES = 2000;

/**
 * The first line whose prefix of the template (lines 1..k) already fails to lex/parse with the
 * same message as the whole template: the line of a syntax error (the last line when only the
 * whole template fails so, e.g. a block never closed). Null for templates over 2000 lines.
 */
export function syntaxErrorLine(text: string, message: string): number | null {
  const lines = text.split('\n');
  if (lines.length > MAX_LOCATE_LINES) return null;
  for (let k = 1; k < lines.length; k++) {
    try {
      parse(tokenize(withOwnRaise(lines.slice(0, k).join('\n')), OPTIONS));
    } catch (e) {
      if ((e as Error).message === message) return k;
    }
  }
  return lines.length;
}

/** Parse a template; a syntax error is a ChatTemplateLoadError with the line. */
export function compileTemplate(source: TemplateSource): Template {
  try {
    return new Template(withOwnRaise(source.text));
  } catch (e) {
    const msg = (e as Error).message;
    throw new ChatTemplateLoadError(source.file, source.name, syntaxErrorLine(source.text, msg), msg, 'does not parse');
  }
}

type Specials = { bos_token: string; eos_token: string };

/** `vars`: further template variables (a request's `tools`). */
function render(t: Template, messages: readonly { role: string; content: string }[], addGenerationPrompt: boolean, specials: Specials, vars: Record<string, unknown> = {}): string {
  const out: unknown = t.render({
    ...vars,
    messages: messages.map((m) => ({ ...m })),
    add_generation_prompt: addGenerationPrompt,
    ...specials,
    [RAISE]: (message: unknown) => {
      throw new TemplateRaise(String(message));
    },
  });
  if (typeof out !== 'string') throw new Error(`rendered ${out === null ? 'null' : typeof out}, not text`);
  return out;
}

/** Render for a request; every failure is a ChatTemplateError naming the file and template. */
export function renderTemplate(t: Template, where: Where, messages: readonly { role: string; content: string }[], addGenerationPrompt: boolean, specials: Specials, vars: Record<string, unknown> = {}): string {
  try {
    return render(t, messages, addGenerationPrompt, specials, vars);
  } catch (e) {
    throw new ChatTemplateError((e as Error).message, where.file, where.name);
  }
}

const PROBES: { what: string; messages: { role: string; content: string }[] }[] = [
  {
    what: 'system, user, assistant, user',
    messages: [
      { role: 'system', content: 'You are a helpful assistant.' },
      { role: 'user', content: 'Hello!' },
      { role: 'assistant', content: 'Hi! How can I help?' },
      { role: 'user', content: 'Tell me a story.' },
    ],
  },
  {
    what: 'user, assistant, user',
    messages: [
      { role: 'user', content: 'Hello!' },
      { role: 'assistant', content: 'Hi! How can I help?' },
      { role: 'user', content: 'Tell me a story.' },
    ],
  },
  { what: 'one user message', messages: [{ role: 'user', content: 'Hello!' }] },
];

/**
 * Render the probe conversations (see the file comment); returns the first rendering. Throws
 * ChatTemplateLoadError when the template fails other than by raise_exception, or refuses even
 * a single user message.
 */
export function probeTemplate(t: Template, source: TemplateSource, specials: Specials): string {
  let refusal = '';
  for (const p of PROBES) {
    let out: string;
    try {
      out = render(t, p.messages, true, specials);
    } catch (e) {
      const msg = (e as Error).message;
      if (!(e instanceof TemplateRaise)) throw new ChatTemplateLoadError(source.file, source.name, null, msg, `fails on a probe conversation (${p.what}, add_generation_prompt)`);
      refusal = msg;
      continue;
    }
    // A template whose output does not follow its messages (a loop over a constant range, content
    // repeated many times) would blow every request up the same way: refused here, once, rather
    // than rendered for each request and refused after (src/model/prompt.ts bounds requests).
    if (out.length > MAX_PROBE_RENDER_CHARS) {
      const chars = p.messages.reduce((a, m) => a + m.content.length, 0);
      throw new ChatTemplateLoadError(source.file, source.name, null, `${out.length} characters from ${chars} characters of messages`, `expands a probe conversation (${p.what}) past ${MAX_PROBE_RENDER_CHARS} characters, so its output does not follow its messages`);
    }
    return out;
  }
  throw new ChatTemplateLoadError(source.file, source.name, null, refusal, 'refuses every probe conversation, even one user message (raise_exception)');
}
