/**
 * The prefix-cache benchmark (`mace bench prefix`): two traces replayed on the serving engine with
 * the prefix cache off and on, alternating in one run (same device, same warm pipelines):
 *
 * - multi-turn: `conversations` chats run at once, closed loop; each request is the whole
 *   conversation so far (every earlier user turn and reply) plus a new user turn, as a chat UI sends it;
 * - shared system prompt: `clients` closed-loop clients send `requests` requests in all, each a
 *   common system prompt plus its own question.
 *
 * Per run: TTFT p50/p95 (ms, from the request's submission), prompt tokens, prefill tokens the engine
 * computed (its iteration records), prompt tokens served from the cache (usage.cached_tokens), and
 * the trace's ideal shared fraction: for each request, its longest prefix (whole 16-token blocks,
 * at least one token left to run) shared with what earlier requests of the same run sent (their
 * prompts, and the replies of those that finished), over all prompt tokens — what a cache that
 * never evicts, and whose every earlier prefill is done, would save. (A prefill chunk that ends one
 * token short of its prompt leaves a 1-token step, which the iteration records count as a decode
 * row, so "prefill computed" can be a few tokens under prompt − cached.)
 *
 * Prompts are random token ids (no tokenizer); replies are greedy with EOS ignored, so both runs of a
 * trace see the same conversations. Each variant runs the trace once untimed first (pipeline
 * compiles and dispatch lists for its batch shapes are not in the figures).
 */
import { describeGpu, type GpuContext } from '../src/gpu/device.ts';
import type { WeightFormat } from '../src/kernels/weights.ts';
import type { EngineModel } from '../src/engine/engine.ts';
import { createEngine, type Engine } from '../src/engine/openai.ts';
import { BLOCK_SIZE } from '../src/kv/layout.ts';
import { loadModel } from '../src/model/loader.ts';
import type { ModelSource } from '../src/model/source.ts';
import type { StatsRecord } from '../src/scheduler/stats.ts';
import { percentile } from './serve/metrics.ts';
import { SYNTHETIC_MODEL_IDS, SYNTHETIC_MODEL_NAMES, syntheticConfig, syntheticEngineModel, syntheticPrompt, type SyntheticModelId } from './synthetic-model.ts';

export interface PrefixBenchOptions {
  /** A synthetic model id, or `source` for a real one (then `name` labels it). */
  model: SyntheticModelId | { source: ModelSource; name: string };
  format: WeightFormat;
  /** Multi-turn trace: chats at once, turns per chat, tokens per user turn and per reply. */
  conversations: number;
  turns: number;
  userTokens: number;
  replyTokens: number;
  /** Shared-system-prompt trace: its length, the requests in all and the clients sending them. */
  systemTokens: number;
  requests: number;
  clients: number;
  /** Timed replays of each trace per variant, alternating off/on, pooled (default 1). */
  repeats?: number;
  seed?: number;
  env?: 'chromium' | 'node';
  onProgress?: (message: string) => void;
}

export type PrefixTraceName = 'multi-turn' | 'shared-system';

export interface PrefixRun {
  trace: PrefixTraceName;
  prefixCache: boolean;
  requests: number;
  ttftP50Ms: number;
  ttftP95Ms: number;
  ttftMeanMs: number;
  promptTokens: number;
  /** Prefill tokens the engine ran (its iteration records): prompt tokens not served from the cache. */
  prefillTokensComputed: number;
  /** Prompt tokens whose K/V came from the cache (usage.prompt_tokens_details.cached_tokens). */
  cachedTokens: number;
  /** Tokens an ever-keeping cache could have served, over prompt tokens (see the file comment). */
  idealSharedFraction: number;
  wallMs: number;
}

export interface PrefixComparison {
  trace: PrefixTraceName;
  /** TTFT p95 with the cache ÷ without (target ≤ 0.5 on multi-turn). */
  ttftP95Ratio: number;
  ttftP50Ratio: number;
  /** 1 − computed with ÷ computed without: the prefill saved. */
  prefillComputedDrop: number;
  /** The trace's ideal shared fraction (the cache-on run's). */
  idealSharedFraction: number;
}

