/**
 * The inference benchmark (`mace bench decode`): the whole serving engine on one model, per weight
 * format and batch size: time to first token, prefill and decode tokens/s (per request and for the
 * whole batch), and decode at batch 1 against the bandwidth bound (the weight bytes of one token
 * at the copy kernel's bandwidth, measured in the same run).
 *
 * Runs are comparable: fixed prompt lengths of random ids (no tokenizer), fixed output lengths with
 * ignore_eos, greedy sampling, every request of a batch submitted in the same tick (so they prefill
 * and decode in the same iterations: maxSeqs and the token budget are sized for the largest batch).
 * Each batch is run once untimed first with the same shapes, so pipeline compilation and the
 * per-shape dispatch lists are not in the figures.
 *
 * Environment-agnostic: it takes a GpuContext and, for a real model, a ModelSource.
 */
import { describeGpu, type GpuContext } from '../src/gpu/device.ts';
import { kernelPlan, setKernelPlan, type KernelPlan } from '../src/kernels/plan.ts';
import type { WeightFormat } from '../src/kernels/weights.ts';
import type { EngineModel } from '../src/engine/engine.ts';
import { createEngine, type Engine } from '../src/engine/openai.ts';
import type { ModelConfig } from '../src/model/config.ts';
import { loadModel } from '../src/model/loader.ts';
import type { ModelSource } from '../src/model/source.ts';
import { decodeRow, planSpeedups, windowSpeedups, type DecodeBenchResult, type DecodeRow, type RequestTiming } from './decode-report.ts';
import { runKernelBench } from './kernels.ts';
import { decodeWeightBytes, parameterCount, SYNTHETIC_MODEL_IDS, SYNTHETIC_MODEL_NAMES, syntheticConfig, syntheticEngineModel, syntheticPrompt, type SyntheticModelId } from './synthetic-model.ts';

export { decodeToMarkdown, type DecodeBenchResult, type DecodeRow } from './decode-report.ts';

export interface DecodeBenchOptions {
  /** A synthetic model id, or `source` for a real one (then `name` labels it). */
  model: SyntheticModelId | { source: ModelSource; name: string };
  formats: WeightFormat[];
  batches: number[];
  /** Kernel plans to run, each on its own engine (default: the context's, normally 'fused'); ['fused', 'unfused'] compares them in one run. */
  plans?: KernelPlan[];
  /** KV windows to run, each on its own engine (null: the full cache; default [null]); [null, {sinks, window}] compares them in one run. */
  kvWindows?: ({ sinks: number; window: number } | null)[];
  promptTokens: number;
  tokens: number;
  seed?: number;
  env?: 'chromium' | 'node';
  onProgress?: (message: string) => void;
}

function checkOptions(o: DecodeBenchOptions): void {
  const posInt = (name: string, v: number, lo = 1) => {
    if (!Number.isInteger(v) || v < lo) throw new RangeError(`bench decode: ${name} = ${v} must be an integer >= ${lo}`);
  };
  if (typeof o.model === 'string' && !SYNTHETIC_MODEL_IDS.includes(o.model)) throw new RangeError(`bench decode: unknown model '${o.model}' (known: ${SYNTHETIC_MODEL_IDS.join(', ')}, or a directory)`);
  if (o.formats.length === 0 || o.batches.length === 0) throw new RangeError('bench decode: needs at least one format and one batch size');
  o.batches.forEach((b) => posInt('batch', b));
  posInt('promptTokens', o.promptTokens);
  posInt('tokens', o.tokens, 2); // decode tokens/s needs a second token
}

/** Copy kernel bandwidth: the kernel benchmark with no matmul shapes is exactly its copy part. */
async function copyBandwidth(ctx: GpuContext): Promise<number> {
  const r = await runKernelBench(ctx, { models: [], formats: [], quick: true, iters: 5 });
  return r.copyGBs;
}

/** Engine sizes: every request of the largest batch prefills in one iteration and runs at once. */
function engineFor(ctx: GpuContext, model: EngineModel, o: DecodeBenchOptions, kvWindow: { sinks: number; window: number } | null): Engine {
  const maxBatch = Math.max(...o.batches);
  return createEngine(ctx, model, {
    ...(kvWindow ? { kvWindow } : {}),
    // Prefill and decode are timed, not reuse: runs repeat prompts (warm-up, batch sizes), which a
    // prefix cache would partly skip (bench prefix measures that).
    prefixCache: false,
    maxSeqs: maxBatch,
    maxTokensPerIteration: Math.max(256, maxBatch * o.promptTokens),
    maxContext: Math.min(model.config.maxPositionEmbeddings, o.promptTokens + o.tokens + 1),
    candidates: 1, // greedy: the top-1 candidate is all sampling needs
    modelName: 'bench',
  });
}

