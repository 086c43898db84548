/**
 * The decoder forward pass on the GPU for one iteration's batch: any mix of prefill chunks and
 * decode steps of different sequences, flattened to T tokens each tagged with its sequence (row of
 * the block tables) and position. Activations live in an arena sized once for maxTokens/maxSeqs;
 * the dispatch list is built once per batch shape (T, nSeqs, mode) and re-encoded every step, so a
 * steady decode allocates nothing: only the small per-step inputs are written with writeBuffer.
 *
 * LoRA serving: with an adapter bank (src/learn/bank.ts) each token carries the bank slot of its
 * sequence's adapter (NO_ADAPTER for none) and, after the base matmul of every module the bank
 * serves, the bank's two dispatches add that row's LoRA delta, so one batch mixes adapters. A step
 * in which no token names a slot runs the plain plan (its own cache key): serving without an
 * adapter costs no extra dispatch even when a bank is attached.
 *
 * Plans (src/kernels/plan.ts): 'fused' (the default) runs each layer as 7 dispatches instead of
 * 15: RMSNorm + q/k/v (one weight concatenated at load, bias fused, columns split into q, k, v),
 * RoPE, KV write, attention, o_proj + residual, RMSNorm + gate/up + SiLU-gate (one dispatch over
 * both weights), down_proj + residual; and the head as ONE dispatch (gather of the last rows +
 * final norm + LM head), all through src/kernels/linear.ts. It applies to batches of at most
 * GEMV_MAX_M tokens where it beats the GEMV (small, dispatch-bound layers; f32 ones on a CPU-class
 * device: see fusedFor) and to every batch on a CPU-class device (elsewhere prefill keeps the tiled
 * GEMM); LoRA batches and
 * weights the fused linear cannot take (K % 4 != 0, a sharded q/k/v) run the unfused list.
 * 'unfused' is the plan before issue 11, kept to compare.
 *
 * Key windows (src/kernels/attention.ts): every attention dispatch reads each sequence's
 * (sinks, window) from the arena's keyWindow buffer, written by write() from the step's
 * seqSinks/seqWindows or the model's default (config.slidingWindow as the window, no sinks;
 * unbounded without one), so one batch mixes windows and the dispatch lists do not depend on them.
 */
import { Building } from '../gpu/owner.ts';
import { createStorage } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/device.ts';
import { releaseDispatches, type KernelDispatch } from '../gpu/dispatch.ts';
import { ShapeError } from '../gpu/errors.ts';
import { UNBOUNDED_WINDOW, attentionDecode, attentionPrefill } from '../kernels/attention.ts';
import { embedding } from '../kernels/embedding.ts';
import type { PagedKvGpu } from '../kernels/kvcache.ts';
import { kvWrite } from '../kernels/kvcache.ts';
import { NO_ADAPTER } from '../kernels/lora.ts';
import { GEMV_MAX_M } from '../kernels/gemv.ts';
import { linear, linearSupports } from '../kernels/linear.ts';
import { matmul } from '../kernels/matmul.ts';
import { isCpuClassDevice, kernelPlan, type KernelPlan } from '../kernels/plan.ts';
import { biasAdd, gatherRows, residualAdd } from '../kernels/residual.ts';
import { rmsNorm } from '../kernels/rmsnorm.ts';
import { rope } from '../kernels/rope.ts';
import { siluGate } from '../kernels/silu.ts';
import type { KvCacheGpu } from '../kv/cache.ts';
import { fusedLayerWeights, type FusedLayerWeights, type GpuModelWeights } from './gpu-weights.ts';
import type { LinearModule } from './tensors.ts';

export interface ForwardLimits {
  /** Most tokens in one iteration (prefill chunk tokens + decode tokens). */
  maxTokens: number;
  /** Most sequences in one iteration. */
  maxSeqs: number;
  /** Longest block table (= max context / 16, rounded up). */
  maxBlocksPerSeq: number;
}

/**
 * 'decode': every sequence contributes exactly its newest token, token i belongs to sequence i
 * (attention reads each sequence's length from seqLens). 'mixed': any tokens (prefill chunks and
 * decode steps), attention per token by (sequence, position), causal.
 */
export type BatchMode = 'decode' | 'mixed';

