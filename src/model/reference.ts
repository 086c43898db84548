/**
 * The whole-model CPU reference forward of a Llama-family decoder: the spec the GPU forward is
 * tested against, and (in the learning issue) the base of gradient checks. It composes the kernel
 * families' own CPU references, with a dense per-sequence KV cache, so every op has one definition.
 * Straight loops over Float32Array: slow, for tiny models and short sequences only.
 * Attention honours config.slidingWindow (Mistral: a query sees the last slidingWindow positions,
 * itself included) unless forward() is given another key window (sinks + window, as the kernels').
 */
import { UNBOUNDED_WINDOW, attentionDenseRef } from '../kernels/attention.ts';
import { embeddingRef } from '../kernels/embedding.ts';
import { rmsNormRef } from '../kernels/rmsnorm.ts';
import { ropeInvFreq, ropeRef } from '../kernels/rope.ts';
import { siluGateRef } from '../kernels/silu.ts';
import { matmulRef } from '../kernels/weights.ts';
import { f16BitsToF32 } from '../gpu/f16.ts';
import type { ModelConfig } from './config.ts';
import { headerLength, parseHeader, type TensorInfo } from './safetensors.ts';
import { checkCheckpoint, linearShape, linearTensorName, type LinearModule } from './tensors.ts';

/** f32 copies of a checkpoint's tensors, by Hugging Face name. */
export type HostWeights = Map<string, Float32Array>;

/** Decode one tensor's bytes (F32, F16 or BF16, little-endian) to f32. */
export function tensorToF32(t: TensorInfo, bytes: Uint8Array): Float32Array {
  const n = bytes.length / (t.dtype === 'F32' ? 4 : 2);
  const out = new Float32Array(n);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (t.dtype === 'F32') for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
  else if (t.dtype === 'F16') for (let i = 0; i < n; i++) out[i] = f16BitsToF32(dv.getUint16(2 * i, true));
  else if (t.dtype === 'BF16') {
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) u[i] = dv.getUint16(2 * i, true) << 16;
  } else throw new Error(`tensorToF32: dtype ${t.dtype} of '${t.name}' is not a float type`);
  return out;
}

/** Parse a whole in-memory safetensors file into f32 host tensors checked against the config. */
export function hostWeightsFromSafetensors(config: ModelConfig, file: Uint8Array, name = 'model.safetensors'): HostWeights {
  const hlen = headerLength(file, name);
  const header = parseHeader(file.subarray(8, 8 + hlen), name, file.length - 8 - hlen);
  checkCheckpoint(config, new Map(header.tensors.map((t) => [t.name, t])), name);
  const out: HostWeights = new Map();
  for (const t of header.tensors) out.set(t.name, tensorToF32(t, file.subarray(header.dataOffset + t.begin, header.dataOffset + t.end)));
  return out;
}

/** Dense KV cache of one sequence: per layer K and V as [maxLen, nKvHeads, headDim]. */
export interface DenseKvCache {
  length: number;
  k: Float32Array[];
  v: Float32Array[];
}

export class ReferenceModel {
  private readonly invFreq: Float32Array;

  constructor(
    readonly config: ModelConfig,
    private readonly w: HostWeights,
  ) {
    this.invFreq = ropeInvFreq(config.headDim, config.ropeTheta, config.ropeScaling);
  }

  newCache(maxLen = this.config.maxPositionEmbeddings): DenseKvCache {
    const rowLen = maxLen * this.config.nKvHeads * this.config.headDim;
    return {
      length: 0,
      k: Array.from({ length: this.config.nLayers }, () => new Float32Array(rowLen)),
      v: Array.from({ length: this.config.nLayers }, () => new Float32Array(rowLen)),
    };
  }

  private weight(name: string): Float32Array {
    const t = this.w.get(name);
    if (!t) throw new Error(`reference model: tensor '${name}' is not loaded`);
    return t;
  }

