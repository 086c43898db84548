/**
 * Which tensors a Llama-family checkpoint must hold, with their shapes from the config, and the
 * check of a safetensors header against that list. Names are Hugging Face's; extra tensors (e.g.
 * rotary_emb.inv_freq in old checkpoints) are ignored, missing or misshaped ones are typed errors.
 */
import type { ModelConfig } from './config.ts';
import type { TensorInfo } from './safetensors.ts';
import { ModelConsistencyError } from './validate.ts';

/** Linear layers of a decoder block (the LoRA target modules of the learning issue). */
export const LINEAR_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type LinearModule = (typeof LINEAR_MODULES)[number];

export interface ExpectedTensor {
  name: string;
  shape: number[];
  /** What the loader makes of it: a Linear weight [out, in], a norm/bias vector, or the embedding. */
  role: 'linear' | 'vector' | 'embedding';
  layer: number | null;
}

export class CheckpointError extends Error {
  readonly code = 'bad-checkpoint';
  constructor(
    readonly file: string,
    readonly tensor: string,
    detail: string,
  ) {
    super(`${file}: tensor '${tensor}' ${detail}`);
    this.name = 'CheckpointError';
  }
}

/** [out, in] of each linear module. */
export function linearShape(c: ModelConfig, m: LinearModule): [number, number] {
  const q = c.nHeads * c.headDim;
  const kv = c.nKvHeads * c.headDim;
  switch (m) {
    case 'q_proj':
      return [q, c.hiddenSize];
    case 'k_proj':
    case 'v_proj':
      return [kv, c.hiddenSize];
    case 'o_proj':
      return [c.hiddenSize, q];
    case 'gate_proj':
    case 'up_proj':
      return [c.intermediateSize, c.hiddenSize];
    case 'down_proj':
      return [c.hiddenSize, c.intermediateSize];
  }
}

export function linearTensorName(layer: number, m: LinearModule): string {
  const block = m === 'gate_proj' || m === 'up_proj' || m === 'down_proj' ? 'mlp' : 'self_attn';
  return `model.layers.${layer}.${block}.${m}.weight`;
}

export function expectedTensors(c: ModelConfig): ExpectedTensor[] {
  const out: ExpectedTensor[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocabSize, c.hiddenSize], role: 'embedding', layer: null }];
  for (let i = 0; i < c.nLayers; i++) {
    const p = `model.layers.${i}`;
    out.push({ name: `${p}.input_layernorm.weight`, shape: [c.hiddenSize], role: 'vector', layer: i });
    for (const m of LINEAR_MODULES) {
      out.push({ name: linearTensorName(i, m), shape: linearShape(c, m), role: 'linear', layer: i });
      if (c.qkvBias && (m === 'q_proj' || m === 'k_proj' || m === 'v_proj')) {
        out.push({ name: `${p}.self_attn.${m}.bias`, shape: [linearShape(c, m)[0]], role: 'vector', layer: i });
      }
    }
    out.push({ name: `${p}.post_attention_layernorm.weight`, shape: [c.hiddenSize], role: 'vector', layer: i });
  }
  out.push({ name: 'model.norm.weight', shape: [c.hiddenSize], role: 'vector', layer: null });
  if (!c.tieWordEmbeddings) out.push({ name: 'lm_head.weight', shape: [c.vocabSize, c.hiddenSize], role: 'linear', layer: null });
  return out;
}

const LOADABLE_DTYPES = new Set(['F32', 'F16', 'BF16']);

const LAYER_NAME = /^model\.layers\.(\d+)\./;

/** Decoder layers a checkpoint holds, from its tensor names: the highest `model.layers.{i}.` + 1, and that tensor. */
export function checkpointLayers(found: ReadonlyMap<string, TensorInfo & { file?: string }>): { count: number; tensor: string | null; file?: string } {
  let count = 0;
  let tensor: string | null = null;
  let file: string | undefined;
  for (const [name, t] of found) {
    const m = LAYER_NAME.exec(name);
    if (m && Number(m[1]) + 1 > count) {
      count = Number(m[1]) + 1;
      tensor = name;
      file = t.file;
    }
  }
  return { count, tensor, file };
}

/**
 * config.json against what the checkpoint holds, before any per-tensor check: the layer count
 * (from tensor names: more layers than num_hidden_layers would be silently dropped, fewer would
 * be reported one missing tensor at a time) and the embedding / LM head rows (vocab_size).
 */
function checkConfigAgainstCheckpoint(c: ModelConfig, found: ReadonlyMap<string, TensorInfo & { file?: string }>, file: string): void {
  const held = checkpointLayers(found);
  if (held.count > c.nLayers) {
    throw new ModelConsistencyError('config.json', 'num_hidden_layers', `= ${c.nLayers}, but ${held.file ?? file} holds ${held.count} layers (tensor '${held.tensor}'); the config must describe every layer of the checkpoint`);
  }
  if (held.count < c.nLayers) {
    throw new ModelConsistencyError('config.json', 'num_hidden_layers', `= ${c.nLayers}, but ${file} holds only ${held.count} layers (no tensor 'model.layers.${held.count}.*')`);
  }
  for (const name of ['model.embed_tokens.weight', ...(c.tieWordEmbeddings ? [] : ['lm_head.weight'])]) {
    const t = found.get(name);
    // Only a wrong row count with the right width is a vocabulary mismatch; anything else is a shape error.
    if (t && t.shape.length === 2 && t.shape[1] === c.hiddenSize && t.shape[0] !== c.vocabSize) {
      throw new ModelConsistencyError('config.json', 'vocab_size', `= ${c.vocabSize}, but tensor '${name}' in ${t.file ?? file} has ${t.shape[0]} rows (one per token id)`);
    }
  }
}

/**
 * Check that the tensors found (across all shards) cover what the config needs with the right
 * shapes and a dtype we convert. Returns the expected list keyed by name.
 */
export function checkCheckpoint(c: ModelConfig, found: ReadonlyMap<string, TensorInfo & { file?: string }>, file = 'model.safetensors'): Map<string, ExpectedTensor> {
  checkConfigAgainstCheckpoint(c, found, file);
  const want = new Map(expectedTensors(c).map((t) => [t.name, t]));
  for (const [name, t] of want) {
    const got = found.get(name);
    if (!got) throw new CheckpointError(file, name, `is missing (the config asks for ${c.architecture} with ${c.nLayers} layers${c.tieWordEmbeddings ? ', tied embeddings' : ''})`);
    const where = got.file ?? file;
    if (got.shape.length !== t.shape.length || got.shape.some((d, i) => d !== t.shape[i])) {
      throw new CheckpointError(where, name, `has shape [${got.shape.join(', ')}], config.json implies [${t.shape.join(', ')}]`);
    }
    if (!LOADABLE_DTYPES.has(got.dtype)) throw new CheckpointError(where, name, `has dtype ${got.dtype}; only F32, F16 and BF16 are loaded`);
  }
  return want;
}