/** Host arrays that writeBuffer accepts (not backed by a SharedArrayBuffer). */
export type U32 = Uint32Array<ArrayBuffer>;

/** One iteration's inputs (host side). */
export interface BatchStep {
  mode: BatchMode;
  tokens: U32; // [T] token ids
  tokenSeq: U32; // [T] block-table row of each token
  tokenPos: U32; // [T] position of each token in its sequence
  blockTables: U32; // [nSeqs, maxBlocksPerSeq] physical block ids (NO_BLOCK where unused)
  seqLens: U32; // [nSeqs] length of each sequence including this step's tokens
  lastRows: U32; // [nSeqs] index in [0, T) of the token whose logits each sequence needs
  /** [T] adapter-bank slot of each token (NO_ADAPTER: base model only); absent: no token has one. */
  adapterSlots?: U32;
  /** [nSeqs] attention sinks of each sequence (its first positions every query sees); absent: 0. */
  seqSinks?: U32;
  /** [nSeqs] key window of each sequence (>= 1, UNBOUNDED_WINDOW: none); absent: the model's (config.slidingWindow, or none). */
  seqWindows?: U32;
}

/** What write() found: the batch shape, and whether any token runs a LoRA (the plan differs). */
export interface WrittenStep {
  T: number;
  nSeqs: number;
  lora: boolean;
}

/**
 * What the forward pass needs of an adapter bank (src/learn/bank.ts AdapterBank is one), declared
 * here so the model layer does not import from learning above it.
 */
export interface ServingBank {
  readonly nSlots: number;
  readonly r: number;
  /** Whether the bank serves module m of layer l (undefined: that module runs without LoRA). */
  region(layer: number, module: LinearModule): unknown;
  /** y += each row's LoRA delta (row i uses slot ids[i]; NO_ADAPTER rows add nothing). */
  forward(layer: number, module: LinearModule, io: { x: GPUBuffer; y: GPUBuffer; h: GPUBuffer; ids: GPUBuffer; M: number }): KernelDispatch[];
}

/** Buffers of the LoRA path, present only with an adapter bank. */
interface LoraArena {
  ids: GPUBuffer; // [maxTokens] u32 bank slot per token (per-step data)
  h: GPUBuffer; // [maxTokens, bank r] f32 shrink scratch shared by every module (dispatches run in order)
}

/** The activation arena: every intermediate of the forward pass, allocated once. */
interface Arena {
  tokens: GPUBuffer; // [maxTokens] u32
  tokenSeq: GPUBuffer; // [maxTokens] u32
  tokenPos: GPUBuffer; // [maxTokens] u32
  blockTables: GPUBuffer; // [maxSeqs, maxBlocksPerSeq] u32
  seqLens: GPUBuffer; // [maxSeqs] u32
  lastRows: GPUBuffer; // [maxSeqs] u32
  keyWindow: GPUBuffer; // [maxSeqs, 2] u32 (sinks, window) per sequence
  x: GPUBuffer; // [maxTokens, hidden] f32, the residual stream
  h: GPUBuffer; // [maxTokens, hidden] f32, normed input of a sublayer
  q: GPUBuffer; // [maxTokens, nHeads * headDim] f32
  k: GPUBuffer; // [maxTokens, nKvHeads * headDim] f32
  v: GPUBuffer; // [maxTokens, nKvHeads * headDim] f32
  attn: GPUBuffer; // [maxTokens, nHeads * headDim] f32
  delta: GPUBuffer; // [maxTokens, hidden] f32, a sublayer's output before the residual add
  gate: GPUBuffer; // [maxTokens, intermediate] f32
  up: GPUBuffer; // [maxTokens, intermediate] f32
  act: GPUBuffer; // [maxTokens, intermediate] f32
  last: GPUBuffer; // [maxSeqs, hidden] f32, each sequence's last-token state
  lastNorm: GPUBuffer; // [maxSeqs, hidden] f32
  logits: GPUBuffer; // [maxSeqs, vocab] f32
}

/**
 * Most batch shapes whose dispatch lists are kept. Steady decode uses one shape per batch size, but
 * chunked prefill and mixed batches produce many (T varies); least-recently-used plans are dropped
 * (their bind groups and small uniform buffers are then reclaimed by the browser) so a long-running
 * server does not grow without bound.
 */
