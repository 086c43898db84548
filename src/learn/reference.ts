/**
 * The CPU reference of a training step: the whole decoder with LoRA adapters, forward with every
 * activation kept, and the backward pass down to each LoRA A and B (the base is frozen), for the
 * DPO loss of a preference pair. It composes the kernel families' own references (forward ops,
 * their *BackwardRef, loraForwardRef/loraBackwardRef), so the GPU trainer is checked against the
 * same definitions its kernels are, and this file is itself checked against finite differences.
 * Straight loops over Float32Array: for tiny models and short sequences. Attention applies the
 * model's sliding window (config.slidingWindow), as the serving forward does.
 */
import { causalAttentionBackwardRef, causalAttentionRef, slidingKeyWindow } from '../kernels/attention-train.ts';
import { embeddingRef } from '../kernels/embedding.ts';
import { loraBackwardRef, loraForwardRef, loraScale } from '../kernels/lora.ts';
import { matmulInputGradRef } from '../kernels/matmul-bwd.ts';
import { rmsNormBackwardRef } from '../kernels/rmsnorm-bwd.ts';
import { rmsNormRef } from '../kernels/rmsnorm.ts';
import { ropeBackwardRef } from '../kernels/rope-bwd.ts';
import { ropeInvFreq, ropeRef } from '../kernels/rope.ts';
import { siluGateBackwardRef } from '../kernels/silu-bwd.ts';
import { siluGateRef } from '../kernels/silu.ts';
import { tokenLogprobsBackwardRef, tokenLogprobsRef } from '../kernels/token-logprobs.ts';
import { matmulRef } from '../kernels/weights.ts';
import type { ModelConfig } from '../model/config.ts';
import type { HostWeights } from '../model/reference.ts';
import { linearShape, linearTensorName, type LinearModule } from '../model/tensors.ts';
import type { HostAdapter } from './adapter.ts';
import { dpoPair, type DpoPairResult } from './dpo.ts';
import { ktoBatch, ktoReferencePoint, type KtoBatchResult, type KtoOptions } from './kto.ts';

/** Gradients of one module's LoRA, PEFT shapes: dA [r, in], dB [out, r]. */
export interface LoraGrad {
  dA: Float32Array;
  dB: Float32Array;
}

/** Keyed by `${layer}.${module}`. */
export type LoraGrads = Map<string, LoraGrad>;

export const loraKey = (layer: number, module: LinearModule) => `${layer}.${module}`;

/** What one layer's forward keeps for the backward. */
interface LayerActs {
  x: Float32Array; // [T, hidden] input of the layer (residual stream)
  h1: Float32Array; // [T, hidden] input norm
  q: Float32Array; // [T, nHeads*hd] after RoPE
  k: Float32Array; // [T, nKv*hd] after RoPE
  v: Float32Array; // [T, nKv*hd]
  att: Float32Array; // [T, nHeads*hd]
  lse: Float32Array; // [T, nHeads]
  xMid: Float32Array; // [T, hidden] after the attention residual
  h2: Float32Array; // [T, hidden] post-attention norm
  gate: Float32Array; // [T, inter]
  up: Float32Array; // [T, inter]
  act: Float32Array; // [T, inter]
}

export interface TrainActivations {
  tokens: number[];
  layers: LayerActs[];
  xFinal: Float32Array; // [T, hidden] before the final norm
  logits: Float32Array; // [T, vocab]
}

/** One preference pair as token ids: the responses follow the same prompt. */
export interface TokenPair {
  prompt: number[];
  chosen: number[];
  rejected: number[];
}

/**
 * One unpaired KTO example as token ids: `completion` follows `prompt` and carries the label;
 * `kl` is the mismatched completion (another example's) that follows the same prompt in the KL
 * sequence (kto.ts: how the partner is chosen). The KL sequence only feeds z0: no gradient.
 */
export interface TokenKto {
  prompt: number[];
  completion: number[];
  label: boolean;
  kl: number[];
}

