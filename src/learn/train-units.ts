/**
 * The dispatch lists of the trainer's work units for one sequence of T tokens (positions 0..T-1,
 * contiguous activations): embedding, one layer's forward (with or without the adapter's LoRA),
 * final norm + LM head + token log-probs, and the backward counterparts down to the LoRA
 * gradients. Each builder mirrors the matching part of TrainingReference (src/learn/reference.ts),
 * which is the spec; the buffers are the arena's (src/learn/train-arena.ts).
 */
import { rowChunksAligned, rowRange, type BufferRange } from '../gpu/binding.ts';
import type { GpuContext } from '../gpu/device.ts';
import type { KernelDispatch } from '../gpu/dispatch.ts';
import { causalAttentionBackward, causalAttentionForwardTrain, slidingKeyWindow } from '../kernels/attention-train.ts';
import { embedding } from '../kernels/embedding.ts';
import { loraBackward, loraForward } from '../kernels/lora.ts';
import { matmulInputGrad } from '../kernels/matmul-bwd.ts';
import { matmul } from '../kernels/matmul.ts';
import { biasAdd, residualAdd } from '../kernels/residual.ts';
import { rmsNormBackward } from '../kernels/rmsnorm-bwd.ts';
import { rmsNorm } from '../kernels/rmsnorm.ts';
import { ropeBackward } from '../kernels/rope-bwd.ts';
import { rope } from '../kernels/rope.ts';
import { siluGateBackward } from '../kernels/silu-bwd.ts';
import { siluGate } from '../kernels/silu.ts';
import { tokenLogprobs, tokenLogprobsBackward } from '../kernels/token-logprobs.ts';
import type { GpuModelWeights } from '../model/gpu-weights.ts';
import type { LinearModule } from '../model/tensors.ts';
import type { GpuAdapter } from './adapter.ts';
import type { SequenceArena, TrainArena } from './train-arena.ts';

/** Everything a builder reads: the frozen model, the trained adapter, the arena. */
export interface UnitDeps {
  ctx: GpuContext;
  weights: GpuModelWeights;
  adapter: GpuAdapter;
  arena: TrainArena;
  negInvFreq: GPUBuffer; // [headDim/2] f32 from uploadRopeBackwardInvFreq
}

/** The dispatches of one Linear: the frozen matmul (+ bias) and, when trained, its LoRA path (two small matmuls). */
interface LinearParts {
  base: KernelDispatch[];
  lora: KernelDispatch[];
}

/** y = x·Wᵀ (+ bias) (+ LoRA delta when `withAdapter` and the module is a target). */
function linear(d: UnitDeps, l: number, m: LinearModule, x: GPUBuffer, y: GPUBuffer, T: number, withAdapter: boolean): LinearParts {
  const { ctx, weights, adapter, arena } = d;
  const w = weights.layers[l];
  const base = matmul(ctx, { x, w: w.linear[m], y, M: T });
  const bias = m === 'q_proj' || m === 'k_proj' || m === 'v_proj' ? w.bias[m] : undefined;
  if (bias) base.push(biasAdd(ctx, { y, bias, T, N: w.linear[m].N }));
  const s = withAdapter ? adapter.slice(l, m) : undefined;
  const lora = s
    ? loraForward(ctx, {
        x, y, h: arena.loraH, A: adapter.params, B: adapter.params, scales: adapter.scales, ids: arena.loraIds,
        M: T, inDim: s.inDim, outDim: s.outDim, r: adapter.layout.r, nSlots: 1, aOffset: s.aOffset, bOffset: s.bOffset,
      })
    : [];
  return { base, lora };
}

/**
 * Backward of `linear` for dy: dx = dy·W (+= with `accumulate`) plus the LoRA path's dx, and
 * dA/dB accumulated into the adapter's grads. dx = null: the input needs no gradient (layer 0's
 * q/k/v: the embedding is frozen), so the base matmul is skipped and only dA/dB are computed.
 */
function linearBackward(d: UnitDeps, l: number, m: LinearModule, x: GPUBuffer, dy: GPUBuffer, dx: GPUBuffer | null, T: number, accumulate: boolean): LinearParts {
  const { ctx, weights, adapter, arena } = d;
  const base = dx ? matmulInputGrad(ctx, { dy, w: weights.layers[l].linear[m], dx, M: T, accumulate }) : [];
  const s = adapter.slice(l, m);
  const lora = s
    ? loraBackward(ctx, {
        x, dy, dx: dx ?? undefined, params: adapter.params, grads: adapter.grads, hg: arena.grad.hg,
        M: T, inDim: s.inDim, outDim: s.outDim, r: adapter.layout.r, scale: adapter.scale, aOffset: s.aOffset, bOffset: s.bOffset,
      })
    : [];
  return { base, lora };
}