export const MAX_PLANNED_SHAPES = 64;

/**
 * Largest weight (elements N·K) the fused plan puts through the fused linear for a decode-sized
 * batch when the GEMV may be faster (packed f16 / q4 weights, or a GPU): below it a matmul is
 * dispatch-bound (stories260K's largest is 32,768), above it the tuned GEMV wins (q4 [1536, 576]
 * at M = 1: 3.4 ms GEMV vs 9.6 ms fused on SwiftShader).
 */
export const FUSED_GEMV_MAX_WEIGHT = 1 << 16;

export class ForwardPass {
  readonly arena: Arena;
  /** Dispatch lists by shape key, in least-recently-used order (Map keeps insertion order). */
  private readonly plans = new Map<string, KernelDispatch[][]>();
  /** The LoRA path's buffers, or null without a bank. */
  private readonly lora: LoraArena | null;
  /** The kernel plan, fixed at construction (src/kernels/plan.ts). */
  readonly plan: KernelPlan;
  /** Host staging of keyWindow, [maxSeqs, 2] u32 (sinks, window), reused by every write(). */
  private readonly keyWindowHost: U32;
  /** The window of a sequence whose step gives none: config.slidingWindow, or UNBOUNDED_WINDOW. */
  readonly defaultWindow: number;

  constructor(
    private readonly ctx: GpuContext,
    readonly weights: GpuModelWeights,
    readonly kv: KvCacheGpu,
    readonly limits: ForwardLimits,
    /** Resident LoRA adapters (owned by the caller); null: base model only. */
    readonly bank: ServingBank | null = null,
    /** Kernel plan; default: the context's (kernelPlan(ctx)). */
    plan?: KernelPlan,
  ) {
    const c = weights.config;
    const { maxTokens: T, maxSeqs: S, maxBlocksPerSeq: B } = limits;
    if (![T, S, B].every((v) => Number.isInteger(v) && v > 0)) throw new ShapeError('ForwardPass', 'limits', `must be positive integers, got ${JSON.stringify(limits)}`);
    const made = new Building(); // freed if a later buffer does not fit
    const f32 = (n: number, label: string) => made.take(createStorage(ctx, n * 4, `fwd.${label}`));
    try {
      this.arena = {
        tokens: f32(T, 'tokens'),
        tokenSeq: f32(T, 'tokenSeq'),
        tokenPos: f32(T, 'tokenPos'),
        blockTables: f32(S * B, 'blockTables'),
        seqLens: f32(S, 'seqLens'),
        lastRows: f32(S, 'lastRows'),
        keyWindow: f32(S * 2, 'keyWindow'),
        x: f32(T * c.hiddenSize, 'x'),
        h: f32(T * c.hiddenSize, 'h'),
        q: f32(T * c.nHeads * c.headDim, 'q'),
        k: f32(T * c.nKvHeads * c.headDim, 'k'),
        v: f32(T * c.nKvHeads * c.headDim, 'v'),
        attn: f32(T * c.nHeads * c.headDim, 'attn'),
        delta: f32(T * c.hiddenSize, 'delta'),
        gate: f32(T * c.intermediateSize, 'gate'),
        up: f32(T * c.intermediateSize, 'up'),
        act: f32(T * c.intermediateSize, 'act'),
        last: f32(S * c.hiddenSize, 'last'),
        lastNorm: f32(S * c.hiddenSize, 'lastNorm'),
        logits: f32(S * c.vocabSize, 'logits'),
      };
      this.lora = bank ? { ids: f32(T, 'lora.ids'), h: f32(T * bank.r, 'lora.h') } : null;
    } catch (e) {
      made.abandon();
      throw e;
    }
    this.plan = plan ?? kernelPlan(ctx);
    this.keyWindowHost = new Uint32Array(S * 2);
    this.defaultWindow = c.slidingWindow ?? UNBOUNDED_WINDOW;
  }

