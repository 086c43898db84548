/**
 * Serving traces for `mace bench serve`: when chat requests arrive (with how long their prompt and
 * answer are) and when preference pairs arrive, as versioned JSON a replay engine can follow exactly.
 *
 *   { "version": 1, "seed": 7, "durationS": 60,
 *     "requests": [{ "id": "r0", "at": 0.42, "promptTokens": 32, "maxTokens": 24 }, ...],
 *     "feedback": [{ "id": "p0", "at": 3.9, "requestId": "r0", "chosenTokens": 24, "rejectedTokens": 40 }, ...] }
 *
 * Replay: submit request i at `at` seconds from the start with the prompt requestPrompt(trace, i,
 * vocab) and max_tokens = maxTokens with EOS ignored (exactly maxTokens output tokens); submit pair j
 * at its `at` as feedbackPair(trace, j, vocab): the prompt of the request it names plus two responses
 * of the given lengths. Token ids absent from the file are drawn from the trace's seed (same trace,
 * same ids, within any vocabulary), so traces stay small and model-independent; a file may also
 * carry explicit ids (`prompt`, `chosen`, `rejected`), checked against the vocabulary at replay.
 *
 * generateTrace makes Poisson traces: exponential inter-arrival times at `ratePerS`, lengths uniform
 * in ranges, and each answer yields a pair with probability `retrainRate`, arriving after the answer
 * would plausibly be done (maxTokens × assumedTokenS) plus a think time. Each request draws from its
 * own seeded streams, so traces at different retrain rates share their arrivals and lengths, and the
 * pairs at a lower rate are a subset of those at a higher one: runs at 10%..50% differ only in feedback.
 */
import { mulberry32 } from '../../src/util/prng.ts';

export const TRACE_VERSION = 1;

export interface TraceRequest {
  id: string;
  /** Seconds from the start of the replay. */
  at: number;
  promptTokens: number;
  /** Output tokens to force (EOS ignored). */
  maxTokens: number;
  /** Explicit prompt ids (length promptTokens); drawn from the seed when absent. */
  prompt?: number[];
}

export interface TraceFeedback {
  id: string;
  /** Seconds from the start; never before the request it names. */
  at: number;
  /** The request whose prompt the pair shares. */
  requestId: string;
  chosenTokens: number;
  rejectedTokens: number;
  /** Explicit response ids (lengths chosenTokens / rejectedTokens); drawn from the seed when absent. */
  chosen?: number[];
  rejected?: number[];
}

export interface IntRange {
  min: number;
  max: number;
}

export interface NumRange {
  min: number;
  max: number;
}

/** How generateTrace made a trace (kept in the file so a report can state the load). */
export interface TraceGeneratorParams {
  seed: number;
  /** Requests arrive in [0, durationS). */
  durationS: number;
  /** Poisson arrival rate: the offered load in requests per second. */
  ratePerS: number;
  /** Prompt lengths, uniform integers in [min, max]. */
  promptTokens: IntRange;
  /** Answer lengths (and the second response of a pair), uniform integers in [min, max]. */
  answerTokens: IntRange;
  /** Share of answers that yield a preference pair, in [0, 1]. */
  retrainRate: number;
  /** Seconds per answer token assumed to place a pair after its answer is done. */
  assumedTokenS: number;
  /** The user's think time between the answer and the feedback, uniform in [min, max] seconds. */
  thinkS: NumRange;
}

export interface Trace {
  version: typeof TRACE_VERSION;
  /** Seeds the token ids that the file does not list. */
  seed: number;
  durationS: number;
  /** In arrival order. */
  requests: TraceRequest[];
  /** In arrival order. */
  feedback: TraceFeedback[];
  generator?: TraceGeneratorParams;
}

/**
 * Defaults of the bare `mace bench serve`: a minute of chat at one request every two seconds with
 * short prompts and answers and a 30% retrain rate (about 30 requests and 9 pairs), sized for a
 * small model on SwiftShader; every field is a parameter.
 */
export const DEFAULT_TRACE_PARAMS: Readonly<TraceGeneratorParams> = Object.freeze({
  seed: 1,
  durationS: 60,
  ratePerS: 0.5,
  promptTokens: Object.freeze({ min: 16, max: 64 }),
  answerTokens: Object.freeze({ min: 16, max: 64 }),
  retrainRate: 0.3,
  assumedTokenS: 0.05,
  thinkS: Object.freeze({ min: 1, max: 5 }),
});