/** Run `batch` requests at once; their timings (usage). */
async function runBatch(engine: Engine, config: ModelConfig, batch: number, o: DecodeBenchOptions, tokens: number, seed: number): Promise<RequestTiming[]> {
  const requests = Array.from({ length: batch }, (_, i) =>
    engine.completions.create({ prompt: syntheticPrompt(config, o.promptTokens, seed + i), max_tokens: tokens, temperature: 0, ignore_eos: true }),
  );
  const done = await Promise.all(requests);
  return done.map((c) => {
    if (!c.usage || c.usage.completion_tokens !== tokens) throw new Error(`bench decode: a request produced ${c.usage?.completion_tokens} tokens, expected ${tokens}`);
    return c.usage;
  });
}

async function makeModel(ctx: GpuContext, o: DecodeBenchOptions, format: WeightFormat, seed: number): Promise<EngineModel> {
  if (typeof o.model === 'string') return syntheticEngineModel(ctx, syntheticConfig(o.model), format, seed);
  const { config, tokenizer, weights } = await loadModel(ctx, o.model.source, { format });
  return { config, tokenizer, weights };
}

export async function runDecodeBench(ctx: GpuContext, o: DecodeBenchOptions): Promise<DecodeBenchResult> {
  checkOptions(o);
  const progress = o.onProgress ?? (() => {});
  const seed = o.seed ?? 1;
  progress('copy bandwidth');
  const copyGBs = await copyBandwidth(ctx);
  progress(`copy: ${copyGBs.toFixed(2)} GB/s`);

  const rows: DecodeRow[] = [];
  const loadMs: DecodeBenchResult['loadMs'] = {};
  let config: ModelConfig | null = null;
  const initialPlan = kernelPlan(ctx);
  const plans = o.plans ?? [initialPlan];
  try {
    for (const format of o.formats) {
      const t0 = performance.now();
      const model = await makeModel(ctx, o, format, seed);
      loadMs[format] = performance.now() - t0;
      config = model.config;
      progress(`${format}: weights ready in ${(loadMs[format]! / 1000).toFixed(1)} s`);
      try {
        const bytes = decodeWeightBytes(model.config, format);
        // Plans alternate per batch size on engines over the same weights, so both see the same machine load.
        setKernelPlan(ctx, plans[0]);
        const windows = o.kvWindows ?? [null];
        const engines = plans.flatMap((plan) =>
          windows.map((w) => {
            setKernelPlan(ctx, plan); // read when the engine's ForwardPass and kernels are built
            return { plan, kvWindow: w ? `s${w.sinks}w${w.window}` : undefined, engine: engineFor(ctx, model, o, w) };
          }),
        );
        try {
          for (const batch of o.batches) {
            for (const { plan, kvWindow, engine } of engines) {
              setKernelPlan(ctx, plan); // dispatches of a new batch shape are built with the engine's plan
              await runBatch(engine, model.config, batch, o, 2, seed + 1000); // warm-up, same shapes
              const row = { ...decodeRow(format, await runBatch(engine, model.config, batch, o, o.tokens, seed), bytes, copyGBs), plan, ...(kvWindow ? { kvWindow } : {}) };
              rows.push(row);
              progress(`${plan}${kvWindow ? ` ${kvWindow}` : ''} ${format} batch ${batch}: TTFT ${row.ttftMs.toFixed(0)} ms, decode ${row.decodeMsPerToken.toFixed(1)} ms/token, ${row.decodeTokensPerSecAgg.toFixed(2)} tok/s in all, roofline ${row.roofline.toFixed(3)}`);
            }
          }
        } finally {
          for (const e of engines) e.engine.destroy();
        }
      } finally {
        model.weights.destroy();
      }
    }
  } finally {
    setKernelPlan(ctx, initialPlan);
  }
  const c = config!;
  const synthetic = typeof o.model === 'string';
  return {
    device: { description: describeGpu(ctx), adapter: { ...ctx.adapterInfo } },
    env: o.env ?? ('document' in globalThis ? 'chromium' : 'node'),
    model: {
      id: synthetic ? (o.model as SyntheticModelId) : 'dir',
      name: synthetic ? SYNTHETIC_MODEL_NAMES[o.model as SyntheticModelId] : (o.model as { name: string }).name,
      synthetic,
      parameters: parameterCount(c),
      layers: c.nLayers,
      hidden: c.hiddenSize,
      vocab: c.vocabSize,
    },
    promptTokens: o.promptTokens,
    tokens: o.tokens,
    copyGBs,
    loadMs,
    rows,
    ...(plans.length > 1 ? { decodeSpeedup: planSpeedups(rows) } : {}),
    ...((o.kvWindows ?? []).some((w) => w !== null) && (o.kvWindows ?? []).includes(null) ? { kvWindowSpeedup: windowSpeedups(rows) } : {}),
  };
}