  /**
   * Whether a batch of T tokens (without LoRA) runs the fused dispatches of layer l. Up to
   * GEMV_MAX_M tokens the GEMV competes: on a CPU-class device the fused linear matches it for f32
   * weights but not for packed f16 / q4 ones (the GEMV's per-group unpacking is tuned for one pass
   * over W); on a GPU it has far fewer invocations than the GEMV's K-split workgroups (unmeasured
   * here). So elsewhere the layer fuses only while it is small enough to be dispatch-bound
   * (FUSED_GEMV_MAX_WEIGHT). Past GEMV_MAX_M the tiled GEMM competes: fused only on a CPU-class device.
   */
  private fusedFor(l: number, T: number, lora: boolean): FusedLayerWeights | null {
    if (lora || this.plan !== 'fused') return null;
    if (T > GEMV_MAX_M ? !isCpuClassDevice(this.ctx) : !this.fusedBeatsGemv(l)) return null;
    if (!Object.values(this.weights.layers[l].linear).every(linearSupports)) return null;
    // The concatenated q/k/v is made on first use (then cached with the model): a plan that never fuses costs no memory.
    return fusedLayerWeights(this.ctx, this.weights, l);
  }

  private fusedBeatsGemv(l: number | 'head'): boolean {
    if (this.weights.format === 'f32' && isCpuClassDevice(this.ctx)) return true;
    const ws = l === 'head' ? [this.weights.lmHead] : Object.values(this.weights.layers[l].linear);
    return ws.every((w) => w.N * w.K <= FUSED_GEMV_MAX_WEIGHT);
  }

  /** Check a step against the limits and the pool, then upload its inputs. */
  write(step: BatchStep): WrittenStep {
    const T = step.tokens.length;
    const nSeqs = step.seqLens.length;
    const L = this.limits;
    const bad = (arg: string, detail: string) => new ShapeError('forward', arg, detail);
    if (T < 1 || T > L.maxTokens) throw bad('tokens', `has ${T} tokens; this pass takes 1..${L.maxTokens}`);
    if (nSeqs < 1 || nSeqs > L.maxSeqs) throw bad('seqLens', `has ${nSeqs} sequences; this pass takes 1..${L.maxSeqs}`);
    if (step.tokenSeq.length !== T || step.tokenPos.length !== T) throw bad('tokenSeq/tokenPos', `have ${step.tokenSeq.length}/${step.tokenPos.length} entries for ${T} tokens`);
    if (step.blockTables.length !== nSeqs * L.maxBlocksPerSeq) throw bad('blockTables', `has ${step.blockTables.length} entries, [${nSeqs}, ${L.maxBlocksPerSeq}] needs ${nSeqs * L.maxBlocksPerSeq}`);
    if (step.lastRows.length !== nSeqs) throw bad('lastRows', `has ${step.lastRows.length} entries for ${nSeqs} sequences`);
    if (step.mode === 'decode' && T !== nSeqs) throw bad('tokens', `decode mode needs one token per sequence, got ${T} tokens for ${nSeqs} sequences`);
    const vocab = this.weights.config.vocabSize;
    for (let i = 0; i < T; i++) {
      if (step.tokens[i] >= vocab) throw bad('tokens', `token ${i} = ${step.tokens[i]} is outside the vocabulary [0, ${vocab})`);
      if (step.tokenSeq[i] >= nSeqs) throw bad('tokenSeq', `token ${i} names sequence ${step.tokenSeq[i]} of ${nSeqs}`);
      if (step.tokenPos[i] >= L.maxBlocksPerSeq * 16) throw bad('tokenPos', `token ${i} at position ${step.tokenPos[i]} is past the block table (${L.maxBlocksPerSeq * 16})`);
    }
    for (let s = 0; s < nSeqs; s++) if (step.lastRows[s] >= T) throw bad('lastRows', `sequence ${s} names row ${step.lastRows[s]} of ${T}`);
    const lora = this.checkAdapterSlots(step.adapterSlots, T);
    this.fillKeyWindows(step, nSeqs);
    const q = this.ctx.device.queue;
    const a = this.arena;
    q.writeBuffer(a.tokens, 0, step.tokens);
    q.writeBuffer(a.tokenSeq, 0, step.tokenSeq);
    q.writeBuffer(a.tokenPos, 0, step.tokenPos);
    q.writeBuffer(a.blockTables, 0, step.blockTables);
    q.writeBuffer(a.seqLens, 0, step.seqLens);
    q.writeBuffer(a.lastRows, 0, step.lastRows);
    q.writeBuffer(a.keyWindow, 0, this.keyWindowHost, 0, nSeqs * 2);
    if (lora) q.writeBuffer(this.lora!.ids, 0, step.adapterSlots!);
    return { T, nSeqs, lora };
  }