/** Summed log-probs of a KTO example's two sequences: prompt+completion and prompt+kl. */
export interface KtoLogprobs {
  completion: number;
  kl: number;
}

export class TrainingReference {
  private readonly invFreq: Float32Array;
  private readonly positions = (T: number) => Uint32Array.from({ length: T }, (_, i) => i);
  private readonly lora = new Map<string, { A: Float32Array; B: Float32Array }>();
  readonly scale: number;
  readonly rank: number;

  constructor(
    readonly config: ModelConfig,
    private readonly w: HostWeights,
    adapter: HostAdapter | null,
  ) {
    this.invFreq = ropeInvFreq(config.headDim, config.ropeTheta, config.ropeScaling);
    this.rank = adapter?.config.r ?? 0;
    this.scale = adapter ? loraScale(adapter.config.r, adapter.config.loraAlpha, adapter.config.useRslora) : 0;
    for (const t of adapter?.tensors ?? []) this.lora.set(loraKey(t.layer, t.module), { A: t.A, B: t.B });
  }

  private weight(name: string): Float32Array {
    const t = this.w.get(name);
    if (!t) throw new Error(`training reference: tensor '${name}' is not loaded`);
    return t;
  }

  /** x [T, in] through layer `l`'s module `m`: base (+ bias) + LoRA. */
  private linear(l: number, m: LinearModule, x: Float32Array, T: number): Float32Array {
    const [out, inp] = linearShape(this.config, m);
    const y = matmulRef(x, this.weight(linearTensorName(l, m)), T, out, inp);
    const bias = this.w.get(linearTensorName(l, m).replace(/weight$/, 'bias'));
    if (bias) for (let t = 0; t < T; t++) for (let o = 0; o < out; o++) y[t * out + o] += bias[o];
    const ab = this.lora.get(loraKey(l, m));
    if (ab) addInto(y, loraForwardRef(x, ab.A, ab.B, T, inp, out, this.rank, this.scale));
    return y;
  }

  /** dx of `linear` for dy, accumulating the module's LoRA gradients into `grads`. */
  private linearBackward(l: number, m: LinearModule, x: Float32Array, dy: Float32Array, T: number, grads: LoraGrads): Float32Array {
    const [out, inp] = linearShape(this.config, m);
    const dx = matmulInputGradRef(dy, this.weight(linearTensorName(l, m)), T, out, inp);
    const ab = this.lora.get(loraKey(l, m));
    if (ab) {
      const g = loraBackwardRef(x, ab.A, ab.B, dy, T, inp, out, this.rank, this.scale);
      addInto(dx, g.dx);
      const acc = grads.get(loraKey(l, m));
      if (acc) {
        addInto(acc.dA, g.dA);
        addInto(acc.dB, g.dB);
      } else grads.set(loraKey(l, m), { dA: g.dA, dB: g.dB });
    }
    return dx;
  }

