/**
 * Benchmark models without downloads: the EXACT shapes of a real config.json (so every matmul,
 * attention and KV-cache size is the real one) with random weights made on the GPU, a tokenizer
 * whose every id decodes to a short fixed string, and prompts given as token ids.
 *
 * Weights: each tensor of expectedTensors(config) is filled by the GPU fill kernel (fill.ts) and
 * converted to the storage format by buildWeight, batch by batch, so no JS array of the weights
 * ever exists (SmolLM2's f32 embedding alone is 113 MB). Values: Linear weights ~ U(-1/√K, 1/√K)
 * and norms ~ U(0.9, 1.1), which keeps activations O(1) through the layers; the timing does not
 * depend on the values, but NaN/Inf logits would make sampling meaningless.
 */
import { createStorage } from '../src/gpu/buffers.ts';
import type { GpuContext } from '../src/gpu/device.ts';
import { encodeDispatches, type KernelDispatch } from '../src/gpu/dispatch.ts';
import { fillUniform, type FillRange } from '../src/kernels/fill.ts';
import { buildWeight } from '../src/kernels/quantize.ts';
import { weightBytes, type GpuWeight, type WeightFormat } from '../src/kernels/weights.ts';
import type { EngineModel } from '../src/engine/engine.ts';
import { mulberry32 } from '../src/util/prng.ts';
import { parseModelConfig, type ModelConfig } from '../src/model/config.ts';
import { assembleModelWeights, destroyWeight, type GpuModelWeights } from '../src/model/gpu-weights.ts';
import { expectedTensors, LINEAR_MODULES, linearShape } from '../src/model/tensors.ts';
import { TextTokenizer } from '../src/model/tokenizer.ts';

export type SyntheticModelId = 'stories260k' | 'stories15m' | 'smollm2-135m';
export const SYNTHETIC_MODEL_IDS: readonly SyntheticModelId[] = ['stories260k', 'stories15m', 'smollm2-135m'];

/**
 * The models' config.json fields that shape the network, verbatim from HuggingFaceTB/SmolLM2-135M
 * and from the bundled public/models/stories260K/config.json; stories15m has llama2.c's stories15M
 * shapes (dim 288, 6 layers, 6 heads, hidden 768, vocab 32000, context 256). Parsed by parseModelConfig, so a
 * synthetic model goes through the same checks as a downloaded one.
 */
export const SYNTHETIC_CONFIG_JSON: Record<SyntheticModelId, Record<string, unknown>> = {
  'smollm2-135m': {
    architectures: ['LlamaForCausalLM'],
    hidden_size: 576,
    intermediate_size: 1536,
    num_hidden_layers: 30,
    num_attention_heads: 9,
    num_key_value_heads: 3,
    head_dim: 64,
    vocab_size: 49152,
    max_position_embeddings: 8192,
    rms_norm_eps: 1e-5,
    rope_theta: 100000,
    rope_scaling: null,
    hidden_act: 'silu',
    tie_word_embeddings: true,
    attention_bias: false,
    bos_token_id: 0,
    eos_token_id: 0,
  },
  stories15m: {
    architectures: ['LlamaForCausalLM'],
    hidden_size: 288,
    intermediate_size: 768,
    num_hidden_layers: 6,
    num_attention_heads: 6,
    num_key_value_heads: 6,
    head_dim: 48,
    vocab_size: 32000,
    max_position_embeddings: 256,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    rope_scaling: null,
    hidden_act: 'silu',
    tie_word_embeddings: true,
    attention_bias: false,
    bos_token_id: 1,
    eos_token_id: 2,
  },
  stories260k: {
    architectures: ['LlamaForCausalLM'],
    hidden_size: 64,
    intermediate_size: 172,
    num_hidden_layers: 5,
    num_attention_heads: 8,
    num_key_value_heads: 4,
    head_dim: 8,
    vocab_size: 512,
    max_position_embeddings: 512,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    rope_scaling: null,
    hidden_act: 'silu',
    tie_word_embeddings: true,
    attention_bias: false,
    bos_token_id: 1,
    eos_token_id: 2,
  },
};

/** Display names (the benchmark tables). */
export const SYNTHETIC_MODEL_NAMES: Record<SyntheticModelId, string> = { 'smollm2-135m': 'SmolLM2-135M', stories15m: 'stories15M', stories260k: 'stories260K' };

export function syntheticConfig(id: SyntheticModelId): ModelConfig {
  const raw = SYNTHETIC_CONFIG_JSON[id];
  if (!raw) throw new Error(`unknown synthetic model '${id}' (known: ${SYNTHETIC_MODEL_IDS.join(', ')})`);
  return parseModelConfig(raw, `${id} config`);
}

/** Parameters of the network (tied embedding counted once), e.g. 134,515,008 for SmolLM2-135M. */
export function parameterCount(config: ModelConfig): number {
  return expectedTensors(config).reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
}

/**
 * Weight bytes one decode token reads from the matmuls: every Linear of every layer plus the LM
 * head, in `format` (q4 scales included). The embedding gather reads one row per token and the
 * norms are vectors: both are left out (under 0.1% of the total for these models), as is the KV
 * cache, which grows with the context (stated in the benchmark docs).
 */