  /** Check the step's sinks/windows (or take the defaults) into keyWindowHost's first nSeqs rows. */
  private fillKeyWindows(step: BatchStep, nSeqs: number): void {
    const { seqSinks: sinks, seqWindows: windows } = step;
    if (sinks && sinks.length !== nSeqs) throw new ShapeError('forward', 'seqSinks', `has ${sinks.length} entries for ${nSeqs} sequences`);
    if (windows && windows.length !== nSeqs) throw new ShapeError('forward', 'seqWindows', `has ${windows.length} entries for ${nSeqs} sequences`);
    const host = this.keyWindowHost;
    for (let s = 0; s < nSeqs; s++) {
      const w = windows ? windows[s] : this.defaultWindow;
      if (w < 1) throw new ShapeError('forward', 'seqWindows', `sequence ${s} has window 0; a window must be >= 1 (a query sees itself)`);
      host[2 * s] = sinks ? sinks[s] : 0;
      host[2 * s + 1] = w;
    }
  }

  /** True when some token names a bank slot; throws on a slot the bank does not have. */
  private checkAdapterSlots(slots: U32 | undefined, T: number): boolean {
    if (!slots) return false;
    if (slots.length !== T) throw new ShapeError('forward', 'adapterSlots', `has ${slots.length} entries for ${T} tokens`);
    let any = false;
    for (let i = 0; i < T; i++) {
      if (slots[i] === NO_ADAPTER) continue;
      if (!this.bank) throw new ShapeError('forward', 'adapterSlots', `token ${i} names adapter slot ${slots[i]} but this pass has no adapter bank`);
      if (slots[i] >= this.bank.nSlots) throw new ShapeError('forward', 'adapterSlots', `token ${i} names slot ${slots[i]}; the bank has ${this.bank.nSlots}`);
      any = true;
    }
    return any;
  }

  /**
   * The dispatches of a whole forward pass for this batch shape (built on first use, then reused).
   * `lora` (from write()) adds the bank's per-row LoRA deltas; without it the plan is the base one.
   */
  dispatches(T: number, nSeqs: number, mode: BatchMode, lora = false): KernelDispatch[] {
    const parts = this.dispatchParts(T, nSeqs, mode, lora);
    let flat = this.flat.get(parts);
    if (!flat) this.flat.set(parts, (flat = parts.flat()));
    return flat;
  }

  /** The flat list of each cached plan (built on first use; dropped with its plan). */
  private readonly flat = new WeakMap<KernelDispatch[][], KernelDispatch[]>();

  /**
   * The same pass as layer-range parts, one per decoder layer (the embedding joins the first, the
   * head the last), so a scheduler can split a pass that exceeds its time budget over several
   * submissions at layer boundaries.
   */
  dispatchParts(T: number, nSeqs: number, mode: BatchMode, lora = false): KernelDispatch[][] {
    if (!Number.isInteger(T) || T < 1 || T > this.limits.maxTokens) throw new ShapeError('forward', 'T', `= ${T} is outside 1..${this.limits.maxTokens}`);
    if (!Number.isInteger(nSeqs) || nSeqs < 1 || nSeqs > this.limits.maxSeqs) throw new ShapeError('forward', 'nSeqs', `= ${nSeqs} is outside 1..${this.limits.maxSeqs}`);
    if (lora && !this.lora) throw new ShapeError('forward', 'lora', 'is set but this pass has no adapter bank');
    const key = `${mode}:${T}:${nSeqs}${lora ? ':lora' : ''}`;
    let plan = this.plans.get(key);
    if (plan) {
      this.plans.delete(key); // move to the most-recently-used end
    } else {
      const layers = this.weights.layers.map((_, l) => {
        const f = this.fusedFor(l, T, lora);
        return f ? this.fusedLayerDispatches(l, f, T, nSeqs, mode) : this.layerDispatches(l, T, nSeqs, mode, lora);
      });
      layers[0] = [...this.embedDispatches(T), ...layers[0]];
      layers[layers.length - 1] = [...layers[layers.length - 1], ...this.headDispatches(T, nSeqs)];
      plan = layers;
      if (this.plans.size >= MAX_PLANNED_SHAPES) {
        // The oldest shape is not in use (one pass is built and encoded at a time): free its uniforms.
        const oldest = this.plans.keys().next().value!;
        releaseDispatches(this.plans.get(oldest)!.flat());
        this.plans.delete(oldest);
      }
      this.built++;
    }
    this.plans.set(key, plan);
    return plan;
  }

