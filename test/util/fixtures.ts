/**
 * Tiny random checkpoints of every supported architecture, as Hugging Face folders in memory:
 * config.json, generation_config.json, the tokenizer files of stories260K (vocab 512, passed in by
 * the caller so this module works in Node and in the browser), and model.safetensors in F32, F16 or
 * BF16, or sharded with model.safetensors.index.json. `host` holds the f32 values the stored bytes
 * decode to, so a CPU ReferenceModel built from it sees exactly what the loader uploads.
 */
import { f32ToF16Bits } from '../../src/gpu/f16.ts';
import { parseModelConfig, type ModelConfig } from '../../src/model/config.ts';
import type { HostWeights } from '../../src/model/reference.ts';
import { tensorToF32 } from '../../src/model/reference.ts';
import { writeSafetensors, type SafetensorsDtype } from '../../src/model/safetensors.ts';
import { expectedTensors } from '../../src/model/tensors.ts';
import { randomF32 } from './random.ts';

export type FixtureArch = 'llama' | 'llama-tied' | 'mistral' | 'qwen2';
export type FixtureDtype = 'F32' | 'F16' | 'BF16';
export const FIXTURE_ARCHS: readonly FixtureArch[] = ['llama', 'llama-tied', 'mistral', 'qwen2'];
export const FIXTURE_DTYPES: readonly FixtureDtype[] = ['F32', 'F16', 'BF16'];

export interface FixtureSpec {
  arch: FixtureArch;
  dtype: FixtureDtype;
  /** Split the weights over this many shard files with an index (default 1: model.safetensors). */
  shards?: number;
  seed?: number;
}

/** tokenizer.json and tokenizer_config.json texts (stories260K's: vocab 512). */
export interface TokenizerFiles {
  tokenizerJson: string;
  tokenizerConfig: string;
}

export interface FixtureTensor {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  data: Uint8Array;
}

export interface Fixture {
  name: string;
  /** The folder: file name -> bytes or text. */
  files: Map<string, Uint8Array | string>;
  rawConfig: Record<string, unknown>;
  config: ModelConfig;
  /** Stored tensors in file order (tests rewrite them to make broken checkpoints). */
  tensors: FixtureTensor[];
  /** f32 values of the stored tensors (after F16/BF16 rounding). */
  host: HostWeights;
}

/** Odd sizes on purpose: K = 36 and 44 are not multiples of 8, so no kernel's lucky alignment hides a bug. */
export function fixtureConfig(arch: FixtureArch): Record<string, unknown> {
  const base = {
    hidden_size: 36,
    intermediate_size: 44,
    num_hidden_layers: 2,
    num_attention_heads: 6,
    num_key_value_heads: 2,
    head_dim: 6,
    vocab_size: 512,
    max_position_embeddings: 64,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    hidden_act: 'silu',
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: 'float32',
  };
  switch (arch) {
    case 'llama':
      return { ...base, architectures: ['LlamaForCausalLM'], model_type: 'llama', tie_word_embeddings: false, attention_bias: false };
    case 'llama-tied':
      return { ...base, architectures: ['LlamaForCausalLM'], model_type: 'llama', tie_word_embeddings: true, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 32 } };
    case 'mistral':
      // A window as long as the context (= full attention); arch-fixtures.test.ts also runs a shorter one.
      return { ...base, architectures: ['MistralForCausalLM'], model_type: 'mistral', tie_word_embeddings: false, sliding_window: 64, rope_theta: 1e6 };
    case 'qwen2':
      return { ...base, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', tie_word_embeddings: true, use_sliding_window: false, sliding_window: 32, eos_token_id: [2, 0] };
  }
}

function bf16Bits(v: number): number {
  const u = new Uint32Array(Float32Array.of(v).buffer)[0];
  if ((u & 0x7fffffff) > 0x7f800000) return (u >>> 16) | 0x40; // NaN stays NaN
  return (u + 0x7fff + ((u >>> 16) & 1)) >>> 16; // round to nearest even
}

/** Encode f32 values as `dtype` bytes (little-endian). */
export function encodeTensor(values: Float32Array, dtype: FixtureDtype): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(values.slice().buffer);
  const h = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) h[i] = dtype === 'F16' ? f32ToF16Bits(values[i]) : bf16Bits(values[i]);
  return new Uint8Array(h.buffer);
}

/** Random values with sensible scales: unit-ish norms, small linears, O(1) embeddings. */
function tensorValues(name: string, n: number, fanIn: number, seed: number): Float32Array {
  if (name.endsWith('norm.weight')) return randomF32(n, seed, 0.2).map((v) => 1 + v);
  if (name.endsWith('.bias')) return randomF32(n, seed, 0.1);
  if (name === 'model.embed_tokens.weight') return randomF32(n, seed, 1);
  return randomF32(n, seed, 1.5 / Math.sqrt(fanIn));
}

function shardName(i: number, n: number): string {
  return `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
}

export function makeFixture(spec: FixtureSpec, tokenizer: TokenizerFiles): Fixture {
  const rawConfig = fixtureConfig(spec.arch);
  const config = parseModelConfig(rawConfig);
  const seed = spec.seed ?? 1234;
  const tensors: FixtureTensor[] = [];
  const host: HostWeights = new Map();
  for (const [i, t] of expectedTensors(config).entries()) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    const data = encodeTensor(tensorValues(t.name, n, t.shape[t.shape.length - 1], seed + i), spec.dtype);
    const stored: FixtureTensor = { name: t.name, dtype: spec.dtype, shape: t.shape, data };
    tensors.push(stored);
    host.set(t.name, tensorToF32({ ...stored, begin: 0, end: data.length }, data));
  }
  // Old Llama checkpoints carry the RoPE table; the loader must skip it.
  if (spec.arch === 'llama') tensors.splice(3, 0, { name: 'model.layers.0.self_attn.rotary_emb.inv_freq', dtype: 'F32', shape: [3], data: encodeTensor(Float32Array.of(1, 0.1, 0.01), 'F32') });

  const files = new Map<string, Uint8Array | string>([
    ['config.json', JSON.stringify(rawConfig, null, 2)],
    ['generation_config.json', JSON.stringify({ bos_token_id: 1, eos_token_id: 2, do_sample: true, temperature: 0.7, top_p: 0.9 })],
    ['tokenizer.json', tokenizer.tokenizerJson],
    ['tokenizer_config.json', tokenizer.tokenizerConfig],
  ]);
  const shards = spec.shards ?? 1;
  if (shards <= 1) files.set('model.safetensors', writeSafetensors(tensors, { format: 'pt' }));
  else {
    const per = Math.ceil(tensors.length / shards);
    const weightMap: Record<string, string> = {};
    for (let s = 0; s < shards; s++) {
      const part = tensors.slice(s * per, (s + 1) * per);
      for (const t of part) weightMap[t.name] = shardName(s, shards);
      files.set(shardName(s, shards), writeSafetensors(part, { format: 'pt' }));
    }
    const totalSize = tensors.reduce((a, t) => a + t.data.length, 0);
    files.set('model.safetensors.index.json', JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }));
  }
  const name = `${spec.arch} ${spec.dtype}${shards > 1 ? ` ${shards} shards` : ''}`;
  return { name, files, rawConfig, config, tensors, host };
}

/** The fixture's files with some replaced (or removed, for undefined). */
export function withFiles(f: Fixture, changes: Record<string, Uint8Array | string | undefined>): Map<string, Uint8Array | string> {
  const out = new Map(f.files);
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined) out.delete(k);
    else out.set(k, v);
  }
  return out;
}
