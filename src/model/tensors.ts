/**
 * Which tensors a Llama-family checkpoint must hold, with their shapes from the config, and the
 * check of a safetensors header against that list. Names are Hugging Face's; extra tensors (e.g.
 * rotary_emb.inv_freq in old checkpoints) are ignored, missing or misshaped ones are typed errors.
 */
import type { ModelConfig } from './config.ts';
import type { TensorInfo } from './safetensors.ts';

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

/**
 * Check that the tensors found (across all shards) cover what the config needs with the right
 * shapes and a dtype we convert. Returns the expected list keyed by name.
 */
export function checkCheckpoint(c: ModelConfig, found: ReadonlyMap<string, TensorInfo & { file?: string }>, file = 'model.safetensors'): Map<string, ExpectedTensor> {
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