/** A trace (or generator setting) that cannot be used: names the field, e.g. `requests[3].at`. */
export class TraceError extends Error {
  readonly code = 'bad-trace';
  constructor(
    readonly field: string,
    detail: string,
    readonly file?: string,
  ) {
    super(`${file ? `${file}: ` : ''}${field} ${detail}`);
    this.name = 'TraceError';
  }
}

// ---------------------------------------------------------------- validation

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

const TOP_FIELDS = ['version', 'seed', 'durationS', 'requests', 'feedback', 'generator'];
const REQUEST_FIELDS = ['id', 'at', 'promptTokens', 'maxTokens', 'prompt'];
const FEEDBACK_FIELDS = ['id', 'at', 'requestId', 'chosenTokens', 'rejectedTokens', 'chosen', 'rejected'];

class Checker {
  constructor(readonly file?: string) {}

  fail(field: string, detail: string): never {
    throw new TraceError(field, detail, this.file);
  }

  object(v: unknown, field: string, known: string[]): Obj {
    if (!isObj(v)) this.fail(field, 'must be an object');
    // A bracketed field is the top level: its keys are named bare ('seed', not '(trace).seed').
    for (const k of Object.keys(v)) if (!known.includes(k)) this.fail(field.startsWith('(') ? k : `${field}.${k}`, `is not a field here (known: ${known.join(', ')})`);
    return v;
  }

  int(v: unknown, field: string, lo: number, hi = Number.MAX_SAFE_INTEGER): number {
    if (typeof v !== 'number' || !Number.isInteger(v)) this.fail(field, `must be an integer, got ${JSON.stringify(v)}`);
    if (v < lo) this.fail(field, `must be >= ${lo}, got ${v}`);
    if (v > hi) this.fail(field, `must be <= ${hi}, got ${v}`);
    return v;
  }

  num(v: unknown, field: string, lo: number, hi = Infinity, loOpen = false): number {
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(field, `must be a finite number, got ${JSON.stringify(v)}`);
    if (loOpen ? v <= lo : v < lo) this.fail(field, `must be ${loOpen ? '>' : '>='} ${lo}, got ${v}`);
    if (v > hi) this.fail(field, `must be <= ${hi}, got ${v}`);
    return v;
  }

  id(v: unknown, field: string): string {
    if (typeof v !== 'string' || v.length === 0) this.fail(field, `must be a non-empty string, got ${JSON.stringify(v)}`);
    return v;
  }

  ids(v: unknown, field: string, length: number, lengthField: string): number[] {
    if (!Array.isArray(v)) this.fail(field, 'must be an array of token ids');
    if (v.length !== length) this.fail(field, `has ${v.length} ids but ${lengthField} = ${length}`);
    v.forEach((id, i) => this.int(id, `${field}[${i}]`, 0));
    return v as number[];
  }

  array(v: unknown, field: string): unknown[] {
    if (!Array.isArray(v)) this.fail(field, 'must be an array');
    return v;
  }
}

function checkRequest(c: Checker, v: unknown, i: number, durationS: number): TraceRequest {
  const f = `requests[${i}]`;
  const o = c.object(v, f, REQUEST_FIELDS);
  const promptTokens = c.int(o.promptTokens, `${f}.promptTokens`, 1);
  const r: TraceRequest = { id: c.id(o.id, `${f}.id`), at: c.num(o.at, `${f}.at`, 0, durationS), promptTokens, maxTokens: c.int(o.maxTokens, `${f}.maxTokens`, 1) };
  if (o.prompt !== undefined) r.prompt = [...c.ids(o.prompt, `${f}.prompt`, promptTokens, 'promptTokens')];
  return r;
}