export interface PrefixBenchResult {
  model: string;
  format: WeightFormat;
  env: string;
  gpu: string;
  options: Omit<PrefixBenchOptions, 'model' | 'onProgress' | 'env'>;
  runs: PrefixRun[];
  comparisons: PrefixComparison[];
  markdown: string;
}

export const PREFIX_DEFAULTS = { conversations: 4, turns: 4, userTokens: 48, replyTokens: 24, systemTokens: 160, requests: 16, clients: 4, repeats: 4, format: 'f32' as WeightFormat };

function checkOptions(o: PrefixBenchOptions, maxContext: number): void {
  for (const k of ['conversations', 'turns', 'userTokens', 'replyTokens', 'systemTokens', 'requests', 'clients', 'repeats'] as const) {
    const v = o[k] ?? 1;
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`bench prefix: ${k} = ${v} must be a positive integer`);
  }
  if (typeof o.model === 'string' && !SYNTHETIC_MODEL_IDS.includes(o.model)) throw new RangeError(`bench prefix: unknown model '${o.model}' (known: ${SYNTHETIC_MODEL_IDS.join(', ')}, or a directory)`);
  const longest = 1 + o.turns * (o.userTokens + o.replyTokens);
  if (longest > maxContext) throw new RangeError(`bench prefix: a ${o.turns}-turn conversation reaches ${longest} tokens, past the model's context ${maxContext} (fewer --turns or shorter turns)`);
  if (1 + o.systemTokens + o.userTokens + o.replyTokens > maxContext) throw new RangeError(`bench prefix: system prompt + question + reply (${1 + o.systemTokens + o.userTokens + o.replyTokens} tokens) exceed the model's context ${maxContext}`);
}

/** One finished request: what it sent, when its first token came, what the cache gave it. */
interface Done {
  prompt: number[];
  ttftMs: number;
  cached: number;
}

/** Tokens of `prompt` an ever-keeping cache could serve from `earlier` token lists (whole blocks, one token left). */
function idealShared(prompt: readonly number[], earlier: readonly (readonly number[])[]): number {
  let best = 0;
  for (const d of earlier) {
    const n = Math.min(d.length, prompt.length);
    let i = 0;
    while (i < n && d[i] === prompt[i]) i++;
    best = Math.max(best, i);
  }
  return Math.min(Math.floor(best / BLOCK_SIZE), Math.floor((prompt.length - 1) / BLOCK_SIZE)) * BLOCK_SIZE;
}

interface TraceRun {
  done: Done[];
  /** Token lists earlier requests sent (prompts) or had computed once finished (prompt + reply but its last token). */
  known: number[][];
  ideal: number;
}

async function request(e: Engine, prompt: number[], replyTokens: number, run: TraceRun): Promise<number[]> {
  run.ideal += idealShared(prompt, run.known);
  run.known.push(prompt);
  const r = await e.completions.create({ prompt, temperature: 0, max_tokens: replyTokens, ignore_eos: true, return_token_ids: true });
  const reply = r.choices[0].token_ids!;
  const usage = r.usage!;
  run.known.push([...prompt, ...reply.slice(0, -1)]);
  run.done.push({ prompt, ttftMs: usage.ttft_ms, cached: usage.prompt_tokens_details.cached_tokens });
  return reply;
}

/** Random non-special ids (the first is BOS-like: the prompt's start). */
function ids(model: EngineModel, n: number, seed: number): number[] {
  return syntheticPrompt(model.config, n, seed);
}

async function multiTurn(e: Engine, model: EngineModel, o: PrefixBenchOptions, seed: number): Promise<TraceRun> {
  const run: TraceRun = { done: [], known: [], ideal: 0 };
  await Promise.all(
    Array.from({ length: o.conversations }, async (_, c) => {
      let conversation: number[] = [];
      for (let t = 0; t < o.turns; t++) {
        const prompt = [...conversation, ...ids(model, o.userTokens + (t === 0 ? 1 : 0), seed + 1000 * c + t)];
        const reply = await request(e, prompt, o.replyTokens, run);
        conversation = [...prompt, ...reply];
      }
    }),
  );
  return run;
}