export function decodeWeightBytes(config: ModelConfig, format: WeightFormat): number {
  let perLayer = 0;
  for (const m of LINEAR_MODULES) {
    const [N, K] = linearShape(config, m);
    perLayer += weightBytes(format, N, K);
  }
  return config.nLayers * perLayer + weightBytes(format, config.vocabSize, config.hiddenSize);
}

/** Submit work now without waiting: later submissions see its results (queue order). */
function submit(ctx: GpuContext, dispatches: KernelDispatch[]): void {
  const enc = ctx.device.createCommandEncoder({ label: 'synthetic model fill' });
  encodeDispatches(enc, dispatches);
  ctx.device.queue.submit([enc.finish()]);
}

/** A [N, K] weight in `format` from a GPU random fill, converted batch by batch. */
async function randomWeight(ctx: GpuContext, N: number, K: number, format: WeightFormat, seed: number, label: string): Promise<GpuWeight> {
  const bound = 1 / Math.sqrt(K);
  // buildWeight has submitted the conversion of a batch before it asks for the next one, so one
  // staging buffer at a time is alive (destroy() waits for the work that reads it).
  let staging: GPUBuffer | undefined;
  try {
    return await buildWeight(ctx, N, K, format, label, (rowStart, rows) => {
      staging?.destroy();
      staging = createStorage(ctx, rows * K * 4, `${label} rows@${rowStart}`); // [rows, K] f32
      submit(ctx, [fillUniform(ctx, { out: staging, n: rows * K, seed, lo: -bound, hi: bound, first: rowStart * K })]);
      return staging;
    }, { maxBatchBytes: 16 * 2 ** 20 });
  } finally {
    staging?.destroy();
  }
}

function randomVector(ctx: GpuContext, n: number, seed: number, range: FillRange, label: string): GPUBuffer {
  const buf = createStorage(ctx, n * 4, label); // [n] f32
  submit(ctx, [fillUniform(ctx, { out: buf, n, seed, ...range })]);
  return buf;
}

/**
 * Random weights with `config`'s exact shapes, stored in `format`, made on the GPU. Same seed,
 * same weights. On failure nothing stays allocated.
 */
export async function syntheticModel(ctx: GpuContext, config: ModelConfig, format: WeightFormat, seed: number): Promise<GpuModelWeights> {
  const mats = new Map<string, GpuWeight>();
  const vecs = new Map<string, GPUBuffer>();
  try {
    for (const [i, t] of expectedTensors(config).entries()) {
      const s = (seed * 7919 + i) >>> 0; // one fill stream per tensor
      if (t.role === 'vector') {
        const range = t.name.endsWith('.bias') ? { lo: -0.01, hi: 0.01 } : { lo: 0.9, hi: 1.1 };
        vecs.set(t.name, randomVector(ctx, t.shape[0], s, range, t.name));
      } else mats.set(t.name, await randomWeight(ctx, t.shape[0], t.shape[1], format, s, t.name));
    }
    await ctx.device.queue.onSubmittedWorkDone();
    return assembleModelWeights(ctx, config, format, mats, vecs);
  } catch (e) {
    for (const b of vecs.values()) b.destroy();
    for (const w of mats.values()) destroyWeight(w);
    throw e;
  }
}

/**
 * tokenizer.json of a vocabulary whose id i is the token `<i>` (a BPE model without merges, no
 * normalizer or pre-tokenizer, no special tokens): decoding any ids gives readable text, which is
 * all the engine's streaming detokenizer needs. Encoding text is not meaningful: prompts are ids.
 */
export function syntheticTokenizerJson(vocabSize: number): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  for (let i = 0; i < vocabSize; i++) vocab[`<${i}>`] = i;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [],
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: null,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  };
}

export function syntheticTokenizer(config: ModelConfig): TextTokenizer {
  return TextTokenizer.load(syntheticTokenizerJson(config.vocabSize), {}, config.eosTokenIds);
}

/**
 * `n` prompt token ids, uniform over the vocabulary minus the BOS/EOS ids (a benchmark run must
 * not depend on where EOS happens to fall; it also sets ignore_eos). Same seed, same prompt.
 */
export function syntheticPrompt(config: ModelConfig, n: number, seed: number): number[] {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`syntheticPrompt: n = ${n} must be a positive integer`);
  const special = new Set([...config.eosTokenIds, ...(config.bosTokenId === null ? [] : [config.bosTokenId])]);
  if (special.size >= config.vocabSize) throw new RangeError('syntheticPrompt: the vocabulary holds only special tokens');
  const rng = mulberry32(seed);
  const out: number[] = [];
  while (out.length < n) {
    const id = Math.floor(rng() * config.vocabSize);
    if (!special.has(id)) out.push(id);
  }
  return out;
}

/** What the engine serves: synthetic weights and tokenizer for `config`. */
export async function syntheticEngineModel(ctx: GpuContext, config: ModelConfig, format: WeightFormat, seed: number): Promise<EngineModel> {
  const tokenizer = syntheticTokenizer(config);
  const weights = await syntheticModel(ctx, config, format, seed);
  return { config, tokenizer, weights };
}