function checkFeedback(c: Checker, v: unknown, j: number, requests: Map<string, TraceRequest>): TraceFeedback {
  const f = `feedback[${j}]`;
  const o = c.object(v, f, FEEDBACK_FIELDS);
  const id = c.id(o.id, `${f}.id`);
  const at = c.num(o.at, `${f}.at`, 0);
  const requestId = c.id(o.requestId, `${f}.requestId`);
  const req = requests.get(requestId);
  if (!req) c.fail(`${f}.requestId`, `'${requestId}' names no request`);
  if (at < req.at) c.fail(`${f}.at`, `= ${at} is before its request '${requestId}' arrives (${req.at})`);
  const chosenTokens = c.int(o.chosenTokens, `${f}.chosenTokens`, 1);
  const rejectedTokens = c.int(o.rejectedTokens, `${f}.rejectedTokens`, 1);
  const p: TraceFeedback = { id, at, requestId, chosenTokens, rejectedTokens };
  if (o.chosen !== undefined) p.chosen = [...c.ids(o.chosen, `${f}.chosen`, chosenTokens, 'chosenTokens')];
  if (o.rejected !== undefined) p.rejected = [...c.ids(o.rejected, `${f}.rejected`, rejectedTokens, 'rejectedTokens')];
  return p;
}

function checkOrder(c: Checker, list: { id: string; at: number }[], what: 'requests' | 'feedback'): void {
  const seen = new Map<string, number>();
  list.forEach((x, i) => {
    const first = seen.get(x.id);
    if (first !== undefined) c.fail(`${what}[${i}].id`, `'${x.id}' repeats ${what}[${first}].id`);
    seen.set(x.id, i);
    if (i > 0 && x.at < list[i - 1].at) c.fail(`${what}[${i}].at`, `= ${x.at} is before ${what}[${i - 1}].at = ${list[i - 1].at}: ${what} must be in arrival order`);
  });
}

/** Check a parsed trace; returns a copy with only the known fields. Throws TraceError naming the field. */
export function validateTrace(value: unknown, file?: string): Trace {
  const c = new Checker(file);
  const o = c.object(value, '(trace)', TOP_FIELDS);
  if (o.version !== TRACE_VERSION) c.fail('version', `must be ${TRACE_VERSION}, got ${JSON.stringify(o.version)}`);
  const seed = c.int(o.seed, 'seed', 0, 0xffffffff);
  const durationS = c.num(o.durationS, 'durationS', 0, Infinity, true);
  const rawRequests = c.array(o.requests, 'requests');
  if (rawRequests.length === 0) c.fail('requests', 'must hold at least one request');
  const requests = rawRequests.map((r, i) => checkRequest(c, r, i, durationS));
  checkOrder(c, requests, 'requests');
  const byId = new Map(requests.map((r) => [r.id, r]));
  const feedback = c.array(o.feedback, 'feedback').map((p, j) => checkFeedback(c, p, j, byId));
  checkOrder(c, feedback, 'feedback');
  const trace: Trace = { version: TRACE_VERSION, seed, durationS, requests, feedback };
  if (o.generator !== undefined) trace.generator = checkParams(o.generator, 'generator', file);
  return trace;
}

/** A trace file's text → Trace. */
export function parseTrace(text: string, file?: string): Trace {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new TraceError('(json)', `is not valid JSON: ${(e as Error).message}`, file);
  }
  return validateTrace(value, file);
}

// ---------------------------------------------------------------- token ids

/** The vocabulary ids are drawn from: [0, size) minus `exclude` (BOS/EOS: a forced answer must not depend on them). */
export interface TokenVocab {
  size: number;
  exclude?: readonly number[];
}

/** Stream tags of the seeded draws (one stream per use and index). */
const STREAM = { arrivals: 1, lengths: 2, feedback: 3, prompt: 4, chosen: 5, rejected: 6 } as const;