async function sharedSystem(e: Engine, model: EngineModel, o: PrefixBenchOptions, seed: number): Promise<TraceRun> {
  const run: TraceRun = { done: [], known: [], ideal: 0 };
  // Seeds far from the multi-turn trace's: its ids never start the same way (no cross-trace hits).
  const base = seed + 1_000_003;
  const system = ids(model, 1 + o.systemTokens, base);
  let next = 0;
  await Promise.all(
    Array.from({ length: o.clients }, async () => {
      while (next < o.requests) {
        const i = next++;
        await request(e, [...system, ...ids(model, o.userTokens, base + 1 + i)], o.replyTokens, run);
      }
    }),
  );
  return run;
}

const TRACES: Record<PrefixTraceName, (e: Engine, m: EngineModel, o: PrefixBenchOptions, seed: number) => Promise<TraceRun>> = { 'multi-turn': multiTurn, 'shared-system': sharedSystem };

/** One timed replay of a trace: its requests, the prefill tokens the engine ran, its wall time. */
interface Measured {
  run: TraceRun;
  computed: number;
  wallMs: number;
}

async function measure(engine: Engine, model: EngineModel, trace: PrefixTraceName, o: PrefixBenchOptions, seed: number): Promise<Measured> {
  let computed = 0;
  const off = engine.core.onStats((r: StatsRecord) => {
    if (r.type === 'iteration') computed += r.prefillTokens;
  });
  const t0 = performance.now();
  try {
    return { run: await TRACES[trace](engine, model, o, seed), computed, wallMs: performance.now() - t0 };
  } finally {
    off();
  }
}

/** The replays of one variant pooled into its row (percentiles over every request of every repeat). */
function pooled(trace: PrefixTraceName, prefixCache: boolean, ms: readonly Measured[]): PrefixRun {
  const done = ms.flatMap((m) => m.run.done);
  const ttft = done.map((d) => d.ttftMs);
  const promptTokens = done.reduce((a, d) => a + d.prompt.length, 0);
  return {
    trace, prefixCache, requests: done.length,
    ttftP50Ms: percentile(ttft, 50)!, ttftP95Ms: percentile(ttft, 95)!, ttftMeanMs: ttft.reduce((a, b) => a + b, 0) / ttft.length,
    promptTokens, prefillTokensComputed: ms.reduce((a, m) => a + m.computed, 0), cachedTokens: done.reduce((a, d) => a + d.cached, 0),
    idealSharedFraction: ms.reduce((a, m) => a + m.run.ideal, 0) / promptTokens, wallMs: ms.reduce((a, m) => a + m.wallMs, 0),
  };
}

async function makeModel(ctx: GpuContext, o: PrefixBenchOptions, seed: number): Promise<EngineModel> {
  if (typeof o.model === 'string') return syntheticEngineModel(ctx, syntheticConfig(o.model), o.format, seed);
  const { config, tokenizer, weights } = await loadModel(ctx, o.model.source, { format: o.format });
  return { config, tokenizer, weights };
}

