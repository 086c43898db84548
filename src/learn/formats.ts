/**
 * Preference files → pairs. Formats:
 * - 'trl' (JSONL, or a JSON list): TRL's preference datasets. Standard {prompt, chosen, rejected}
 *   strings; conversational: prompt a message list and chosen/rejected each a list holding the one
 *   assistant answer; or implicit prompt: no prompt, chosen/rejected whole conversations that share
 *   every message but the last (the assistant answer).
 * - 'sharegpt-dpo' (JSON list, LLaMA-Factory's dpo_en_demo.json): {conversations: [{from:
 *   human|gpt|system, value}], chosen: {from: gpt, value}, rejected: {...}}.
 * - 'kto' (JSON list, kto_en_demo.json): {messages: [{role, content}], label: boolean}, the last
 *   message the answer: thumbs-up/down examples. They become pairs where one context has both a
 *   liked and a disliked answer (every liked one against every disliked one).
 * - 'v1-dpo' (JSONL, v1_dpo_demo.jsonl): {chosen_messages, rejected_messages}, each a conversation
 *   of {role, content: [{type: 'text', value}], loss_weight} sharing all but the last message.
 *
 *
 * Unpaired thumbs for KTO (parseThumbsFile; each record stays one example, nothing is paired):
 * - 'trl-kto' (JSONL, or a JSON list): TRL's unpaired preference datasets, {prompt, completion,
 *   label: boolean}; conversational: prompt a message list and completion a list holding the one
 *   assistant answer.
 * - 'kto' (as above): {messages, label}, the last message (the assistant's) the completion.
 * Errors, limits and record names as for pairs (strict: the first bad record throws).
 *
 * A file that is not JSON at all, or holds no records, throws PreferenceFormatError. A bad record
 * is skipped and reported as a PreferenceFormatError naming file, record (JSONL: "line N", 1-based;
 * JSON: "[i]", 0-based) and field; with `strict` the first one is thrown instead. With
 * `countTokens` and `maxResponseTokens`, a pair whose chosen or rejected answer is longer is
 * reported in `tooLong` and left out of `pairs` (training would have to cut it).
 *
 * Size limits, checked before a record is parsed, hashed or tokenized: a text field (prompt,
 * message content, answer) holds at most MAX_TEXT_CHARS (1 MiB) characters, a JSONL line at most
 * MAX_RECORD_CHARS (16 MiB); a longer one is a bad record naming the field (or the line).
 */
import type { ChatMessage } from '../model/tokenizer.ts';
import { LearnError } from './errors.ts';
import { boundedText, contextKeyOf, describe, MAX_TEXT_CHARS, normalizeMessages, PreferenceInputError, type PairContext, type PreferenceSet } from './pairs.ts';

export type PreferenceFormat = 'trl' | 'sharegpt-dpo' | 'kto' | 'v1-dpo';

/** A malformed file or record: `record` is "line N" (JSONL), "[i]" (JSON list) or "(file)". */
export class PreferenceFormatError extends LearnError {
  constructor(
    readonly file: string,
    readonly record: string,
    readonly field: string,
    readonly detail: string,
  ) {
    super('bad-preference-file', `${file} ${record}: ${field} ${detail}`);
  }
}

export type ImportedPair = PairContext & {
  chosen: string;
  rejected: string;
  /** The file it came from. */
  file: string;
  /** Its record: "line N" or "[i]" (KTO: the liked and the disliked record, "[i] + [j]"). */
  record: string;
};

export interface TooLongResponse {
  file: string;
  record: string;
  field: 'chosen' | 'rejected';
  tokens: number;
  limit: number;
}

export interface KtoStats {
  examples: number;
  liked: number;
  disliked: number;
  contexts: number;
  /** Contexts with at least one liked and one disliked answer (the ones that give pairs). */
  contextsWithBoth: number;
}

export interface ImportResult {
  file: string;
  format: PreferenceFormat;
  /** Records read (JSONL lines that are not blank, or JSON list entries). */
  records: number;
  pairs: ImportedPair[];
  skipped: PreferenceFormatError[];
  tooLong: TooLongResponse[];
  /** Only for 'kto'. */
  kto?: KtoStats;
}

