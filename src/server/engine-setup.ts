/**
 * The engine `mace serve` runs, built the same way in Node (bin/serve.mjs --node) and in the
 * Chromium page (src/server/engine-page.ts): load the model, create an engine with an adapter
 * bank (so /v1/load_lora_adapter works) and no per-submission GPU budget (no page to keep
 * responsive: a server wants whole iterations), and wrap it as a ServeBackend.
 */
import type { GpuContext } from '../gpu/device.ts';
import type { WeightFormat } from '../kernels/weights.ts';
import { createEngine, type Engine } from '../engine/openai.ts';
import { loadModel } from '../model/loader.ts';
import type { ModelSource } from '../model/source.ts';
import { engineBackend, type ServeBackend } from './backend.ts';

export interface ServeEngineOptions {
  dtype: WeightFormat;
  /** The name responses report and requests' `model` may give. */
  modelName: string;
  /** Sequences decoded at once (engine maxSeqs). */
  maxSeqs: number;
  /** Adapters resident at once (vLLM's --max-loras); 0: no adapter bank. */
  maxLoras: number;
  /** Highest LoRA rank an adapter may have (vLLM's --max-lora-rank). */
  maxLoraRank: number;
  /** Bytes of GPU memory for the KV cache (engine kvBudgetBytes); absent: the engine's default. */
  kvBudgetBytes?: number;
}

export interface ServeEngine {
  engine: Engine;
  backend: ServeBackend;
  /** Frees the engine and the weights. */
  destroy(): void;
}

export async function createServeEngine(ctx: GpuContext, source: ModelSource, o: ServeEngineOptions, log: (m: string) => void = () => {}): Promise<ServeEngine> {
  const t0 = performance.now();
  const model = await loadModel(ctx, source, { format: o.dtype });
  log(`loaded ${source.description} as ${o.dtype} in ${(performance.now() - t0).toFixed(0)} ms`);
  let engine: Engine;
  try {
    engine = createEngine(ctx, model, {
      modelName: o.modelName,
      maxSeqs: o.maxSeqs,
      ...(o.kvBudgetBytes ? { kvBudgetBytes: o.kvBudgetBytes } : {}),
      ...(o.maxLoras > 0 ? { adapters: { slots: o.maxLoras, maxRank: o.maxLoraRank } } : {}),
      scheduler: { budgetMs: 0 },
    });
  } catch (e) {
    model.weights.destroy();
    throw e;
  }
  return {
    engine,
    backend: engineBackend(engine, engine.stats().maxContext),
    destroy() {
      engine.destroy();
      model.weights.destroy();
    },
  };
}
