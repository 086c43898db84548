/**
 * Serving traces (bench/serve/trace.ts): the generator's arrivals, lengths and feedback times follow
 * its definition exactly; retrain rates share arrivals and nest their pairs; token ids are seeded,
 * in the vocabulary and pinned (a version-1 trace must replay the same ids forever); every malformed
 * field is a TraceError naming it.
 */
import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../../src/util/prng.ts';
import {
  DEFAULT_TRACE_PARAMS,
  feedbackPair,
  generateTrace,
  parseTrace,
  requestPrompt,
  streamSeed,
  summarizeTrace,
  traceEvents,
  traceMaxTokens,
  TraceError,
  validateTrace,
  type Trace,
} from '../../bench/serve/trace.ts';

/** A small hand-written trace the validation cases mutate. */
function handTrace(): Trace {
  return {
    version: 1,
    seed: 3,
    durationS: 10,
    requests: [
      { id: 'a', at: 0, promptTokens: 4, maxTokens: 3 },
      { id: 'b', at: 1.5, promptTokens: 2, maxTokens: 5, prompt: [7, 8] },
      { id: 'c', at: 1.5, promptTokens: 6, maxTokens: 2 },
      { id: 'd', at: 9, promptTokens: 1, maxTokens: 1 },
    ],
    feedback: [
      { id: 'p0', at: 2, requestId: 'a', chosenTokens: 3, rejectedTokens: 4 },
      { id: 'p1', at: 12, requestId: 'b', chosenTokens: 5, rejectedTokens: 1, chosen: [1, 2, 3, 4, 5] },
    ],
  };
}

function traceError(f: () => unknown): TraceError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(TraceError);
    return e as TraceError;
  }
  throw new Error('expected a TraceError');
}

