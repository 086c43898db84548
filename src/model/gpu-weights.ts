/**
 * A model's weights resident on the GPU: Linear weights (and the embedding, which doubles as the
 * LM head when tied) in the chosen storage format, norms and biases as f32 vectors, and RoPE's
 * inverse frequencies. Built from f32 host tensors (tests, CLI) by uploadModelWeights, or streamed
 * from a checkpoint by loader.ts; both end in assembleModelWeights.
 */
import { createStorage, uploadStorage } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/device.ts';
import { uploadWeight } from '../kernels/quantize.ts';
import { ropeInvFreq } from '../kernels/rope.ts';
import { rowScaleWords, rowWords, type GpuWeight, type WeightFormat } from '../kernels/weights.ts';
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

/**
 * A layer's weights derived for the fused plan (src/kernels/plan.ts): q, k and v concatenated
 * along N into one [nHeads·hd + 2·nKvHeads·hd, hidden] weight (same format), so one dispatch
 * computes all three, and their biases likewise. Copies of the per-module weights, which stay
 * (the trainer and the LoRA code index them per module).
 */
export interface FusedLayerWeights {
  qkv: GpuWeight; // [Nq + Nk + Nv, hidden], one shard
  qkvBias?: GPUBuffer; // [Nq + Nk + Nv] f32 when the model has q/k/v biases
  cols: [number, number]; // [Nq, Nk]: where k and v start
}

/** Fused weights per model, built on first use (fusedLayerWeights) and freed by the model's destroy(). */
const fusedCache = new WeakMap<GpuModelWeights, (FusedLayerWeights | null)[]>();

/**
 * Layer l's concatenated q/k/v (copied on the GPU once, then cached with the model), or null when
 * they cannot be fused: a module split into several shards, or the concatenation larger than one
 * binding. The copies are encoded and submitted here; later submissions see them (queue order).
 */
export function fusedLayerWeights(ctx: GpuContext, weights: GpuModelWeights, l: number): FusedLayerWeights | null {
  let per = fusedCache.get(weights);
  if (!per) fusedCache.set(weights, (per = []));
  if (per[l] !== undefined) return per[l];
  const lw = weights.layers[l];
  const mods = [lw.linear.q_proj, lw.linear.k_proj, lw.linear.v_proj];
  const { format, K } = mods[0];
  const N = mods.reduce((a, w) => a + w.N, 0);
  const dw = rowWords(format, K), sw = rowScaleWords(format, K);
  const fits = mods.every((w) => w.shards.length === 1 && w.K === K && w.format === format) && N * dw * 4 <= ctx.limits.maxStorageBufferBindingSize;
  if (!fits) return (per[l] = null);
  const label = `model.layers.${l}.self_attn.qkv_proj`;
  const data = createStorage(ctx, N * dw * 4, `${label}.data`); // [N, dw] words of the format
  const scales = format === 'q4' ? createStorage(ctx, N * sw * 4, `${label}.scales`) : undefined; // [N, sw] u32 of f16 pairs
  const biases = [lw.bias.q_proj, lw.bias.k_proj, lw.bias.v_proj];
  const qkvBias = biases.every((b) => b) ? createStorage(ctx, N * 4, `${label}.bias`) : undefined; // [N] f32
  const enc = ctx.device.createCommandEncoder({ label: `${label} concat` });
  let row = 0;
  mods.forEach((w, i) => {
    const s = w.shards[0];
    enc.copyBufferToBuffer(s.data, 0, data, row * dw * 4, w.N * dw * 4);
    if (scales) enc.copyBufferToBuffer(s.scales!, 0, scales, row * sw * 4, w.N * sw * 4);
    if (qkvBias) enc.copyBufferToBuffer(biases[i]!, 0, qkvBias, row * 4, w.N * 4);
    row += w.N;
  });
  ctx.device.queue.submit([enc.finish()]);
  const qkv: GpuWeight = { label, format, N, K, shards: [{ rowStart: 0, rows: N, data, scales }] };
  return (per[l] = { qkv, qkvBias, cols: [mods[0].N, mods[1].N] });
}

function destroyFused(weights: GpuModelWeights): void {
  for (const f of fusedCache.get(weights) ?? []) {
    if (!f) continue;
    destroyWeight(f.qkv);
    f.qkvBias?.destroy();
  }
  fusedCache.delete(weights);
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
  const model: GpuModelWeights = {
    config,
    format,
    embed,
    lmHead,
    finalNorm,
    invFreq,
    layers,
    destroy() {
      destroyFused(model);
      for (const b of vecs.values()) b.destroy();
      for (const w of mats.values()) destroyWeight(w);
      invFreq.destroy();
    },
  };
  return model;
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
