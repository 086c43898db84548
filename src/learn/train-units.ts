/**
 * The dispatch lists of the trainer's work units for one sequence of T tokens (positions 0..T-1,
 * contiguous activations): embedding, one layer's forward (with or without the adapter's LoRA),
 * final norm + LM head + token log-probs, and the backward counterparts down to the LoRA
 * gradients. Each builder mirrors the matching part of TrainingReference (src/learn/reference.ts),
 * which is the spec; the buffers are the arena's (src/learn/train-arena.ts).
 */
import type { GpuContext } from '../gpu/device.ts';
import type { KernelDispatch } from '../gpu/dispatch.ts';
import { causalAttentionBackward, causalAttentionForwardTrain } from '../kernels/attention-train.ts';
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

/** y = x·Wᵀ (+ bias) (+ LoRA delta when `withAdapter` and the module is a target). */
function linear(d: UnitDeps, l: number, m: LinearModule, x: GPUBuffer, y: GPUBuffer, T: number, withAdapter: boolean): KernelDispatch[] {
  const { ctx, weights, adapter, arena } = d;
  const w = weights.layers[l];
  const out = matmul(ctx, { x, w: w.linear[m], y, M: T });
  const bias = m === 'q_proj' || m === 'k_proj' || m === 'v_proj' ? w.bias[m] : undefined;
  if (bias) out.push(biasAdd(ctx, { y, bias, T, N: w.linear[m].N }));
  const s = withAdapter ? adapter.slice(l, m) : undefined;
  if (s) {
    out.push(
      ...loraForward(ctx, {
        x, y, h: arena.loraH, A: adapter.params, B: adapter.params, scales: adapter.scales, ids: arena.loraIds,
        M: T, inDim: s.inDim, outDim: s.outDim, r: adapter.layout.r, nSlots: 1, aOffset: s.aOffset, bOffset: s.bOffset,
      }),
    );
  }
  return out;
}

/**
 * Backward of `linear` for dy: dx = dy·W (+= with `accumulate`) plus the LoRA path's dx, and
 * dA/dB accumulated into the adapter's grads. dx = null: the input needs no gradient (layer 0's
 * q/k/v: the embedding is frozen), so the base matmul is skipped and only dA/dB are computed.
 */