describe('generateTrace', () => {
  it('follows its definition exactly: exponential gaps from the arrival stream, lengths and feedback from per-request streams', () => {
    const p = { seed: 11, durationS: 20, ratePerS: 1.5, promptTokens: { min: 3, max: 9 }, answerTokens: { min: 5, max: 7 }, retrainRate: 0.4, assumedTokenS: 0.02, thinkS: { min: 1, max: 2 } };
    const trace = generateTrace(p);
    // The arrival times, recomputed from the definition with the same streams.
    const arrivals = mulberry32(streamSeed(11, 1, 0));
    const expectedAt: number[] = [];
    for (let t = -Math.log(1 - arrivals()) / 1.5; t < 20; t += -Math.log(1 - arrivals()) / 1.5) expectedAt.push(Math.round(t * 1000) / 1000);
    expect(trace.requests.map((r) => r.at)).toEqual(expectedAt);
    const expectedPairs: { id: string; at: number; requestId: string; chosenTokens: number; rejectedTokens: number }[] = [];
    trace.requests.forEach((r, i) => {
      expect(r.id).toBe(`r${i}`);
      const lengths = mulberry32(streamSeed(11, 2, i));
      expect(r.promptTokens).toBe(3 + Math.floor(lengths() * 7));
      expect(r.maxTokens).toBe(5 + Math.floor(lengths() * 3));
      const rejectedTokens = 5 + Math.floor(lengths() * 3);
      const fb = mulberry32(streamSeed(11, 3, i));
      const yields = fb() < 0.4;
      const think = 1 + fb() * 1;
      if (yields) expectedPairs.push({ id: `p${i}`, at: Math.round((r.at + r.maxTokens * 0.02 + think) * 1000) / 1000, requestId: r.id, chosenTokens: r.maxTokens, rejectedTokens });
    });
    expectedPairs.sort((a, b) => a.at - b.at || Number(a.id.slice(1)) - Number(b.id.slice(1)));
    expect(trace.feedback).toEqual(expectedPairs);
    expect(trace.generator).toEqual(p);
    expect(trace.feedback.length).toBeGreaterThan(0);
  });

  it('is pinned: seed 7 gives these arrivals, lengths and pairs (a version-1 trace never changes)', () => {
    const t = generateTrace({ seed: 7, durationS: 10, ratePerS: 1, retrainRate: 0.5 });
    expect(t.requests.length).toBe(14);
    expect(t.feedback.length).toBe(9);
    expect(t.requests.slice(0, 3)).toEqual([
      { id: 'r0', at: 0.664, promptTokens: 34, maxTokens: 28 },
      { id: 'r1', at: 1.039, promptTokens: 61, maxTokens: 53 },
      { id: 'r2', at: 2.732, promptTokens: 52, maxTokens: 35 },
    ]);
    expect(t.feedback.slice(0, 2)).toEqual([
      { id: 'p0', at: 5.714, requestId: 'r0', chosenTokens: 28, rejectedTokens: 61 },
      { id: 'p2', at: 7.19, requestId: 'r2', chosenTokens: 35, rejectedTokens: 19 },
    ]);
    expect(requestPrompt(t, 0, { size: 100, exclude: [0, 1] }).slice(0, 6)).toEqual([84, 57, 31, 86, 89, 61]);
  });

  it('is the same for the same parameters and a valid trace that survives a JSON round trip', () => {
    const a = generateTrace();
    expect(generateTrace()).toEqual(a);
    expect(parseTrace(JSON.stringify(a), 'a.json')).toEqual(a);
    expect(a.generator).toEqual(DEFAULT_TRACE_PARAMS);
    const s = summarizeTrace(a);
    expect(s.requests).toBe(a.requests.length);
    expect(s.requests).toBeGreaterThan(10); // ~30 at 0.5/s for 60 s
    for (const r of a.requests) {
      expect(r.at).toBeGreaterThanOrEqual(0);
      expect(r.at).toBeLessThan(60);
      expect(r.promptTokens).toBeGreaterThanOrEqual(16);
      expect(r.promptTokens).toBeLessThanOrEqual(64);
    }
  });

  it('keeps arrivals and lengths across retrain rates, and nests the pairs (10% ⊂ 30% ⊂ 50%) at the same times', () => {
    const [t10, t30, t50] = [0.1, 0.3, 0.5].map((retrainRate) => generateTrace({ seed: 5, durationS: 200, ratePerS: 1, retrainRate }));
    expect(t30.requests).toEqual(t10.requests);
    expect(t50.requests).toEqual(t10.requests);
    const byReq = (t: Trace) => new Map(t.feedback.map((p) => [p.requestId, p]));
    const [m10, m30, m50] = [t10, t30, t50].map(byReq);
    expect(m10.size).toBeLessThan(m30.size);
    expect(m30.size).toBeLessThan(m50.size);
    for (const [id, p] of m10) expect(m30.get(id)).toEqual(p);
    for (const [id, p] of m30) expect(m50.get(id)).toEqual(p);
    expect(generateTrace({ seed: 5, durationS: 50, retrainRate: 0 }).feedback).toEqual([]);
    const all = generateTrace({ seed: 5, durationS: 50, retrainRate: 1 });
    expect(all.feedback.map((p) => p.requestId).sort()).toEqual(all.requests.map((r) => r.id).sort());
  });

  it('has Poisson statistics: mean gap 1/rate and coefficient of variation 1; the realised retrain rate is close to the asked one', () => {
    const t = generateTrace({ seed: 9, durationS: 5000, ratePerS: 2, retrainRate: 0.3 });
    const gaps = t.requests.slice(1).map((r, i) => r.at - t.requests[i].at);
    const mean = gaps.reduce((a, b) => a + b, 0) / gaps.length;
    const sd = Math.sqrt(gaps.reduce((a, g) => a + (g - mean) ** 2, 0) / gaps.length);
    expect(Math.abs(mean - 0.5) / 0.5).toBeLessThan(0.03);
    expect(Math.abs(sd / mean - 1)).toBeLessThan(0.05);
    expect(Math.abs(summarizeTrace(t).retrainRate - 0.3)).toBeLessThan(0.02);
    // Every pair arrives after its answer would be done plus the think time.
    const byId = new Map(t.requests.map((r) => [r.id, r]));
    for (const p of t.feedback) {
      const r = byId.get(p.requestId)!;
      const after = p.at - (r.at + r.maxTokens * DEFAULT_TRACE_PARAMS.assumedTokenS);
      expect(after).toBeGreaterThanOrEqual(1 - 0.0011);
      expect(after).toBeLessThanOrEqual(5 + 0.0011);
    }
  });

  it('refuses bad parameters naming them', () => {
    expect(traceError(() => generateTrace({ ratePerS: 0 })).message).toBe('ratePerS must be > 0, got 0');
    expect(traceError(() => generateTrace({ retrainRate: 1.5 })).message).toBe('retrainRate must be <= 1, got 1.5');
    expect(traceError(() => generateTrace({ promptTokens: { min: 10, max: 5 } })).message).toBe('promptTokens.max = 5 is below promptTokens.min = 10');
    expect(traceError(() => generateTrace({ answerTokens: { min: 0, max: 5 } })).message).toBe('answerTokens.min must be >= 1, got 0');
    expect(traceError(() => generateTrace({ seed: -1 })).field).toBe('seed');
    expect(traceError(() => generateTrace({ thinkS: { min: 2, max: 1 } })).field).toBe('thinkS.max');
    expect(traceError(() => generateTrace({ durationS: Number.NaN })).message).toBe('durationS must be a finite number, got null');
    expect(traceError(() => generateTrace({ ratePerS: 1e-9, durationS: 1 })).field).toBe('ratePerS');
  });
});