export async function runPrefixBench(ctx: GpuContext, o: PrefixBenchOptions): Promise<PrefixBenchResult> {
  const seed = o.seed ?? 1;
  const model = await makeModel(ctx, o, seed);
  const runs: PrefixRun[] = [];
  try {
    checkOptions(o, model.config.maxPositionEmbeddings);
    const maxSeqs = Math.max(o.conversations, o.clients);
    const engines = [false, true].map((prefixCache) => ({ prefixCache, engine: createEngine(ctx, model, { maxSeqs, prefixCache }) }));
    try {
      for (const trace of Object.keys(TRACES) as PrefixTraceName[]) {
        // Warm-up: each engine runs the trace once with other ids (same shapes), untimed.
        for (const { engine } of engines) await TRACES[trace](engine, model, o, seed + 7777);
        // Repeats alternate off/on with fresh ids each (machine noise hits both alike); pooled per variant.
        const measured = engines.map(() => [] as Measured[]);
        for (let rep = 0; rep < (o.repeats ?? 1); rep++) {
          for (const [i, { engine }] of engines.entries()) measured[i].push(await measure(engine, model, trace, o, seed + 100_003 * rep));
        }
        for (const [i, { prefixCache }] of engines.entries()) {
          const r = pooled(trace, prefixCache, measured[i]);
          o.onProgress?.(`${trace}, cache ${prefixCache ? 'on' : 'off'}: ${r.requests} requests, TTFT p50 ${r.ttftP50Ms.toFixed(1)} ms, p95 ${r.ttftP95Ms.toFixed(1)} ms; prefill computed ${r.prefillTokensComputed} of ${r.promptTokens} prompt tokens, cached ${r.cachedTokens}`);
          runs.push(r);
        }
      }
    } finally {
      for (const { engine } of engines) engine.destroy();
    }
  } finally {
    model.weights.destroy();
  }
  const comparisons = compare(runs);
  const name = typeof o.model === 'string' ? SYNTHETIC_MODEL_NAMES[o.model] : o.model.name;
  const { model: _m, onProgress: _p, env: _e, ...options } = o;
  const result = { model: name, format: o.format, env: o.env ?? 'unknown', gpu: describeGpu(ctx), options, runs, comparisons, markdown: '' };
  result.markdown = prefixToMarkdown(result);
  return result;
}

function compare(runs: readonly PrefixRun[]): PrefixComparison[] {
  const out: PrefixComparison[] = [];
  for (const trace of Object.keys(TRACES) as PrefixTraceName[]) {
    const off = runs.find((r) => r.trace === trace && !r.prefixCache);
    const on = runs.find((r) => r.trace === trace && r.prefixCache);
    if (!off || !on) continue;
    out.push({ trace, ttftP95Ratio: on.ttftP95Ms / off.ttftP95Ms, ttftP50Ratio: on.ttftP50Ms / off.ttftP50Ms, prefillComputedDrop: 1 - on.prefillTokensComputed / off.prefillTokensComputed, idealSharedFraction: on.idealSharedFraction });
  }
  return out;
}

export function prefixToMarkdown(r: Omit<PrefixBenchResult, 'markdown'>): string {
  const o = r.options;
  const lines = [
    `Model ${r.model} (${r.format}) on ${r.gpu} (${r.env}). Multi-turn: ${o.conversations} chats × ${o.turns} turns (${o.userTokens}-token user turns, ${o.replyTokens}-token replies); shared system prompt: ${o.requests} requests from ${o.clients} clients, ${o.systemTokens}-token system prompt + ${o.userTokens}-token question. Engine defaults (8 ms per-submission budget headless); ${o.repeats ?? 1} timed replay(s) per variant, alternating off/on, pooled.`,
    '',
    '| trace | prefix cache | requests | TTFT p50 (ms) | TTFT p95 (ms) | prompt tokens | prefill computed | cached | ideal shared |',
    '|---|---|---|---|---|---|---|---|---|',
    ...r.runs.map((x) => `| ${x.trace} | ${x.prefixCache ? 'on' : 'off'} | ${x.requests} | ${x.ttftP50Ms.toFixed(1)} | ${x.ttftP95Ms.toFixed(1)} | ${x.promptTokens} | ${x.prefillTokensComputed} | ${x.cachedTokens} | ${(100 * x.idealSharedFraction).toFixed(1)}% |`),
    '',
    '| trace | TTFT p95 on ÷ off | TTFT p50 on ÷ off | prefill computed drop | ideal shared fraction |',
    '|---|---|---|---|---|',
    ...r.comparisons.map((c) => `| ${c.trace} | ${c.ttftP95Ratio.toFixed(3)} | ${c.ttftP50Ratio.toFixed(3)} | ${(100 * c.prefillComputedDrop).toFixed(1)}% | ${(100 * c.idealSharedFraction).toFixed(1)}% |`),
    '',
  ];
  return lines.join('\n');
}