  /** Number of distinct batch shapes planned so far. */
  /** Plans built so far (cache misses): an iteration that built one also paid its set-up (and maybe shader compiles). */
  built = 0;

  get plannedShapes(): number {
    return this.plans.size;
  }

  private embedDispatches(T: number): KernelDispatch[] {
    return embedding(this.ctx, { tokens: this.arena.tokens, table: this.weights.embed, out: this.arena.x, T });
  }

  /** Layer l under the fused plan: 7 dispatches (see the file comment). */
  private fusedLayerDispatches(l: number, f: FusedLayerWeights, T: number, nSeqs: number, mode: BatchMode): KernelDispatch[] {
    const { ctx, arena: a } = this;
    const c = this.weights.config;
    const w = this.weights.layers[l];
    const eps = c.rmsNormEps;
    const paged: PagedKvGpu = { kCache: this.kv.k[l], vCache: this.kv.v[l], blockTable: a.blockTables, nBlocks: this.kv.nBlocks, nKvHeads: c.nKvHeads, headDim: c.headDim, nSeqs, maxBlocksPerSeq: this.limits.maxBlocksPerSeq };
    return [
      // h = norm(x); q, k, v = h·[Wq; Wk; Wv]ᵀ (+ bias), split into the three buffers
      ...linear(ctx, { x: a.x, w: f.qkv, y: a.q, M: T, norm: { weight: w.inputNorm, eps }, bias: f.qkvBias, split: { cols: f.cols, y1: a.k, y2: a.v } }),
      rope(ctx, { q: a.q, k: a.k, positions: a.tokenPos, invFreq: this.weights.invFreq, T, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headDim }),
      kvWrite(ctx, { ...paged, k: a.k, v: a.v, tokenSeq: a.tokenSeq, tokenPos: a.tokenPos, T }),
      mode === 'decode'
        ? attentionDecode(ctx, { ...paged, q: a.q, seqLens: a.seqLens, out: a.attn, nHeads: c.nHeads, keyWindow: a.keyWindow })
        : attentionPrefill(ctx, { ...paged, q: a.q, tokenSeq: a.tokenSeq, tokenPos: a.tokenPos, out: a.attn, T, nHeads: c.nHeads, keyWindow: a.keyWindow }),
      // x += attn·Woᵀ
      ...linear(ctx, { x: a.attn, w: w.linear.o_proj, y: a.x, M: T, residual: true }),
      // act = silu(norm(x)·Wgᵀ) · (norm(x)·Wuᵀ)
      ...linear(ctx, { x: a.x, w: w.linear.gate_proj, up: w.linear.up_proj, y: a.act, M: T, norm: { weight: w.postNorm, eps } }),
      // x += act·Wdᵀ
      ...linear(ctx, { x: a.act, w: w.linear.down_proj, y: a.x, M: T, residual: true }),
    ];
  }