  /** Forward of one whole sequence (positions 0..T-1), keeping what the backward needs. */
  forward(tokens: readonly number[]): TrainActivations {
    const c = this.config;
    const T = tokens.length;
    const eps = c.rmsNormEps;
    const shape = { T, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headDim };
    const embed = this.weight('model.embed_tokens.weight');
    let x = embeddingRef(Uint32Array.from(tokens), embed, c.vocabSize, c.hiddenSize);
    const layers: LayerActs[] = [];
    for (let l = 0; l < c.nLayers; l++) {
      const h1 = rmsNormRef(x, this.weight(`model.layers.${l}.input_layernorm.weight`), T, c.hiddenSize, eps);
      const { q, k } = ropeRef(this.linear(l, 'q_proj', h1, T), this.linear(l, 'k_proj', h1, T), this.positions(T), this.invFreq, shape);
      const v = this.linear(l, 'v_proj', h1, T);
      const { out: att, lse } = causalAttentionRef(q, k, v, T, c.nHeads, c.nKvHeads, c.headDim, undefined, slidingKeyWindow(c.slidingWindow));
      const xMid = sum(x, this.linear(l, 'o_proj', att, T));
      const h2 = rmsNormRef(xMid, this.weight(`model.layers.${l}.post_attention_layernorm.weight`), T, c.hiddenSize, eps);
      const gate = this.linear(l, 'gate_proj', h2, T);
      const up = this.linear(l, 'up_proj', h2, T);
      const act = siluGateRef(gate, up);
      layers.push({ x, h1, q, k, v, att, lse, xMid, h2, gate, up, act });
      x = sum(xMid, this.linear(l, 'down_proj', act, T));
    }
    const xn = rmsNormRef(x, this.weight('model.norm.weight'), T, c.hiddenSize, eps);
    const head = c.tieWordEmbeddings ? embed : this.weight('lm_head.weight');
    return { tokens: [...tokens], layers, xFinal: x, logits: matmulRef(xn, head, T, c.vocabSize, c.hiddenSize) };
  }

  /** Targets and per-position weights of the response tokens: position t predicts tokens[t+1]. */
  private responseTargets(T: number, tokens: readonly number[], promptLen: number, coef: number): { targets: Uint32Array; weights: Float32Array } {
    const targets = new Uint32Array(T);
    const weights = new Float32Array(T);
    for (let t = Math.max(0, promptLen - 1); t < T - 1; t++) {
      targets[t] = tokens[t + 1];
      weights[t] = coef;
    }
    return { targets, weights };
  }

  /** Sum of log p(response token | everything before) for a sequence = prompt ++ response. */
  responseLogprob(acts: TrainActivations, promptLen: number): number {
    const T = acts.tokens.length;
    const { targets, weights } = this.responseTargets(T, acts.tokens, promptLen, 1);
    const lp = tokenLogprobsRef(acts.logits, targets, T, this.config.vocabSize);
    let s = 0;
    for (let t = 0; t < T; t++) if (weights[t]) s += lp[t];
    return s;
  }

  /** Gradients of coef · (sum of response log-probs) w.r.t. every LoRA A and B, added into `grads`. */
  backward(acts: TrainActivations, promptLen: number, coef: number, grads: LoraGrads): void {
    const c = this.config;
    const T = acts.tokens.length;
    const eps = c.rmsNormEps;
    const shape = { T, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headDim };
    const { targets, weights } = this.responseTargets(T, acts.tokens, promptLen, coef);
    const dlogits = tokenLogprobsBackwardRef(acts.logits, targets, weights, T, c.vocabSize);
    const head = c.tieWordEmbeddings ? this.weight('model.embed_tokens.weight') : this.weight('lm_head.weight');
    const dxn = matmulInputGradRef(dlogits, head, T, c.vocabSize, c.hiddenSize);
    let dx = rmsNormBackwardRef(acts.xFinal, this.weight('model.norm.weight'), dxn, T, c.hiddenSize, eps);
    for (let l = c.nLayers - 1; l >= 0; l--) {
      const a = acts.layers[l];
      // MLP: x_out = xMid + down(silu(gate(h2)) * up(h2)), h2 = norm(xMid)
      const dAct = this.linearBackward(l, 'down_proj', a.act, dx, T, grads);
      const { dgate, dup } = siluGateBackwardRef(a.gate, a.up, dAct);
      const dh2 = sum(this.linearBackward(l, 'gate_proj', a.h2, dgate, T, grads), this.linearBackward(l, 'up_proj', a.h2, dup, T, grads));
      const dxMid = sum(dx, rmsNormBackwardRef(a.xMid, this.weight(`model.layers.${l}.post_attention_layernorm.weight`), dh2, T, c.hiddenSize, eps));
      // Attention: xMid = x + o(attn(rope(q(h1)), rope(k(h1)), v(h1))), h1 = norm(x)
      const dAtt = this.linearBackward(l, 'o_proj', a.att, dxMid, T, grads);
      const g = causalAttentionBackwardRef(a.q, a.k, a.v, a.att, a.lse, dAtt, T, c.nHeads, c.nKvHeads, c.headDim, undefined, slidingKeyWindow(c.slidingWindow));
      const un = ropeBackwardRef(g.dq, g.dk, this.positions(T), this.invFreq, shape);
      const dh1 = sum(sum(this.linearBackward(l, 'q_proj', a.h1, un.dq, T, grads), this.linearBackward(l, 'k_proj', a.h1, un.dk, T, grads)), this.linearBackward(l, 'v_proj', a.h1, g.dv, T, grads));
      dx = sum(dxMid, rmsNormBackwardRef(a.x, this.weight(`model.layers.${l}.input_layernorm.weight`), dh1, T, c.hiddenSize, eps));
    }
  }