export interface ImportOptions {
  /** Default: from the content (see detectFormat). */
  format?: PreferenceFormat;
  /** Throw the first bad record instead of skipping it. */
  strict?: boolean;
  /** Token count of a response (e.g. text => tokenizer.encode(text, false).length). */
  countTokens?: (text: string) => number;
  /** Longest chosen/rejected answer in tokens; needs countTokens. */
  maxResponseTokens?: number;
}

/** Longest JSONL line parsed as a record (16 MiB of characters); text fields have their own limit, MAX_TEXT_CHARS. */
export const MAX_RECORD_CHARS = 16 * 2 ** 20;

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** One record with its location, as read from the file. */
interface RawRecord {
  where: string;
  value: unknown;
}

/** A problem inside one record: caught per record and turned into a PreferenceFormatError. */
class RecordProblem extends Error {
  constructor(
    readonly field: string,
    readonly detail: string,
  ) {
    super(`${field} ${detail}`);
  }
}

// ---------------------------------------------------------------- reading records

function readRecords(file: string, text: string): { records: RawRecord[]; bad: PreferenceFormatError[] } {
  const trimmed = text.trimStart();
  if (trimmed === '') throw new PreferenceFormatError(file, '(file)', '(content)', 'is empty');
  if (trimmed.startsWith('[')) {
    let list: unknown;
    try {
      list = JSON.parse(text);
    } catch (e) {
      throw new PreferenceFormatError(file, '(file)', '(content)', `is not valid JSON: ${(e as Error).message}`);
    }
    if (!Array.isArray(list)) throw new PreferenceFormatError(file, '(file)', '(content)', 'must be a JSON list of records');
    if (list.length === 0) throw new PreferenceFormatError(file, '(file)', '(content)', 'holds no records');
    return { records: list.map((value, i) => ({ where: `[${i}]`, value })), bad: [] };
  }
  const lines = text.split(/\r?\n/);
  if (lines[lines.length - 1].trim() === '') lines.pop(); // the usual final newline
  const records: RawRecord[] = [];
  const bad: PreferenceFormatError[] = [];
  lines.forEach((line, i) => {
    const where = `line ${i + 1}`;
    if (line.length > MAX_RECORD_CHARS) return bad.push(new PreferenceFormatError(file, where, '(line)', `has ${line.length} characters; a record may hold at most ${MAX_RECORD_CHARS} (16 MiB), and each text field at most ${MAX_TEXT_CHARS} (1 MiB)`));
    if (line.trim() === '') return bad.push(new PreferenceFormatError(file, where, '(line)', 'is blank'));
    try {
      records.push({ where, value: JSON.parse(line) });
    } catch (e) {
      bad.push(new PreferenceFormatError(file, where, '(line)', `is not valid JSON: ${(e as Error).message}`));
    }
  });
  if (records.length === 0 && bad.length === 0) throw new PreferenceFormatError(file, '(file)', '(content)', 'holds no records');
  return { records, bad };
}

/** The format of a file from its first well-formed record's fields. */
export function detectFormat(file: string, first: unknown): PreferenceFormat {
  if (isRecord(first)) {
    if ('chosen_messages' in first || 'rejected_messages' in first) return 'v1-dpo';
    if ('conversations' in first) return 'sharegpt-dpo';
    if ('label' in first && 'messages' in first) return 'kto';
    if ('chosen' in first || 'rejected' in first) return 'trl';
  }
  throw new PreferenceFormatError(file, '(file)', '(format)', `is not recognised from the first record (${describe(first)}); expected TRL {prompt, chosen, rejected}, ShareGPT {conversations, chosen, rejected}, KTO {messages, label} or {chosen_messages, rejected_messages}`);
}

// ---------------------------------------------------------------- field helpers

/** Run a check that may throw PreferenceInputError (pairs.ts) and report it as a RecordProblem. */
function check<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof PreferenceInputError) throw new RecordProblem(e.field, e.message.slice(e.field.length + 1));
    throw e;
  }
}