  private layerDispatches(l: number, T: number, nSeqs: number, mode: BatchMode, lora: boolean): KernelDispatch[] {
    const { ctx, arena: a } = this;
    const c = this.weights.config;
    const w = this.weights.layers[l];
    const eps = c.rmsNormEps;
    const out: KernelDispatch[] = [];
    const mm = (x: GPUBuffer, m: LinearModule, y: GPUBuffer) => {
      out.push(...matmul(ctx, { x, w: w.linear[m], y, M: T }));
      if (lora) out.push(...this.loraDispatches(l, m, x, y, T));
    };
    const kvDim = c.nKvHeads * c.headDim;

    out.push(rmsNorm(ctx, { x: a.x, weight: w.inputNorm, y: a.h, T, dim: c.hiddenSize, eps }));
    mm(a.h, 'q_proj', a.q);
    mm(a.h, 'k_proj', a.k);
    mm(a.h, 'v_proj', a.v);
    if (w.bias.q_proj) out.push(biasAdd(ctx, { y: a.q, bias: w.bias.q_proj, T, N: c.nHeads * c.headDim }));
    if (w.bias.k_proj) out.push(biasAdd(ctx, { y: a.k, bias: w.bias.k_proj, T, N: kvDim }));
    if (w.bias.v_proj) out.push(biasAdd(ctx, { y: a.v, bias: w.bias.v_proj, T, N: kvDim }));
    out.push(rope(ctx, { q: a.q, k: a.k, positions: a.tokenPos, invFreq: this.weights.invFreq, T, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headDim }));

    const paged: PagedKvGpu = { kCache: this.kv.k[l], vCache: this.kv.v[l], blockTable: a.blockTables, nBlocks: this.kv.nBlocks, nKvHeads: c.nKvHeads, headDim: c.headDim, nSeqs, maxBlocksPerSeq: this.limits.maxBlocksPerSeq };
    out.push(kvWrite(ctx, { ...paged, k: a.k, v: a.v, tokenSeq: a.tokenSeq, tokenPos: a.tokenPos, T }));
    out.push(
      mode === 'decode'
        ? attentionDecode(ctx, { ...paged, q: a.q, seqLens: a.seqLens, out: a.attn, nHeads: c.nHeads, keyWindow: a.keyWindow })
        : attentionPrefill(ctx, { ...paged, q: a.q, tokenSeq: a.tokenSeq, tokenPos: a.tokenPos, out: a.attn, T, nHeads: c.nHeads, keyWindow: a.keyWindow }),
    );
    mm(a.attn, 'o_proj', a.delta);
    out.push(residualAdd(ctx, { h: a.x, delta: a.delta, n: T * c.hiddenSize }));

    out.push(rmsNorm(ctx, { x: a.x, weight: w.postNorm, y: a.h, T, dim: c.hiddenSize, eps }));
    mm(a.h, 'gate_proj', a.gate);
    mm(a.h, 'up_proj', a.up);
    out.push(siluGate(ctx, { gate: a.gate, up: a.up, out: a.act, n: T * c.intermediateSize }));
    mm(a.act, 'down_proj', a.delta);
    out.push(residualAdd(ctx, { h: a.x, delta: a.delta, n: T * c.hiddenSize }));
    return out;
  }

  /** y += each row's LoRA delta for layer l's module m, when the bank serves that module. */
  private loraDispatches(l: number, m: LinearModule, x: GPUBuffer, y: GPUBuffer, T: number): KernelDispatch[] {
    const bank = this.bank!, io = this.lora!;
    if (!bank.region(l, m)) return [];
    return bank.forward(l, m, { x, y, h: io.h, ids: io.ids, M: T });
  }

  /** Final norm and LM head on each sequence's last token only. */
  private headDispatches(T: number, nSeqs: number): KernelDispatch[] {
    const { ctx, arena: a } = this;
    const c = this.weights.config;
    const headFuses = nSeqs <= GEMV_MAX_M ? this.fusedBeatsGemv('head') : isCpuClassDevice(ctx);
    if (this.plan === 'fused' && linearSupports(this.weights.lmHead) && headFuses) {
      // logits = norm(x[lastRows])·Whᵀ in one dispatch per LM-head shard
      return linear(ctx, { x: a.x, w: this.weights.lmHead, y: a.logits, M: nSeqs, rows: { index: a.lastRows, xRows: T }, norm: { weight: this.weights.finalNorm, eps: c.rmsNormEps } });
    }
    return [
      gatherRows(ctx, { x: a.x, rows: a.lastRows, out: a.last, T, D: c.hiddenSize, R: nSeqs }),
      rmsNorm(ctx, { x: a.last, weight: this.weights.finalNorm, y: a.lastNorm, T: nSeqs, dim: c.hiddenSize, eps: c.rmsNormEps }),
      ...matmul(ctx, { x: a.lastNorm, w: this.weights.lmHead, y: a.logits, M: nSeqs }),
    ];
  }

  destroy(): void {
    for (const plan of this.plans.values()) releaseDispatches(plan.flat());
    this.plans.clear();
    for (const b of Object.values(this.arena)) b.destroy();
    if (this.lora) Object.values(this.lora).forEach((b: GPUBuffer) => b.destroy());
  }
}