  /**
   * DPO on one pair: loss, rewards and the LoRA gradients of the loss. `ref` are the reference
   * model's (adapter off) summed response log-probs, cached per pair by the caller.
   */
  dpo(pair: TokenPair, ref: { chosen: number; rejected: number }, beta: number): { result: DpoPairResult; policy: { chosen: number; rejected: number }; grads: LoraGrads } {
    const P = pair.prompt.length;
    const ca = this.forward([...pair.prompt, ...pair.chosen]);
    const ra = this.forward([...pair.prompt, ...pair.rejected]);
    const policy = { chosen: this.responseLogprob(ca, P), rejected: this.responseLogprob(ra, P) };
    const result = dpoPair({ policyChosen: policy.chosen, policyRejected: policy.rejected, refChosen: ref.chosen, refRejected: ref.rejected }, beta);
    const grads: LoraGrads = new Map();
    this.backward(ca, P, result.gradPolicyChosen, grads);
    this.backward(ra, P, result.gradPolicyRejected, grads);
    return { result, policy, grads };
  }

  /** Summed log-probs of both sequences of a KTO example (forward only). */
  ktoLogprobs(e: TokenKto): KtoLogprobs {
    const P = e.prompt.length;
    return { completion: this.responseLogprob(this.forward([...e.prompt, ...e.completion]), P), kl: this.responseLogprob(this.forward([...e.prompt, ...e.kl]), P) };
  }

  /**
   * KTO on a batch of examples (the mean loss): z0 from the policy's log-probs of the examples' KL
   * sequences (detached), then each completion's forward and backward with its coefficient
   * ∂(mean loss)/∂logπ. `z0` given: used instead of the estimate (the KL forwards are skipped).
   */
  kto(examples: readonly TokenKto[], refs: readonly KtoLogprobs[], options: KtoOptions, z0?: number): { result: KtoBatchResult; policy: KtoLogprobs[]; grads: LoraGrads } {
    const klPolicy = z0 === undefined ? examples.map((e) => this.responseLogprob(this.forward([...e.prompt, ...e.kl]), e.prompt.length)) : examples.map(() => NaN);
    const point = z0 ?? ktoReferencePoint(klPolicy.map((p, i) => ({ policy: p, ref: refs[i].kl })));
    const acts = examples.map((e) => this.forward([...e.prompt, ...e.completion]));
    const policy = examples.map((e, i) => ({ completion: this.responseLogprob(acts[i], e.prompt.length), kl: klPolicy[i] }));
    const result = ktoBatch(
      examples.map((e, i) => ({ policy: policy[i].completion, ref: refs[i].completion, label: e.label })),
      [],
      options,
      point,
    );
    const grads: LoraGrads = new Map();
    examples.forEach((e, i) => this.backward(acts[i], e.prompt.length, result.gradPolicy[i], grads));
    return { result, policy, grads };
  }
}

function addInto(a: Float32Array, b: Float32Array): void {
  for (let i = 0; i < a.length; i++) a[i] += b[i];
}

function sum(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i];
  return out;
}