/** tokens → the first layer's input. */
export function embedDispatches(d: UnitDeps, seq: SequenceArena, T: number): KernelDispatch[] {
  return embedding(d.ctx, { tokens: seq.tokens, table: d.weights.embed, out: seq.layers[0].x, T });
}

/**
 * A piece of one layer's forward or backward that the scheduler may run on its own: one matmul of
 * the layer (with its LoRA and the elementwise ops next to it) or the attention core. Segments of a
 * layer run in list order (each reads what the one before wrote in the arena), so any grouping of
 * consecutive segments is a valid work unit: a whole layer is their concatenation.
 */
export interface UnitSegment {
  /** Which part of the layer: q, k, v, attn, o, gate, up, down. */
  part: string;
  dispatches: KernelDispatch[];
  /** Multiply-accumulates, millions (the cost model's size of the work). */
  mmacs: number;
  /** Activation bytes the segment writes into the arena (the plan's memory term). */
  bytes: number;
}

/** Multiply-accumulates (millions) of y = x·Wᵀ for T rows, and of the LoRA's shrink and expand. */
function linearMmacs(d: UnitDeps, l: number, m: LinearModule, T: number, withAdapter: boolean): Sizes {
  const w = d.weights.layers[l].linear[m];
  const lora = withAdapter && d.adapter.slice(l, m) ? T * d.adapter.layout.r * (w.K + w.N) : 0;
  return { base: (T * w.N * w.K) / 1e6, lora: lora / 1e6 };
}

/** A number per part of a Linear: its frozen matmul and its LoRA path. */
interface Sizes {
  base: number;
  lora: number;
}

/**
 * One Linear and the elementwise ops around it as segments: `part` (`before`, the frozen matmul)
 * and `part.lora` (its LoRA path), `after` joining the last of them. Each is about one decode
 * step's matmuls of work, so the scheduler can put one beside a decode; empty segments are dropped
 * (layer 0's backward has no frozen dx matmul, an untrained module no LoRA path).
 */
function linearSegments(part: string, p: LinearParts, mmacs: Sizes, bytes: Sizes, before: KernelDispatch[] = [], after: KernelDispatch[] = []): UnitSegment[] {
  const out: UnitSegment[] = [
    { part, dispatches: [...before, ...p.base], mmacs: mmacs.base, bytes: bytes.base },
    { part: `${part}.lora`, dispatches: [...p.lora], mmacs: mmacs.lora, bytes: bytes.lora },
  ].filter((g) => g.dispatches.length > 0);
  if (out.length === 0) return after.length > 0 ? [{ part, dispatches: [...after], mmacs: 0, bytes: bytes.base }] : [];
  out[out.length - 1].dispatches.push(...after);
  return out;
}

/** Causal attention's multiply-accumulates (millions): QKᵀ and PV over the lower triangle. */
function attentionMmacs(d: UnitDeps, T: number): number {
  const c = d.weights.config;
  return (T * (T + 1) * c.nHeads * c.headDim) / 1e6;
}

/** Layer l: x → xMid = x + o(attn(rope(q), rope(k), v)) → out = xMid + down(silu(gate)·up), saving what the backward needs. */
export function layerForwardSegments(d: UnitDeps, seq: SequenceArena, l: number, T: number, withAdapter: boolean): UnitSegment[] {
  const { ctx, weights } = d;
  const c = weights.config;
  const w = weights.layers[l];
  const a = seq.layers[l];
  const next = l + 1 < c.nLayers ? seq.layers[l + 1].x : seq.xFinal;
  const eps = c.rmsNormEps;
  const H = c.hiddenSize, I = c.intermediateSize, Q = c.nHeads * c.headDim, KV = c.nKvHeads * c.headDim;
  const f32 = (n: number) => 4 * T * n;
  const r = d.adapter.layout.r;
  // The module's segments; `out` is the bytes its frozen matmul (and `before`) write.
  const lin = (part: string, m: LinearModule, x: GPUBuffer, y: GPUBuffer, out: number, before: KernelDispatch[] = [], after: KernelDispatch[] = []) =>
    linearSegments(part, linear(d, l, m, x, y, T, withAdapter), linearMmacs(d, l, m, T, withAdapter), { base: out, lora: f32(r) }, before, after);
  return [
    ...lin('q', 'q_proj', a.h1, a.q, f32(H + Q), [rmsNorm(ctx, { x: a.x, weight: w.inputNorm, y: a.h1, T, dim: H, eps })]),
    ...lin('k', 'k_proj', a.h1, a.k, f32(KV)),
    ...lin('v', 'v_proj', a.h1, a.v, f32(KV)),
    {
      part: 'attn',
      dispatches: [
        rope(ctx, { q: a.q, k: a.k, positions: d.arena.positions, invFreq: weights.invFreq, T, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headDim }),
        causalAttentionForwardTrain(ctx, { q: a.q, k: a.k, v: a.v, out: a.att, lse: a.lse, T, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headDim, window: slidingKeyWindow(c.slidingWindow) }),
      ],
      mmacs: attentionMmacs(d, T),
      bytes: f32(Q + c.nHeads),
    },
    ...lin('o', 'o_proj', a.att, a.xMid, f32(H), [], [residualAdd(ctx, { h: a.xMid, delta: a.x, n: T * H })]),
    ...lin('gate', 'gate_proj', a.h2, a.gate, f32(H + I), [rmsNorm(ctx, { x: a.xMid, weight: w.postNorm, y: a.h2, T, dim: H, eps })]),
    ...lin('up', 'up_proj', a.h2, a.up, f32(I)),
    ...lin('down', 'down_proj', a.act, next, f32(I + H), [siluGate(ctx, { gate: a.gate, up: a.up, out: a.act, n: T * I })], [residualAdd(ctx, { h: next, delta: a.xMid, n: T * H })]),
  ];
}