function field(r: Json, name: string): unknown {
  if (!(name in r) || r[name] === undefined || r[name] === null) throw new RecordProblem(name, 'is missing');
  return r[name];
}

function text(v: unknown, name: string, allowEmpty = false): string {
  if (typeof v !== 'string') throw new RecordProblem(name, `must be a string, got ${describe(v)}`);
  check(() => boundedText(v, name));
  if (!allowEmpty && v.trim() === '') throw new RecordProblem(name, 'is empty');
  return v;
}

function messages(v: unknown, name: string): ChatMessage[] {
  return check(() => normalizeMessages(v, name));
}

/** The answer ending a conversation: its last message, which must be the assistant's. */
function lastAnswer(list: ChatMessage[], name: string): string {
  const last = list[list.length - 1];
  if (last.role !== 'assistant') throw new RecordProblem(`${name}[${list.length - 1}].role`, `is '${last.role}'; the last message must be the assistant's answer`);
  return text(last.content, `${name}[${list.length - 1}].content`);
}

/** Split two conversations sharing all but their last message into (context, chosen, rejected). */
function splitConversations(chosen: ChatMessage[], rejected: ChatMessage[], cName: string, rName: string): { context: ChatMessage[]; chosen: string; rejected: string } {
  if (chosen.length < 2) throw new RecordProblem(cName, 'must hold the prompt messages and the answer');
  if (chosen.length !== rejected.length) throw new RecordProblem(rName, `has ${rejected.length} messages, ${cName} ${chosen.length}; they must differ only in the last one`);
  for (let i = 0; i < chosen.length - 1; i++) {
    if (chosen[i].role !== rejected[i].role || chosen[i].content !== rejected[i].content) throw new RecordProblem(`${rName}[${i}]`, `differs from ${cName}[${i}]; only the last message (the answer) may differ`);
  }
  return { context: chosen.slice(0, -1), chosen: lastAnswer(chosen, cName), rejected: lastAnswer(rejected, rName) };
}

function distinct(chosen: string, rejected: string): void {
  if (chosen.trim() === rejected.trim()) throw new RecordProblem('chosen/rejected', 'are the same answer');
}

// ---------------------------------------------------------------- per-format records

type Parsed = PairContext & { chosen: string; rejected: string };

function trlRecord(r: Json): Parsed {
  const c = field(r, 'chosen');
  const rj = field(r, 'rejected');
  if (typeof c === 'string' || typeof rj === 'string') {
    const prompt = text(field(r, 'prompt'), 'prompt');
    return { prompt, chosen: text(c, 'chosen'), rejected: text(rj, 'rejected') };
  }
  const cm = messages(c, 'chosen');
  const rm = messages(rj, 'rejected');
  if (r.prompt === undefined || r.prompt === null) {
    const s = splitConversations(cm, rm, 'chosen', 'rejected');
    return { messages: s.context, chosen: s.chosen, rejected: s.rejected };
  }
  const prompt = messages(r.prompt, 'prompt');
  if (cm.length !== 1) throw new RecordProblem('chosen', `must hold exactly the one assistant answer after an explicit prompt, got ${cm.length} messages`);
  if (rm.length !== 1) throw new RecordProblem('rejected', `must hold exactly the one assistant answer after an explicit prompt, got ${rm.length} messages`);
  return { messages: prompt, chosen: lastAnswer(cm, 'chosen'), rejected: lastAnswer(rm, 'rejected') };
}

const SHAREGPT_ROLES: Record<string, string> = { human: 'user', gpt: 'assistant', system: 'system' };

function shareGptMessage(v: unknown, name: string): ChatMessage {
  if (!isRecord(v)) throw new RecordProblem(name, `must be a message {from, value}, got ${describe(v)}`);
  const from = v.from;
  if (typeof from !== 'string' || !(from in SHAREGPT_ROLES)) throw new RecordProblem(`${name}.from`, `must be one of ${Object.keys(SHAREGPT_ROLES).join(', ')}, got ${describe(from)}`);
  return { role: SHAREGPT_ROLES[from], content: text(v.value, `${name}.value`, from === 'system') };
}

