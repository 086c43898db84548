/**
 * `mace train --cpu`: the run of bench/train.ts on the CPU references instead of the GPU.
 * - Continuations: ReferenceModel with a dense KV cache, sampled by the engine's rules (the top
 *   ENGINE_DEFAULTS.candidates logits, softmax at the temperature, sampleRowRef; seeded per request; greedy =
 *   argmax), stopped at EOS or `tokens`, detokenized after the prompt's last ids as the engine does.
 *   With an adapter, TrainingReference recomputes the whole sequence per token (tiny models only).
 * - Training: ReferenceTrainer, the spec of DpoTrainer (same init, flat layout, schedule, AdamW; the
 *   GPU adapter after several single and batched steps matches it: test/browser/trainer.test.ts).
 * Straight loops over Float32Array: a stories260K pair step takes ~0.25 s, about 20× less than the
 * GPU trainer on SwiftShader, so settings can be swept here before a GPU run. The random numbers are
 * not the engine's, so the sampled pairs differ from a GPU run with the same seed.
 */
import { ENGINE_DEFAULTS } from '../src/engine/engine.ts';
import { topKRef, sampleRowRef } from '../src/kernels/sampling.ts';
import type { HostAdapter } from '../src/learn/adapter.ts';
import { ReferenceTrainer } from '../src/learn/reference-trainer.ts';
import { TrainingReference } from '../src/learn/reference.ts';
import { loadModelFiles } from '../src/model/loader.ts';
import { hostWeightsFromSafetensors, ReferenceModel } from '../src/model/reference.ts';
import type { ModelSource } from '../src/model/source.ts';
import { mulberry32 } from '../src/util/prng.ts';
import { TrainRequestError, type TrainBackend } from './train.ts';

/** Sample one id from a row of logits: greedy at temperature 0, else the engine's top-k rule. */
function sampleRow(row: Float32Array, V: number, temperature: number, rand: () => number): number {
  const { values, ids } = topKRef(row, 1, V, Math.min(ENGINE_DEFAULTS.candidates, V));
  if (temperature <= 0) return ids[0];
  return sampleRowRef(values, ids, { temperature, topP: 1, minP: 0, topK: 0 }, rand());
}

/** The CPU runtime of `mace train` (a single model.safetensors; tiny models). */
export async function cpuTrainBackend(source: ModelSource): Promise<TrainBackend> {
  const t0 = performance.now();
  const { config, tokenizer, generation } = await loadModelFiles(source);
  if (!(await source.has('model.safetensors'))) throw new TrainRequestError('model', `${source.description} has no single model.safetensors; the CPU reference (--cpu) reads one file (sharded checkpoints: use the GPU)`);
  const { stream } = await source.open('model.safetensors');
  const host = hostWeightsFromSafetensors(config, new Uint8Array(await new Response(stream).arrayBuffer()));
  const base = new ReferenceModel(config, host);
  const V = config.vocabSize;
  const eos = new Set(generation.eosTokenIds);
  const withAdapter = new WeakMap<HostAdapter, TrainingReference>();

  /** Logits of the next token after `ids` under base + adapter (whole-sequence recompute). */
  const adapterNext = (adapter: HostAdapter, ids: number[]): Float32Array => {
    let m = withAdapter.get(adapter);
    if (!m) withAdapter.set(adapter, (m = new TrainingReference(config, host, adapter)));
    return m.forward(ids).logits.subarray((ids.length - 1) * V, ids.length * V);
  };

  return {
    device: 'CPU reference (ReferenceModel sampling, ReferenceTrainer)',
    model: source.description,
    config,
    tokenizer,
    eos: generation.eosTokenIds[0] ?? null,
    loadMs: performance.now() - t0,
    concurrency: 1,
    async complete(prompt, tokens, temperature, seed, adapter) {
      const promptIds = tokenizer.encode(prompt);
      const rand = mulberry32(seed >>> 0);
      const decoder = tokenizer.streamDecoder(promptIds.slice(-4));
      const ids = [...promptIds];
      const cache = adapter ? null : base.newCache(promptIds.length + tokens);
      let row = adapter ? adapterNext(adapter, ids) : base.forward(promptIds, cache!).subarray((promptIds.length - 1) * V);
      let text = '';
      for (let i = 0; i < tokens; i++) {
        const id = sampleRow(row, V, temperature, rand);
        if (eos.has(id)) break;
        ids.push(id);
        text += decoder.push(id);
        if (i + 1 < tokens) row = adapter ? adapterNext(adapter, ids) : base.forward([id], cache!);
      }
      return text + decoder.flush();
    },
    async createTrainer(adapterConfig, seed, options) {
      const trainer = new ReferenceTrainer(config, host, adapterConfig, seed, options);
      return { trainer, arenaBytes: 0, read: async () => trainer.adapter(), destroy: () => {} };
    },
    destroy() {},
  };
}