/**
 * Rows per chunk of the LM head's units: the head is the largest matmul of a step (T·vocab·hidden),
 * so it runs in chunks of rows, each about one decode step's matmuls of work. 16 = one token bucket.
 */
export const HEAD_CHUNK_ROWS = 16;

/** One row chunk of the head: its first row, its row count, and a buffer's rows of it as a binding range. */
interface HeadChunk {
  first: number;
  n: number;
  rows(b: GPUBuffer, width: number): BufferRange;
}

/**
 * The head's row chunks of T rows: HEAD_CHUNK_ROWS each when every chunk's offset in the hidden- and
 * vocabulary-wide activations is aligned for binding, else one chunk of all T rows.
 */
function headChunks(d: UnitDeps, T: number, kernel: string): HeadChunk[] {
  const c = d.weights.config;
  const align = d.ctx.limits.minStorageBufferOffsetAlignment;
  const size = [4 * c.hiddenSize, 4 * c.vocabSize].every((b) => rowChunksAligned(b, HEAD_CHUNK_ROWS, align)) ? HEAD_CHUNK_ROWS : T;
  const out: HeadChunk[] = [];
  for (let first = 0; first < T; first += size) {
    const n = Math.min(size, T - first);
    out.push({ first, n, rows: (b, width) => rowRange(kernel, b.label, b, 4 * width, first, n, align) });
  }
  return out;
}

/** Final norm and LM head per row chunk, then log p(targets[t]) of all T rows. */
export function headSegments(d: UnitDeps, seq: SequenceArena, T: number): UnitSegment[] {
  const { ctx, weights } = d;
  const c = weights.config;
  const H = c.hiddenSize, V = c.vocabSize;
  const chunks = headChunks(d, T, 'head').map(({ first, n, rows }): UnitSegment => ({
    part: `head@${first}`,
    dispatches: [
      rmsNorm(ctx, { x: rows(seq.xFinal, H), weight: weights.finalNorm, y: rows(seq.xn, H), T: n, dim: H, eps: c.rmsNormEps }),
      ...matmul(ctx, { x: rows(seq.xn, H), w: weights.lmHead, y: rows(seq.logits, V), M: n }),
    ],
    mmacs: (n * V * H) / 1e6,
    bytes: 4 * n * (H + V),
  }));
  // The log-softmax reads each row's V logits once: priced like a matmul of width 1.
  const logprobs: UnitSegment = { part: 'logprobs', dispatches: [tokenLogprobs(ctx, { logits: seq.logits, targets: seq.targets, logp: seq.logp, T, V })], mmacs: (T * V) / 1e6, bytes: 4 * T };
  return [...chunks, logprobs];
}

/** dlogits of all T rows from the per-position weights (dlogp), then per row chunk through the LM head and the final norm into grad.dx. */
export function headBackwardSegments(d: UnitDeps, seq: SequenceArena, T: number): UnitSegment[] {
  const { ctx, weights } = d;
  const c = weights.config;
  const g = d.arena.grad;
  const H = c.hiddenSize, V = c.vocabSize;
  const dlogits: UnitSegment = { part: 'logprobs', dispatches: [tokenLogprobsBackward(ctx, { logits: seq.logits, targets: seq.targets, dlogp: seq.dlogp, dlogits: g.dlogits, T, V })], mmacs: (T * V) / 1e6, bytes: 4 * T * V };
  const chunks = headChunks(d, T, 'headBackward').map(({ first, n, rows }): UnitSegment => ({
    part: `head@${first}`,
    dispatches: [
      ...matmulInputGrad(ctx, { dy: rows(g.dlogits, V), w: weights.lmHead, dx: rows(g.dxn, H), M: n }),
      rmsNormBackward(ctx, { x: rows(seq.xFinal, H), weight: weights.finalNorm, dy: rows(g.dxn, H), dx: rows(g.dx, H), T: n, dim: H, eps: c.rmsNormEps }),
    ],
    mmacs: (n * V * H) / 1e6,
    bytes: 4 * n * 2 * H,
  }));
  return [dlogits, ...chunks];
}