function shareGptRecord(r: Json): Parsed {
  const conv = field(r, 'conversations');
  if (!Array.isArray(conv) || conv.length === 0) throw new RecordProblem('conversations', `must be a non-empty list of messages, got ${describe(conv)}`);
  const ctx = conv.map((m, i) => shareGptMessage(m, `conversations[${i}]`));
  if (ctx[ctx.length - 1].role !== 'user') throw new RecordProblem(`conversations[${ctx.length - 1}].from`, "must be 'human': the answers reply to the last human turn");
  const chosen = shareGptMessage(field(r, 'chosen'), 'chosen');
  const rejected = shareGptMessage(field(r, 'rejected'), 'rejected');
  if (chosen.role !== 'assistant') throw new RecordProblem('chosen.from', "must be 'gpt'");
  if (rejected.role !== 'assistant') throw new RecordProblem('rejected.from', "must be 'gpt'");
  return { messages: ctx, chosen: chosen.content, rejected: rejected.content };
}

/** v1 content: a string or parts [{type: 'text', value | text}] joined. */
function v1Messages(v: unknown, name: string): ChatMessage[] {
  if (!Array.isArray(v) || v.length === 0) throw new RecordProblem(name, `must be a non-empty list of messages, got ${describe(v)}`);
  return v.map((m, i) => {
    const at = `${name}[${i}]`;
    if (!isRecord(m)) throw new RecordProblem(at, `must be a message {role, content}, got ${describe(m)}`);
    if (typeof m.role !== 'string' || m.role === '') throw new RecordProblem(`${at}.role`, `must be a non-empty string, got ${describe(m.role)}`);
    if (typeof m.content === 'string') return { role: m.role, content: check(() => boundedText(m.content as string, `${at}.content`)) };
    if (!Array.isArray(m.content)) throw new RecordProblem(`${at}.content`, `must be a string or a list of text parts, got ${describe(m.content)}`);
    const parts = m.content.map((p, j) => {
      if (!isRecord(p) || p.type !== 'text') throw new RecordProblem(`${at}.content[${j}]`, "must be a text part {type: 'text', value}");
      const t = p.value ?? p.text;
      if (typeof t !== 'string') throw new RecordProblem(`${at}.content[${j}].value`, `must be a string, got ${describe(t)}`);
      return check(() => boundedText(t, `${at}.content[${j}].value`));
    });
    return { role: m.role, content: check(() => boundedText(parts.join(''), `${at}.content`)) };
  });
}

function v1Record(r: Json): Parsed {
  const cm = v1Messages(field(r, 'chosen_messages'), 'chosen_messages');
  const rm = v1Messages(field(r, 'rejected_messages'), 'rejected_messages');
  const s = splitConversations(cm, rm, 'chosen_messages', 'rejected_messages');
  return { messages: s.context, chosen: s.chosen, rejected: s.rejected };
}

interface KtoExample {
  context: ChatMessage[];
  answer: string;
  label: boolean;
  where: string;
}

function ktoRecord(r: Json): Omit<KtoExample, 'where'> {
  const list = messages(field(r, 'messages'), 'messages');
  if (list.length < 2) throw new RecordProblem('messages', 'must hold the prompt messages and the answer');
  const label = field(r, 'label');
  if (typeof label !== 'boolean') throw new RecordProblem('label', `must be true or false, got ${describe(label)}`);
  return { context: list.slice(0, -1), answer: lastAnswer(list, 'messages'), label };
}

export type { KtoExample };