/** A u32 seed for (seed, stream, index): murmur3's finalizer over the three mixed together. */
export function streamSeed(seed: number, stream: number, index: number): number {
  let h = (seed ^ Math.imul(stream, 0x9e3779b9) ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

function checkVocab(v: TokenVocab): Set<number> {
  if (!Number.isInteger(v.size) || v.size < 1) throw new TraceError('vocab.size', `must be an integer >= 1, got ${v.size}`);
  const exclude = new Set((v.exclude ?? []).filter((id) => Number.isInteger(id) && id >= 0 && id < v.size));
  if (exclude.size >= v.size) throw new TraceError('vocab.exclude', `leaves no token id of the ${v.size} to draw from`);
  return exclude;
}

function drawIds(n: number, seed: number, size: number, exclude: Set<number>): number[] {
  const rng = mulberry32(seed);
  const out: number[] = [];
  while (out.length < n) {
    const id = Math.floor(rng() * size);
    if (!exclude.has(id)) out.push(id);
  }
  return out;
}

function checkedIds(ids: number[], field: string, size: number): number[] {
  ids.forEach((id, i) => {
    if (id >= size) throw new TraceError(`${field}[${i}]`, `= ${id} is not a token id < vocab ${size}`);
  });
  return [...ids];
}

function requestAt(trace: Trace, index: number): TraceRequest {
  const r = trace.requests[index];
  if (!r) throw new TraceError('requests', `has no index ${index} (${trace.requests.length} requests)`);
  return r;
}

/** Request `index`'s prompt ids: the file's, checked against the vocabulary, or drawn from the trace's seed. */
export function requestPrompt(trace: Trace, index: number, vocab: TokenVocab): number[] {
  const exclude = checkVocab(vocab);
  const r = requestAt(trace, index);
  if (r.prompt) return checkedIds(r.prompt, `requests[${index}].prompt`, vocab.size);
  return drawIds(r.promptTokens, streamSeed(trace.seed, STREAM.prompt, index), vocab.size, exclude);
}

/** Token ids of a preference pair: the named request's prompt and two responses. */
export interface TracePair {
  prompt: number[];
  chosen: number[];
  rejected: number[];
}

/** Feedback `index` as a token pair (ids from the file, or drawn from the trace's seed). */
export function feedbackPair(trace: Trace, index: number, vocab: TokenVocab): TracePair {
  const exclude = checkVocab(vocab);
  const p = trace.feedback[index];
  if (!p) throw new TraceError('feedback', `has no index ${index} (${trace.feedback.length} pairs)`);
  const reqIndex = trace.requests.findIndex((r) => r.id === p.requestId);
  if (reqIndex < 0) throw new TraceError(`feedback[${index}].requestId`, `'${p.requestId}' names no request`);
  const f = `feedback[${index}]`;
  return {
    prompt: requestPrompt(trace, reqIndex, vocab),
    chosen: p.chosen ? checkedIds(p.chosen, `${f}.chosen`, vocab.size) : drawIds(p.chosenTokens, streamSeed(trace.seed, STREAM.chosen, index), vocab.size, exclude),
    rejected: p.rejected ? checkedIds(p.rejected, `${f}.rejected`, vocab.size) : drawIds(p.rejectedTokens, streamSeed(trace.seed, STREAM.rejected, index), vocab.size, exclude),
  };
}

/** Longest request (prompt + answer) and longest pair sequence (prompt + longer response): what the engine and trainer must hold. */
export function traceMaxTokens(trace: Trace): { request: number; pair: number } {
  const byId = new Map(trace.requests.map((r) => [r.id, r]));
  const request = Math.max(...trace.requests.map((r) => r.promptTokens + r.maxTokens));
  const pair = Math.max(0, ...trace.feedback.map((p) => byId.get(p.requestId)!.promptTokens + Math.max(p.chosenTokens, p.rejectedTokens)));
  return { request, pair };
}

/** One thing the replay does at a time: submit request `index` or pair `index`. */
export type TraceEvent = { kind: 'request'; at: number; index: number } | { kind: 'feedback'; at: number; index: number };

/** Requests and pairs merged in time order (at equal times a request goes first, then by index). */
export function traceEvents(trace: Trace): TraceEvent[] {
  const events: TraceEvent[] = [
    ...trace.requests.map((r, index) => ({ kind: 'request' as const, at: r.at, index })),
    ...trace.feedback.map((p, index) => ({ kind: 'feedback' as const, at: p.at, index })),
  ];
  const rank = (e: TraceEvent) => (e.kind === 'request' ? 0 : 1);
  return events.sort((a, b) => a.at - b.at || rank(a) - rank(b) || a.index - b.index);
}

// ---------------------------------------------------------------- generator

function checkRange(c: Checker, v: unknown, field: string, int: boolean): { min: number; max: number } {
  const o = c.object(v, field, ['min', 'max']);
  const min = int ? c.int(o.min, `${field}.min`, 1) : c.num(o.min, `${field}.min`, 0);
  const max = int ? c.int(o.max, `${field}.max`, 1) : c.num(o.max, `${field}.max`, 0);
  if (max < min) c.fail(`${field}.max`, `= ${max} is below ${field}.min = ${min}`);
  return { min, max };
}

function checkParams(v: unknown, prefix: string, file?: string): TraceGeneratorParams {
  const c = new Checker(file);
  const f = (name: string) => (prefix ? `${prefix}.${name}` : name);
  const o = c.object(v, prefix || '(params)', Object.keys(DEFAULT_TRACE_PARAMS));
  return {
    seed: c.int(o.seed, f('seed'), 0, 0xffffffff),
    durationS: c.num(o.durationS, f('durationS'), 0, Infinity, true),
    ratePerS: c.num(o.ratePerS, f('ratePerS'), 0, Infinity, true),
    promptTokens: checkRange(c, o.promptTokens, f('promptTokens'), true),
    answerTokens: checkRange(c, o.answerTokens, f('answerTokens'), true),
    retrainRate: c.num(o.retrainRate, f('retrainRate'), 0, 1),
    assumedTokenS: c.num(o.assumedTokenS, f('assumedTokenS'), 0),
    thinkS: checkRange(c, o.thinkS, f('thinkS'), false),
  };
}

/** Milliseconds resolution keeps files short and times exact in JSON. */
const roundS = (s: number) => Math.round(s * 1000) / 1000;

const uniformInt = (rng: () => number, r: IntRange) => r.min + Math.floor(rng() * (r.max - r.min + 1));

/**
 * A Poisson trace. Missing parameters take DEFAULT_TRACE_PARAMS; every given one is checked
 * (TraceError naming it). Request i is `r{i}`, its pair (if any) `p{i}`.
 */
export function generateTrace(params: Partial<TraceGeneratorParams> = {}): Trace {
  const given = Object.fromEntries(Object.entries(params).filter(([, v]) => v !== undefined));
  const p = checkParams({ ...DEFAULT_TRACE_PARAMS, ...given }, '');
  const arrivals = mulberry32(streamSeed(p.seed, STREAM.arrivals, 0));
  const requests: TraceRequest[] = [];
  const pending: { fb: TraceFeedback; index: number }[] = [];
  for (let t = -Math.log(1 - arrivals()) / p.ratePerS; t < p.durationS; t += -Math.log(1 - arrivals()) / p.ratePerS) {
    const i = requests.length;
    const lengths = mulberry32(streamSeed(p.seed, STREAM.lengths, i));
    const req: TraceRequest = { id: `r${i}`, at: Math.min(roundS(t), p.durationS), promptTokens: uniformInt(lengths, p.promptTokens), maxTokens: uniformInt(lengths, p.answerTokens) };
    const rejectedTokens = uniformInt(lengths, p.answerTokens);
    requests.push(req);
    // Both draws are taken for every request, so a pair's time does not depend on the rate.
    const fb = mulberry32(streamSeed(p.seed, STREAM.feedback, i));
    const yields = fb() < p.retrainRate;
    const think = p.thinkS.min + fb() * (p.thinkS.max - p.thinkS.min);
    if (yields) pending.push({ index: i, fb: { id: `p${i}`, at: roundS(req.at + req.maxTokens * p.assumedTokenS + think), requestId: req.id, chosenTokens: req.maxTokens, rejectedTokens } });
  }
  if (requests.length === 0) throw new TraceError('ratePerS', `= ${p.ratePerS} gives no arrival in ${p.durationS} s (seed ${p.seed}): raise the rate or the duration`);
  const feedback = pending.sort((a, b) => a.fb.at - b.fb.at || a.index - b.index).map((x) => x.fb);
  return { version: TRACE_VERSION, seed: p.seed, durationS: p.durationS, requests, feedback, generator: p };
}

/** What a trace offers: counts, mean lengths, the realised retrain rate and load, the last event. */
export interface TraceSummary {
  requests: number;
  pairs: number;
  retrainRate: number;
  ratePerS: number;
  meanPromptTokens: number;
  meanAnswerTokens: number;
  lastEventS: number;
}

export function summarizeTrace(trace: Trace): TraceSummary {
  const n = trace.requests.length;
  const sum = (f: (r: TraceRequest) => number) => trace.requests.reduce((a, r) => a + f(r), 0);
  const lastEventS = Math.max(trace.requests[n - 1]?.at ?? 0, trace.feedback[trace.feedback.length - 1]?.at ?? 0);
  return { requests: n, pairs: trace.feedback.length, retrainRate: n ? trace.feedback.length / n : 0, ratePerS: n / trace.durationS, meanPromptTokens: n ? sum((r) => r.promptTokens) / n : 0, meanAnswerTokens: n ? sum((r) => r.maxTokens) / n : 0, lastEventS };
}