/**
 * Layer l's backward as segments: grad.dx holds ∂loss/∂(layer output) on entry and ∂loss/∂(layer
 * input) after the last segment (layer 0 stops after the LoRA gradients: nothing below it is trained).
 */
export function layerBackwardSegments(d: UnitDeps, seq: SequenceArena, l: number, T: number): UnitSegment[] {
  const { ctx, weights } = d;
  const c = weights.config;
  const w = weights.layers[l];
  const a = seq.layers[l];
  const g = d.arena.grad;
  const eps = c.rmsNormEps;
  const H = c.hiddenSize, I = c.intermediateSize, Q = c.nHeads * c.headDim, KV = c.nKvHeads * c.headDim;
  const below = l > 0 ? g.dh : null; // does the layer input need a gradient?
  const f32 = (n: number) => 4 * T * n;
  // dx (when needed) costs one matmul, dA/dB about two LoRA products.
  const mm = (m: LinearModule, withDx: boolean): Sizes => {
    const wm = weights.layers[l].linear[m];
    const lora = d.adapter.slice(l, m) ? 2 * T * d.adapter.layout.r * (wm.K + wm.N) : 0;
    return { base: (withDx ? T * wm.N * wm.K : 0) / 1e6, lora: lora / 1e6 };
  };
  // The module's segments; `out` is the bytes its dx matmul (and `before`, `after`) write.
  const lb = (part: string, m: LinearModule, x: GPUBuffer, dy: GPUBuffer, dx: GPUBuffer | null, acc: boolean, out: number, before: KernelDispatch[] = [], after: KernelDispatch[] = []) =>
    linearSegments(part, linearBackward(d, l, m, x, dy, dx, T, acc), mm(m, dx !== null), { base: out, lora: f32(d.adapter.layout.r) }, before, after);
  // dx = ∂/∂x: the input norm's backward, once q, k and v have added their input gradients.
  const inputNormBwd = below ? [rmsNormBackward(ctx, { x: a.x, weight: w.inputNorm, dy: g.dh, dx: g.dx, T, dim: H, eps, accumulate: true })] : [];
  return [
    // MLP: out = xMid + down(silu(gate(h2)) · up(h2)), h2 = norm(xMid)
    ...lb('down', 'down_proj', a.act, g.dx, g.dAct, false, f32(I)),
    ...lb('gate', 'gate_proj', a.h2, g.dgate, g.dh, false, f32(2 * I + H), [siluGateBackward(ctx, { gate: a.gate, up: a.up, dout: g.dAct, dgate: g.dgate, dup: g.dup, n: T * I })]),
    // dx = ∂/∂xMid after up's input gradient
    ...lb('up', 'up_proj', a.h2, g.dup, g.dh, true, f32(2 * H), [], [rmsNormBackward(ctx, { x: a.xMid, weight: w.postNorm, dy: g.dh, dx: g.dx, T, dim: H, eps, accumulate: true })]),
    // Attention: xMid = x + o(attn(rope(q(h1)), rope(k(h1)), v(h1))), h1 = norm(x)
    ...lb('o', 'o_proj', a.att, g.dx, g.dAtt, false, f32(Q)),
    {
      part: 'attn',
      dispatches: [
        ...causalAttentionBackward(ctx, { q: a.q, k: a.k, v: a.v, out: a.att, lse: a.lse, dout: g.dAtt, dq: g.dq, dk: g.dk, dv: g.dv, delta: g.delta, T, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headDim, window: slidingKeyWindow(c.slidingWindow) }),
        ropeBackward(ctx, { dq: g.dq, dk: g.dk, positions: d.arena.positions, negInvFreq: d.negInvFreq, T, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headDim }),
      ],
      mmacs: 2.5 * attentionMmacs(d, T),
      bytes: f32(Q + 2 * KV + c.nHeads),
    },
    ...lb('q', 'q_proj', a.h1, g.dq, below, false, below ? f32(H) : 0),
    ...lb('k', 'k_proj', a.h1, g.dk, below, true, 0),
    ...lb('v', 'v_proj', a.h1, g.dv, below, true, below ? f32(2 * H) : 0, [], inputNormBwd),
  ];
}