/** Thumbs-style examples → pairs: per context, each liked answer against each disliked one. */
export function pairsFromThumbs(file: string, examples: readonly KtoExample[]): { pairs: ImportedPair[]; stats: KtoStats } {
  const byContext = new Map<string, KtoExample[]>();
  for (const e of examples) {
    const key = contextKeyOf({ messages: e.context });
    byContext.set(key, [...(byContext.get(key) ?? []), e]);
  }
  const pairs: ImportedPair[] = [];
  let contextsWithBoth = 0;
  for (const group of byContext.values()) {
    const liked = group.filter((e) => e.label);
    const disliked = group.filter((e) => !e.label);
    if (liked.length > 0 && disliked.length > 0) contextsWithBoth++;
    for (const l of liked) {
      for (const d of disliked) {
        if (l.answer.trim() !== d.answer.trim()) pairs.push({ messages: l.context, chosen: l.answer, rejected: d.answer, file, record: `${l.where} + ${d.where}` });
      }
    }
  }
  const liked = examples.filter((e) => e.label).length;
  return { pairs, stats: { examples: examples.length, liked, disliked: examples.length - liked, contexts: byContext.size, contextsWithBoth } };
}

// ---------------------------------------------------------------- unpaired thumbs (KTO)

export type ThumbsFormat = 'trl-kto' | 'kto';

/** One unpaired example read from a file. */
export type ImportedThumb = PairContext & {
  completion: string;
  /** true: desirable (thumbs-up). */
  label: boolean;
  file: string;
  record: string;
};

export interface ThumbsImportResult {
  file: string;
  format: ThumbsFormat;
  records: number;
  examples: ImportedThumb[];
  skipped: PreferenceFormatError[];
  /** Desirable / undesirable examples, prompts, and prompts with both labels (the reward-accuracy couples). */
  stats: KtoStats;
}

function label(r: Json): boolean {
  const v = field(r, 'label');
  if (typeof v !== 'boolean') throw new RecordProblem('label', `must be true or false, got ${describe(v)}`);
  return v;
}

function trlKtoRecord(r: Json): PairContext & { completion: string; label: boolean } {
  const c = field(r, 'completion');
  const l = label(r);
  if (typeof c === 'string') return { prompt: text(field(r, 'prompt'), 'prompt'), completion: text(c, 'completion'), label: l };
  const cm = messages(c, 'completion');
  if (cm.length !== 1) throw new RecordProblem('completion', `must hold exactly the one assistant answer after the prompt, got ${cm.length} messages`);
  return { messages: messages(field(r, 'prompt'), 'prompt'), completion: lastAnswer(cm, 'completion'), label: l };
}

/** The format of a thumbs file from its first well-formed record's fields. */
export function detectThumbsFormat(file: string, first: unknown): ThumbsFormat {
  if (isRecord(first) && 'label' in first) {
    if ('completion' in first) return 'trl-kto';
    if ('messages' in first) return 'kto';
  }
  throw new PreferenceFormatError(file, '(file)', '(format)', `is not recognised as unpaired thumbs from the first record (${describe(first)}); expected TRL KTO {prompt, completion, label} or KTO {messages, label}`);
}

/** Parse an unpaired thumbs file (TRL KTO or the KTO demo format) into examples, each kept alone. */
export function parseThumbsFile(file: string, content: string, o: { format?: ThumbsFormat; strict?: boolean } = {}): ThumbsImportResult {
  const { records, bad } = readRecords(file, content);
  const skipped: PreferenceFormatError[] = [];
  const skip = (e: PreferenceFormatError) => {
    if (o.strict) throw e;
    skipped.push(e);
  };
  bad.forEach(skip);
  if (records.length === 0 && bad.length > 0 && o.format === undefined) throw bad[0];
  const format = o.format ?? detectThumbsFormat(file, records[0]?.value);
  const examples: ImportedThumb[] = [];
  for (const { where, value } of records) {
    try {
      if (!isRecord(value)) throw new RecordProblem('(record)', `must be an object, got ${describe(value)}`);
      if (format === 'trl-kto') examples.push({ ...trlKtoRecord(value), file, record: where });
      else {
        const k = ktoRecord(value);
        examples.push({ messages: k.context, completion: k.answer, label: k.label, file, record: where });
      }
    } catch (e) {
      if (!(e instanceof RecordProblem)) throw e;
      skip(new PreferenceFormatError(file, where, e.field, e.detail));
    }
  }
  return { file, format, records: records.length, examples, skipped, stats: ktoStats(examples) };
}

