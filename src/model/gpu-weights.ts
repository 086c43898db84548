/**
 * A model's weights resident on the GPU: Linear weights (and the embedding, which doubles as the
 * LM head when tied) in the chosen storage format, norms and biases as f32 vectors, and RoPE's
 * inverse frequencies. Built from f32 host tensors (tests, CLI) by uploadModelWeights, or streamed
 * from a checkpoint by loader.ts; both end in assembleModelWeights.
 */
import { uploadStorage } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/device.ts';
import { uploadWeight } from '../kernels/quantize.ts';
import { ropeInvFreq } from '../kernels/rope.ts';
import type { GpuWeight, WeightFormat } from '../kernels/weights.ts';
import type { ModelConfig } from './config.ts';
import type { HostWeights } from './reference.ts';
import { expectedTensors, LINEAR_MODULES, linearTensorName, type LinearModule } from './tensors.ts';

export type BiasModule = 'q_proj' | 'k_proj' | 'v_proj';

export interface LayerWeightsGpu {
  inputNorm: GPUBuffer; // [hidden] f32
  postNorm: GPUBuffer; // [hidden] f32
  linear: Record<LinearModule, GpuWeight>; // each [out, in]
  bias: Partial<Record<BiasModule, GPUBuffer>>; // [out] f32, Qwen2 only
}

export interface GpuModelWeights {
  config: ModelConfig;
  format: WeightFormat;
  embed: GpuWeight; // [vocab, hidden]
  lmHead: GpuWeight; // [vocab, hidden]; the same object as embed when tied
  finalNorm: GPUBuffer; // [hidden] f32
  invFreq: GPUBuffer; // [headDim / 2] f32
  layers: LayerWeightsGpu[];
  destroy(): void;
}

/** Destroy every GPU buffer of a weight (its shards and q4 scales). */
export function destroyWeight(w: GpuWeight): void {
  for (const s of w.shards) {
    s.data.destroy();
    s.scales?.destroy();
  }
}

/**
 * The GpuModelWeights struct from weights already on the GPU, by Hugging Face name: `mats` holds
 * the embedding and every Linear (lm_head unless tied), `vecs` the norms and biases. Takes
 * ownership: destroy() frees everything in both maps and the RoPE table made here.
 * Throws when a tensor the config needs is absent (the callers checked the checkpoint first).
 */
export function assembleModelWeights(ctx: GpuContext, config: ModelConfig, format: WeightFormat, mats: ReadonlyMap<string, GpuWeight>, vecs: ReadonlyMap<string, GPUBuffer>): GpuModelWeights {
  const mat = (name: string) => {
    const w = mats.get(name);
    if (!w) throw new Error(`gpu weights: weight '${name}' was not uploaded`);
    return w;
  };
  const vec = (name: string) => {
    const b = vecs.get(name);
    if (!b) throw new Error(`gpu weights: vector '${name}' was not uploaded`);
    return b;
  };
  const layers: LayerWeightsGpu[] = [];
  for (let l = 0; l < config.nLayers; l++) {
    const linear = {} as Record<LinearModule, GpuWeight>;
    for (const m of LINEAR_MODULES) linear[m] = mat(linearTensorName(l, m));
    const bias: Partial<Record<BiasModule, GPUBuffer>> = {};
    if (config.qkvBias) for (const m of ['q_proj', 'k_proj', 'v_proj'] as const) bias[m] = vec(`model.layers.${l}.self_attn.${m}.bias`);
    layers.push({ inputNorm: vec(`model.layers.${l}.input_layernorm.weight`), postNorm: vec(`model.layers.${l}.post_attention_layernorm.weight`), linear, bias });
  }
  const embed = mat('model.embed_tokens.weight');
  const lmHead = config.tieWordEmbeddings ? embed : mat('lm_head.weight');
  const finalNorm = vec('model.norm.weight');
  const invFreq = uploadStorage(ctx, ropeInvFreq(config.headDim, config.ropeTheta, config.ropeScaling), 'rope.invFreq'); // [headDim / 2] f32
  return {
    config,
    format,
    embed,
    lmHead,
    finalNorm,
    invFreq,
    layers,
    destroy() {
      for (const b of vecs.values()) b.destroy();
      for (const w of mats.values()) destroyWeight(w);
      invFreq.destroy();
    },
  };
}

function need(host: HostWeights, name: string): Float32Array {
  const t = host.get(name);
  if (!t) throw new Error(`gpu weights: tensor '${name}' is missing from the host weights`);
  return t;
}

/** Upload f32 host tensors (checked by checkCheckpoint) in `format`. On failure nothing stays allocated. */
export async function uploadModelWeights(ctx: GpuContext, config: ModelConfig, host: HostWeights, format: WeightFormat): Promise<GpuModelWeights> {
  const mats = new Map<string, GpuWeight>();
  const vecs = new Map<string, GPUBuffer>();
  try {
    for (const t of expectedTensors(config)) {
      if (t.role === 'vector') vecs.set(t.name, uploadStorage(ctx, need(host, t.name), t.name));
      else mats.set(t.name, await uploadWeight(ctx, need(host, t.name), t.shape[0], t.shape[1], format, t.name));
    }
    return assembleModelWeights(ctx, config, format, mats, vecs);
  } catch (e) {
    for (const b of vecs.values()) b.destroy();
    for (const w of mats.values()) destroyWeight(w);
    throw e;
  }
}