function linearBackward(d: UnitDeps, l: number, m: LinearModule, x: GPUBuffer, dy: GPUBuffer, dx: GPUBuffer | null, T: number, accumulate: boolean): KernelDispatch[] {
  const { ctx, weights, adapter, arena } = d;
  const out = dx ? matmulInputGrad(ctx, { dy, w: weights.layers[l].linear[m], dx, M: T, accumulate }) : [];
  const s = adapter.slice(l, m);
  if (s) {
    out.push(
      ...loraBackward(ctx, {
        x, dy, dx: dx ?? undefined, params: adapter.params, grads: adapter.grads, hg: arena.grad.hg,
        M: T, inDim: s.inDim, outDim: s.outDim, r: adapter.layout.r, scale: adapter.scale, aOffset: s.aOffset, bOffset: s.bOffset,
      }),
    );
  }
  return out;
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

/** Multiply-accumulates (millions) of y = x·Wᵀ for T rows (+ the LoRA's shrink and expand). */
function linearMmacs(d: UnitDeps, l: number, m: LinearModule, T: number, withAdapter: boolean): number {
  const w = d.weights.layers[l].linear[m];
  const lora = withAdapter && d.adapter.slice(l, m) ? T * d.adapter.layout.r * (w.K + w.N) : 0;
  return (T * w.N * w.K + lora) / 1e6;
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
  const lin = (m: LinearModule, x: GPUBuffer, y: GPUBuffer) => linear(d, l, m, x, y, T, withAdapter);
  const mm = (m: LinearModule) => linearMmacs(d, l, m, T, withAdapter);
  const f32 = (n: number) => 4 * T * n;
  return [
    { part: 'q', dispatches: [rmsNorm(ctx, { x: a.x, weight: w.inputNorm, y: a.h1, T, dim: H, eps }), ...lin('q_proj', a.h1, a.q)], mmacs: mm('q_proj'), bytes: f32(H + Q) },
    { part: 'k', dispatches: lin('k_proj', a.h1, a.k), mmacs: mm('k_proj'), bytes: f32(KV) },
    { part: 'v', dispatches: lin('v_proj', a.h1, a.v), mmacs: mm('v_proj'), bytes: f32(KV) },
    {
      part: 'attn',
      dispatches: [
        rope(ctx, { q: a.q, k: a.k, positions: d.arena.positions, invFreq: weights.invFreq, T, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headDim }),
        causalAttentionForwardTrain(ctx, { q: a.q, k: a.k, v: a.v, out: a.att, lse: a.lse, T, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headDim }),
      ],
      mmacs: attentionMmacs(d, T),
      bytes: f32(Q + c.nHeads),
    },
    { part: 'o', dispatches: [...lin('o_proj', a.att, a.xMid), residualAdd(ctx, { h: a.xMid, delta: a.x, n: T * H })], mmacs: mm('o_proj'), bytes: f32(H) },
    { part: 'gate', dispatches: [rmsNorm(ctx, { x: a.xMid, weight: w.postNorm, y: a.h2, T, dim: H, eps }), ...lin('gate_proj', a.h2, a.gate)], mmacs: mm('gate_proj'), bytes: f32(H + I) },
    { part: 'up', dispatches: lin('up_proj', a.h2, a.up), mmacs: mm('up_proj'), bytes: f32(I) },
    {
      part: 'down',
      dispatches: [siluGate(ctx, { gate: a.gate, up: a.up, out: a.act, n: T * I }), ...lin('down_proj', a.act, next), residualAdd(ctx, { h: next, delta: a.xMid, n: T * H })],
      mmacs: mm('down_proj'),
      bytes: f32(I + H),
    },
  ];
}

/** Layer l's whole forward as one dispatch list (the segments in order). */
export function layerForwardDispatches(d: UnitDeps, seq: SequenceArena, l: number, T: number, withAdapter: boolean): KernelDispatch[] {
  return layerForwardSegments(d, seq, l, T, withAdapter).flatMap((s) => s.dispatches);
}

/** Final norm, LM head over all T rows, log p(targets[t]) per row. */
export function headDispatches(d: UnitDeps, seq: SequenceArena, T: number): KernelDispatch[] {
  const { ctx, weights } = d;
  const c = weights.config;
  return [
    rmsNorm(ctx, { x: seq.xFinal, weight: weights.finalNorm, y: seq.xn, T, dim: c.hiddenSize, eps: c.rmsNormEps }),
    ...matmul(ctx, { x: seq.xn, w: weights.lmHead, y: seq.logits, M: T }),
    tokenLogprobs(ctx, { logits: seq.logits, targets: seq.targets, logp: seq.logp, T, V: c.vocabSize }),
  ];
}

/** dlogits from the per-position weights (dlogp), through the LM head and the final norm into grad.dx. */
export function headBackwardDispatches(d: UnitDeps, seq: SequenceArena, T: number): KernelDispatch[] {
  const { ctx, weights } = d;
  const c = weights.config;
  const g = d.arena.grad;
  return [
    tokenLogprobsBackward(ctx, { logits: seq.logits, targets: seq.targets, dlogp: seq.dlogp, dlogits: g.dlogits, T, V: c.vocabSize }),
    ...matmulInputGrad(ctx, { dy: g.dlogits, w: weights.lmHead, dx: g.dxn, M: T }),
    rmsNormBackward(ctx, { x: seq.xFinal, weight: weights.finalNorm, dy: g.dxn, dx: g.dx, T, dim: c.hiddenSize, eps: c.rmsNormEps }),
  ];
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
  const lb = (m: LinearModule, x: GPUBuffer, dy: GPUBuffer, dx: GPUBuffer | null, acc: boolean) => linearBackward(d, l, m, x, dy, dx, T, acc);
  // dx (when needed) costs one matmul, dA/dB about two LoRA products.
  const mm = (m: LinearModule, withDx: boolean) => {
    const wm = weights.layers[l].linear[m];
    const lora = d.adapter.slice(l, m) ? 2 * T * d.adapter.layout.r * (wm.K + wm.N) : 0;
    return ((withDx ? T * wm.N * wm.K : 0) + lora) / 1e6;
  };
  const f32 = (n: number) => 4 * T * n;
  const v: UnitSegment = { part: 'v', dispatches: lb('v_proj', a.h1, g.dv, below, true), mmacs: mm('v_proj', below !== null), bytes: below ? f32(H) : 0 };
  if (below) {
    v.dispatches.push(rmsNormBackward(ctx, { x: a.x, weight: w.inputNorm, dy: g.dh, dx: g.dx, T, dim: H, eps, accumulate: true })); // dx = ∂/∂x
    v.bytes += f32(H);
  }
  return [
    // MLP: out = xMid + down(silu(gate(h2)) · up(h2)), h2 = norm(xMid)
    { part: 'down', dispatches: lb('down_proj', a.act, g.dx, g.dAct, false), mmacs: mm('down_proj', true), bytes: f32(I) },
    {
      part: 'gate',
      dispatches: [siluGateBackward(ctx, { gate: a.gate, up: a.up, dout: g.dAct, dgate: g.dgate, dup: g.dup, n: T * I }), ...lb('gate_proj', a.h2, g.dgate, g.dh, false)],
      mmacs: mm('gate_proj', true),
      bytes: f32(2 * I + H),
    },
    {
      part: 'up',
      dispatches: [...lb('up_proj', a.h2, g.dup, g.dh, true), rmsNormBackward(ctx, { x: a.xMid, weight: w.postNorm, dy: g.dh, dx: g.dx, T, dim: H, eps, accumulate: true })], // dx = ∂/∂xMid
      mmacs: mm('up_proj', true),
      bytes: f32(2 * H),
    },
    // Attention: xMid = x + o(attn(rope(q(h1)), rope(k(h1)), v(h1))), h1 = norm(x)
    { part: 'o', dispatches: lb('o_proj', a.att, g.dx, g.dAtt, false), mmacs: mm('o_proj', true), bytes: f32(Q) },
    {
      part: 'attn',
      dispatches: [
        ...causalAttentionBackward(ctx, { q: a.q, k: a.k, v: a.v, out: a.att, lse: a.lse, dout: g.dAtt, dq: g.dq, dk: g.dk, dv: g.dv, delta: g.delta, T, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headDim }),
        ropeBackward(ctx, { dq: g.dq, dk: g.dk, positions: d.arena.positions, negInvFreq: d.negInvFreq, T, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headDim }),
      ],
      mmacs: 2.5 * attentionMmacs(d, T),
      bytes: f32(Q + 2 * KV + c.nHeads),
    },
    { part: 'q', dispatches: lb('q_proj', a.h1, g.dq, below, false), mmacs: mm('q_proj', below !== null), bytes: below ? f32(H) : 0 },
    { part: 'k', dispatches: lb('k_proj', a.h1, g.dk, below, true), mmacs: mm('k_proj', below !== null), bytes: 0 },
    v,
  ];
}

/** Layer l's whole backward as one dispatch list (the segments in order). */
export function layerBackwardDispatches(d: UnitDeps, seq: SequenceArena, l: number, T: number): KernelDispatch[] {
  return layerBackwardSegments(d, seq, l, T).flatMap((s) => s.dispatches);
}