/** Counts of a set of unpaired thumbs: liked / disliked, contexts, and contexts rated both ways. */
export function ktoStats(examples: readonly (PairContext & { label: boolean })[]): KtoStats {
  const byContext = new Map<string, { up: boolean; down: boolean }>();
  for (const e of examples) {
    const key = contextKeyOf(e.messages !== undefined ? { messages: e.messages } : { prompt: e.prompt });
    const g = byContext.get(key) ?? { up: false, down: false };
    if (e.label) g.up = true;
    else g.down = true;
    byContext.set(key, g);
  }
  const liked = examples.filter((e) => e.label).length;
  return { examples: examples.length, liked, disliked: examples.length - liked, contexts: byContext.size, contextsWithBoth: [...byContext.values()].filter((g) => g.up && g.down).length };
}

// ---------------------------------------------------------------- entry point

/** Parse one preference file's text. See the file comment for formats, errors and limits. */
export function parsePreferenceFile(file: string, content: string, o: ImportOptions = {}): ImportResult {
  if (o.maxResponseTokens !== undefined && (!o.countTokens || !(o.maxResponseTokens > 0))) throw new PreferenceFormatError(file, '(options)', 'maxResponseTokens', 'needs countTokens and a limit > 0');
  const { records, bad } = readRecords(file, content);
  const skipped: PreferenceFormatError[] = [];
  const skip = (e: PreferenceFormatError) => {
    if (o.strict) throw e;
    skipped.push(e);
  };
  bad.forEach(skip);
  // No record read (every line bad): its format cannot be told, the first bad line says why.
  if (records.length === 0 && bad.length > 0 && o.format === undefined) throw bad[0];
  const format = o.format ?? detectFormat(file, records[0]?.value);
  const result: ImportResult = { file, format, records: records.length, pairs: [], skipped, tooLong: [] };
  const kto: KtoExample[] = [];
  for (const { where, value } of records) {
    try {
      if (!isRecord(value)) throw new RecordProblem('(record)', `must be an object, got ${describe(value)}`);
      if (format === 'kto') {
        kto.push({ ...ktoRecord(value), where });
        continue;
      }
      const p = format === 'trl' ? trlRecord(value) : format === 'sharegpt-dpo' ? shareGptRecord(value) : v1Record(value);
      distinct(p.chosen, p.rejected);
      if (withinLimit(result, where, p, o)) result.pairs.push({ ...p, file, record: where });
    } catch (e) {
      if (!(e instanceof RecordProblem)) throw e;
      skip(new PreferenceFormatError(file, where, e.field, e.detail));
    }
  }
  if (format === 'kto') {
    const { pairs, stats } = pairsFromThumbs(file, kto);
    result.kto = stats;
    result.pairs = pairs.filter((p) => withinLimit(result, p.record, p, o));
  }
  return result;
}

/** False (and reported in tooLong) when an answer is over the token limit. */
function withinLimit(result: ImportResult, where: string, p: { chosen: string; rejected: string }, o: ImportOptions): boolean {
  if (o.maxResponseTokens === undefined || !o.countTokens) return true;
  let ok = true;
  for (const f of ['chosen', 'rejected'] as const) {
    const tokens = o.countTokens(p[f]);
    if (tokens > o.maxResponseTokens) {
      result.tooLong.push({ file: result.file, record: where, field: f, tokens, limit: o.maxResponseTokens });
      ok = false;
    }
  }
  return ok;
}

/** A countTokens callback from a tokenizer: response tokens without BOS/EOS added. */
export function tokenCounter(tok: { encode(text: string, addSpecialTokens?: boolean): number[] }): (text: string) => number {
  return (text) => tok.encode(text, false).length;
}

/** Add imported pairs to a set (source 'import'); counts what was new and what was a duplicate. */
export function importPairs(set: PreferenceSet, pairs: readonly ImportedPair[], createdAt?: number): { added: number; duplicates: number } {
  let added = 0;
  for (const p of pairs) {
    const context = p.messages !== undefined ? { messages: p.messages } : { prompt: p.prompt };
    if (set.add({ ...context, chosen: p.chosen, rejected: p.rejected, createdAt, source: 'import' }).added) added++;
  }
  return { added, duplicates: pairs.length - added };
}
