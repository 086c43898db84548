/**
 * GPU memory of the DPO trainer, allocated once at creation for maxTokens (T ≤ maxTokens per
 * sequence) and reused by every step:
 * - one SequenceArena per sequence of a pair (chosen, rejected): its inputs and every activation the
 *   backward needs, per layer, as TrainingReference keeps them. Both arenas are live at once because
 *   the DPO coefficient needs both sequences' log-probs before either backward can start.
 * - one GradScratch shared by the two backward passes (they run one after the other).
 * - shared constants: positions 0..maxTokens-1 and the LoRA row ids (all 0: slot 0 of the adapter).
 */
import { createStorage, uploadStorage } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/device.ts';
import type { ModelConfig } from '../model/config.ts';

/** What one layer's forward keeps for its backward (T = maxTokens rows). */
export interface LayerSaved {
  x: GPUBuffer; // [T, hidden] f32 the layer's input (residual stream)
  h1: GPUBuffer; // [T, hidden] f32 input RMSNorm output
  q: GPUBuffer; // [T, nHeads*hd] f32 after RoPE
  k: GPUBuffer; // [T, nKv*hd] f32 after RoPE
  v: GPUBuffer; // [T, nKv*hd] f32
  att: GPUBuffer; // [T, nHeads*hd] f32 attention output
  lse: GPUBuffer; // [T, nHeads] f32 attention log-sum-exp
  xMid: GPUBuffer; // [T, hidden] f32 after the attention residual
  h2: GPUBuffer; // [T, hidden] f32 post-attention RMSNorm output
  gate: GPUBuffer; // [T, inter] f32
  up: GPUBuffer; // [T, inter] f32
  act: GPUBuffer; // [T, inter] f32 silu(gate) * up
}

export interface SequenceArena {
  tokens: GPUBuffer; // [T] u32 prompt ++ response (padding rows hold valid ids)
  targets: GPUBuffer; // [T] u32 next token of each position (0 where untrained)
  dlogp: GPUBuffer; // [T] f32 per-position loss weight: the DPO coefficient on response positions, 0 elsewhere
  logp: GPUBuffer; // [T] f32 log p(targets[t] | tokens[..t])
  layers: LayerSaved[];
  xFinal: GPUBuffer; // [T, hidden] f32 output of the last layer
  xn: GPUBuffer; // [T, hidden] f32 final RMSNorm output
  logits: GPUBuffer; // [T, vocab] f32
}

/** Gradient buffers of one backward pass (shared by both sequences). */
export interface GradScratch {
  dlogits: GPUBuffer; // [T, vocab] f32
  dxn: GPUBuffer; // [T, hidden] f32 gradient of the final norm's output
  dx: GPUBuffer; // [T, hidden] f32 gradient of the residual stream (layer output, then xMid, then layer input)
  dh: GPUBuffer; // [T, hidden] f32 gradient of a norm's output (h2, then h1)
  dAct: GPUBuffer; // [T, inter] f32
  dgate: GPUBuffer; // [T, inter] f32
  dup: GPUBuffer; // [T, inter] f32
  dAtt: GPUBuffer; // [T, nHeads*hd] f32
  dq: GPUBuffer; // [T, nHeads*hd] f32 (rotated, then unrotated in place)
  dk: GPUBuffer; // [T, nKv*hd] f32 (same)
  dv: GPUBuffer; // [T, nKv*hd] f32
  delta: GPUBuffer; // [T, nHeads] f32 attention backward's rowsum(dout ∘ out)
  hg: GPUBuffer; // [2, T, r] f32 loraBackward scratch
}

export interface TrainArena {
  maxTokens: number;
  positions: GPUBuffer; // [T] u32 = 0..T-1 (one contiguous sequence per pass)
  loraIds: GPUBuffer; // [T] u32 = 0: every row uses the adapter in slot 0
  loraH: GPUBuffer; // [T, r] f32 loraForward scratch
  seqs: { chosen: SequenceArena; rejected: SequenceArena };
  grad: GradScratch;
  /** Bytes allocated (for the caller's memory budget). */
  bytes: number;
  destroy(): void;
}

export function createTrainArena(ctx: GpuContext, c: ModelConfig, rank: number, maxTokens: number): TrainArena {
  const made: GPUBuffer[] = [];
  let bytes = 0;
  const buf = (elements: number, label: string) => {
    const b = createStorage(ctx, elements * 4, `train.${label}`);
    made.push(b);
    bytes += b.size;
    return b;
  };
  try {
    const T = maxTokens;
    const H = c.hiddenSize, I = c.intermediateSize, Q = c.nHeads * c.headDim, KV = c.nKvHeads * c.headDim;
    const seq = (s: string): SequenceArena => ({
      tokens: buf(T, `${s}.tokens`),
      targets: buf(T, `${s}.targets`),
      dlogp: buf(T, `${s}.dlogp`),
      logp: buf(T, `${s}.logp`),
      layers: Array.from({ length: c.nLayers }, (_, l) => {
        const n = (what: string) => `${s}.l${l}.${what}`;
        return {
          x: buf(T * H, n('x')), h1: buf(T * H, n('h1')), q: buf(T * Q, n('q')), k: buf(T * KV, n('k')), v: buf(T * KV, n('v')),
          att: buf(T * Q, n('att')), lse: buf(T * c.nHeads, n('lse')), xMid: buf(T * H, n('xMid')), h2: buf(T * H, n('h2')),
          gate: buf(T * I, n('gate')), up: buf(T * I, n('up')), act: buf(T * I, n('act')),
        };
      }),
      xFinal: buf(T * H, `${s}.xFinal`),
      xn: buf(T * H, `${s}.xn`),
      logits: buf(T * c.vocabSize, `${s}.logits`),
    });
    const grad: GradScratch = {
      dlogits: buf(T * c.vocabSize, 'dlogits'), dxn: buf(T * H, 'dxn'), dx: buf(T * H, 'dx'), dh: buf(T * H, 'dh'),
      dAct: buf(T * I, 'dAct'), dgate: buf(T * I, 'dgate'), dup: buf(T * I, 'dup'),
      dAtt: buf(T * Q, 'dAtt'), dq: buf(T * Q, 'dq'), dk: buf(T * KV, 'dk'), dv: buf(T * KV, 'dv'),
      delta: buf(T * c.nHeads, 'delta'), hg: buf(2 * T * rank, 'hg'),
    };
    const positions = uploadStorage(ctx, Uint32Array.from({ length: T }, (_, i) => i), 'train.positions');
    made.push(positions);
    bytes += positions.size;
    const loraIds = buf(T, 'loraIds'); // zero-initialised: slot 0
    const loraH = buf(T * rank, 'loraH');
    const seqs = { chosen: seq('chosen'), rejected: seq('rejected') };
    return {
      maxTokens,
      positions,
      loraIds,
      loraH,
      seqs,
      grad,
      bytes,
      destroy: () => made.forEach((b) => b.destroy()),
    };
  } catch (e) {
    made.forEach((b) => b.destroy());
    throw e;
  }
}