  /** x [T, in] -> [T, out] through layer `layer`'s module `m` (+ its bias when the model has one). */
  linear(layer: number, m: LinearModule, x: Float32Array, T: number): Float32Array {
    const [out, inp] = linearShape(this.config, m);
    const y = matmulRef(x, this.weight(linearTensorName(layer, m)), T, out, inp);
    const bias = this.w.get(linearTensorName(layer, m).replace(/weight$/, 'bias'));
    if (bias) for (let t = 0; t < T; t++) for (let o = 0; o < out; o++) y[t * out + o] += bias[o];
    return y;
  }

  /** The key window of a sequence by default: config.slidingWindow (none: unbounded), no sinks. */
  get defaultWindow(): { sinks: number; window: number } {
    return { sinks: 0, window: this.config.slidingWindow ?? UNBOUNDED_WINDOW };
  }

  /**
   * Run `tokens` (positions cache.length ..) through the model, appending their K/V to the cache.
   * Returns the logits [T, vocab] (all positions: prefill callers take the last row).
   * `window`: the sequence's key window (default: defaultWindow).
   */
  forward(tokens: readonly number[], cache: DenseKvCache, window = this.defaultWindow): Float32Array {
    const c = this.config;
    const T = tokens.length;
    const start = cache.length;
    const kvRow = c.nKvHeads * c.headDim;
    if (start + T > cache.k[0].length / kvRow) throw new RangeError(`reference forward: ${start + T} positions exceed the cache`);
    const positions = Uint32Array.from({ length: T }, (_, i) => start + i);
    const embed = this.weight('model.embed_tokens.weight');
    const x = embeddingRef(Uint32Array.from(tokens), embed, c.vocabSize, c.hiddenSize);

    for (let l = 0; l < c.nLayers; l++) {
      const h = rmsNormRef(x, this.weight(`model.layers.${l}.input_layernorm.weight`), T, c.hiddenSize, c.rmsNormEps);
      const rotated = ropeRef(this.linear(l, 'q_proj', h, T), this.linear(l, 'k_proj', h, T), positions, this.invFreq, { T, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headDim });
      cache.k[l].set(rotated.k, start * kvRow);
      cache.v[l].set(this.linear(l, 'v_proj', h, T), start * kvRow);
      const nPos = start + T;
      const attn = attentionDenseRef(rotated.q, cache.k[l].subarray(0, nPos * kvRow), cache.v[l].subarray(0, nPos * kvRow), positions, nPos, c.nHeads, c.nKvHeads, c.headDim, undefined, window);
      addInPlace(x, this.linear(l, 'o_proj', attn, T));
      const h2 = rmsNormRef(x, this.weight(`model.layers.${l}.post_attention_layernorm.weight`), T, c.hiddenSize, c.rmsNormEps);
      const act = siluGateRef(this.linear(l, 'gate_proj', h2, T), this.linear(l, 'up_proj', h2, T));
      addInPlace(x, this.linear(l, 'down_proj', act, T));
    }
    cache.length = start + T;
    const xn = rmsNormRef(x, this.weight('model.norm.weight'), T, c.hiddenSize, c.rmsNormEps);
    const head = c.tieWordEmbeddings ? embed : this.weight('lm_head.weight');
    return matmulRef(xn, head, T, c.vocabSize, c.hiddenSize);
  }

  /** Greedy decoding: prompt, then `steps` tokens by argmax (first max wins). Stops at maxLen. */
  greedy(prompt: readonly number[], steps: number): number[] {
    const cache = this.newCache(Math.min(this.config.maxPositionEmbeddings, prompt.length + steps));
    let logits = this.forward(prompt, cache);
    let row = logits.subarray((prompt.length - 1) * this.config.vocabSize);
    const out: number[] = [];
    for (let s = 0; s < steps; s++) {
      const next = argmaxRow(row);
      out.push(next);
      if (s === steps - 1) break;
      logits = this.forward([next], cache);
      row = logits;
    }
    return out;
  }
}

function addInPlace(x: Float32Array, d: Float32Array): void {
  for (let i = 0; i < x.length; i++) x[i] += d[i];
}

function argmaxRow(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}