describe('validateTrace', () => {
  it('accepts a hand-written trace and keeps its explicit ids', () => {
    const t = validateTrace(JSON.parse(JSON.stringify(handTrace())));
    expect(t).toEqual(handTrace());
    expect(traceMaxTokens(t)).toEqual({ request: 8, pair: 8 }); // c: 6 + 2; pair p0: a's 4 + max(3, 4)
    expect(summarizeTrace(t)).toEqual({ requests: 4, pairs: 2, retrainRate: 0.5, ratePerS: 0.4, meanPromptTokens: 3.25, meanAnswerTokens: 2.75, lastEventS: 12 });
  });

  it('merges requests and pairs into one time-ordered list of events (requests first at equal times)', () => {
    const t = handTrace();
    t.feedback[0].at = 1.5; // the same time as requests b and c
    expect(traceEvents(validateTrace(t))).toEqual([
      { kind: 'request', at: 0, index: 0 },
      { kind: 'request', at: 1.5, index: 1 },
      { kind: 'request', at: 1.5, index: 2 },
      { kind: 'feedback', at: 1.5, index: 0 },
      { kind: 'request', at: 9, index: 3 },
      { kind: 'feedback', at: 12, index: 1 },
    ]);
  });

  const cases: [string, (t: Record<string, any>) => void, string][] = [
    ['version', (t) => (t.version = 2), 'version must be 1, got 2'],
    ['seed', (t) => (t.seed = 1.5), 'seed must be an integer, got 1.5'],
    ['durationS', (t) => (t.durationS = 0), 'durationS must be > 0, got 0'],
    ['unknown top field', (t) => (t.extra = 1), 'extra is not a field here (known: version, seed, durationS, requests, feedback, generator)'],
    ['no requests', (t) => (t.requests = []), 'requests must hold at least one request'],
    ['requests not an array', (t) => (t.requests = {}), 'requests must be an array'],
    ['negative at', (t) => (t.requests[3].at = -1), 'requests[3].at must be >= 0, got -1'],
    ['at past the duration', (t) => (t.requests[3].at = 11), 'requests[3].at must be <= 10, got 11'],
    ['arrival order', (t) => (t.requests[2].at = 1), 'requests[2].at = 1 is before requests[1].at = 1.5: requests must be in arrival order'],
    ['duplicate id', (t) => (t.requests[2].id = 'a'), "requests[2].id 'a' repeats requests[0].id"],
    ['empty id', (t) => (t.requests[1].id = ''), 'requests[1].id must be a non-empty string, got ""'],
    ['promptTokens 0', (t) => (t.requests[0].promptTokens = 0), 'requests[0].promptTokens must be >= 1, got 0'],
    ['maxTokens fraction', (t) => (t.requests[0].maxTokens = 2.5), 'requests[0].maxTokens must be an integer, got 2.5'],
    ['prompt length', (t) => (t.requests[1].prompt = [1]), 'requests[1].prompt has 1 ids but promptTokens = 2'],
    ['prompt id', (t) => (t.requests[1].prompt = [1, -4]), 'requests[1].prompt[1] must be >= 0, got -4'],
    ['unknown request field', (t) => (t.requests[0].max_tokens = 3), 'requests[0].max_tokens is not a field here (known: id, at, promptTokens, maxTokens, prompt)'],
    ['feedback not an array', (t) => delete t.feedback, 'feedback must be an array'],
    ['feedback names no request', (t) => (t.feedback[1].requestId = 'zz'), "feedback[1].requestId 'zz' names no request"],
    ['feedback before its request', (t) => (t.feedback[0].requestId = 'd'), "feedback[0].at = 2 is before its request 'd' arrives (9)"],
    ['feedback order', (t) => (t.feedback[1].at = 1.9), 'feedback[1].at = 1.9 is before feedback[0].at = 2: feedback must be in arrival order'],
    ['feedback duplicate id', (t) => (t.feedback[1].id = 'p0'), "feedback[1].id 'p0' repeats feedback[0].id"],
    ['chosen length', (t) => (t.feedback[1].chosen = [1, 2]), 'feedback[1].chosen has 2 ids but chosenTokens = 5'],
    ['rejectedTokens', (t) => (t.feedback[0].rejectedTokens = '4'), 'feedback[0].rejectedTokens must be an integer, got "4"'],
    ['generator params', (t) => (t.generator = { ...DEFAULT_TRACE_PARAMS, ratePerS: -1 }), 'generator.ratePerS must be > 0, got -1'],
  ];
  for (const [name, mutate, message] of cases) {
    it(`refuses: ${name}`, () => {
      const t = JSON.parse(JSON.stringify(handTrace()));
      mutate(t);
      const e = traceError(() => validateTrace(t));
      expect(e.message).toBe(message);
      expect(e.code).toBe('bad-trace');
      expect(e.name).toBe('TraceError');
    });
  }

  it('names the file, and refuses text that is not JSON', () => {
    const t = handTrace() as unknown as Record<string, any>;
    t.requests[3].at = -1;
    expect(traceError(() => parseTrace(JSON.stringify(t), 'trace.json')).message).toBe('trace.json: requests[3].at must be >= 0, got -1');
    const e = traceError(() => parseTrace('{"version": 1,', 'trace.json'));
    expect(e.field).toBe('(json)');
    expect(e.message).toMatch(/^trace\.json: \(json\) is not valid JSON: /);
  });
});

describe('token ids', () => {
  const trace = validateTrace(handTrace());

  it('draws prompts from the seed: the given length, inside the vocabulary, never an excluded id, the same every time', () => {
    const vocab = { size: 5, exclude: [0, 2] };
    const a = requestPrompt(trace, 2, vocab);
    expect(a).toHaveLength(6);
    for (const id of a) expect([1, 3, 4]).toContain(id);
    expect(requestPrompt(trace, 2, vocab)).toEqual(a);
    const big = { size: 50_000 };
    expect(requestPrompt(trace, 0, big)).not.toEqual(requestPrompt(trace, 2, big).slice(0, 4)); // own stream per request
    expect(requestPrompt({ ...trace, seed: 4 }, 0, big)).not.toEqual(requestPrompt(trace, 0, big));
  });

  it('uses explicit ids as given, and refuses one outside the vocabulary naming it', () => {
    expect(requestPrompt(trace, 1, { size: 9 })).toEqual([7, 8]);
    expect(traceError(() => requestPrompt(trace, 1, { size: 8 })).message).toBe('requests[1].prompt[1] = 8 is not a token id < vocab 8');
    expect(traceError(() => feedbackPair(trace, 1, { size: 5 })).message).toBe('requests[1].prompt[0] = 7 is not a token id < vocab 5');
  });

  it('builds a pair from the named request prompt and two responses of the given lengths', () => {
    const vocab = { size: 1000, exclude: [0] };
    const p0 = feedbackPair(trace, 0, vocab);
    expect(p0.prompt).toEqual(requestPrompt(trace, 0, vocab));
    expect(p0.chosen).toHaveLength(3);
    expect(p0.rejected).toHaveLength(4);
    expect(feedbackPair(trace, 0, vocab)).toEqual(p0);
    const p1 = feedbackPair(trace, 1, { size: 10 });
    expect(p1).toEqual({ prompt: [7, 8], chosen: [1, 2, 3, 4, 5], rejected: p1.rejected });
    expect(p1.rejected).toHaveLength(1);
  });

  it('refuses a vocabulary with nothing to draw and an index out of range', () => {
    expect(traceError(() => requestPrompt(trace, 0, { size: 1, exclude: [0] })).field).toBe('vocab.exclude');
    expect(traceError(() => requestPrompt(trace, 0, { size: 0 })).message).toBe('vocab.size must be an integer >= 1, got 0');
    expect(traceError(() => requestPrompt(trace, 4, { size: 10 })).message).toBe('requests has no index 4 (4 requests)');
    expect(traceError(() => feedbackPair(trace, 2, { size: 10 })).message).toBe('feedback has no index 2 (2 pairs)');
  });
});
