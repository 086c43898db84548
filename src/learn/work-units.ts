/**
 * The trainer's work units: what one unit of a training step's GPU work is (plain data a scheduler
 * can size, order and interleave with serving), how a sequence's forward and backward are cut into
 * lists of them, and how a list is submitted.
 *
 * The dispatches themselves come from train-units.ts (its segments: one frozen matmul with the
 * elementwise ops beside it, one LoRA path, the attention core, a head chunk); this file groups the
 * segments into units at the trainer's granularity and caches each list per shape, so a step costs no
 * set-up once its shapes have been seen. The step lifecycle that runs the lists is trainer.ts's.
 */
import type { GpuContext } from '../gpu/device.ts';
import { encodeDispatches, releaseDispatches, type KernelDispatch } from '../gpu/dispatch.ts';
import type { TokenKto, TokenPair } from './reference.ts';
import { embedDispatches, headBackwardSegments, headSegments, layerBackwardSegments, layerForwardSegments, type UnitDeps, type UnitSegment } from './train-units.ts';

/** Sequences run at a multiple of this many tokens (exact padding, fewer dispatch lists). */
export const TOKEN_BUCKET = 16;

/**
 * The length a sequence of T tokens runs at: Tb = T rounded up to TOKEN_BUCKET (≤ maxTokens), so few
 * dispatch lists are ever built. Padding is exact: attention is causal (real rows never see padded
 * ones) and padded rows carry a zero loss weight, so their gradients are exactly zero.
 */
export function bucketedLength(T: number, maxTokens: number): number {
  return Math.min(maxTokens, Math.ceil(T / TOKEN_BUCKET) * TOKEN_BUCKET);
}

export type SeqName = 'chosen' | 'rejected';
export const SEQS: readonly SeqName[] = ['chosen', 'rejected'];

export type UnitKind = 'embed' | 'forward' | 'head' | 'head-backward' | 'backward' | 'optimizer';

/** One unit of GPU work: plain data, encoded and submitted by the caller in list order. */
export interface WorkUnit {
  readonly kind: UnitKind;
  /** Absent for the optimizer (it serves the pair). */
  readonly seq?: SeqName;
  /** For 'forward' and 'backward'. */
  readonly layer?: number;
  /** For sub-layer units: the layer's parts it runs, e.g. 'q' or 'attn' (absent: the whole layer). */
  readonly part?: string;
  /** Forward-direction units: false for the reference model's pass (no LoRA). */
  readonly adapter?: boolean;
  readonly dispatches: readonly KernelDispatch[];
  /** Multiply-accumulates, millions (what the scheduler's cost model sizes it by). */
  readonly mmacs: number;
  /** Activation bytes it writes into the arena (the plan's memory term). */
  readonly bytes: number;
}

/**
 * How finely the step is cut into units: 'matmul' = one unit per frozen matmul of a layer (with its
 * neighbouring elementwise ops), per LoRA path (its shrink and expand), the attention core, and the
 * LM head per 16-row chunk, so the largest unit costs about as much as one decode step's matmuls
 * and fits beside it; 'layer' = one unit per layer and one per head (the coarser cut, kept for the
 * scheduler's ablation). Both run the same dispatches in the same order.
 */
export type UnitGranularity = 'matmul' | 'layer';
export const UNIT_GRANULARITIES: readonly UnitGranularity[] = ['matmul', 'layer'];

/** A step's two phases as unit lists, with the pair they run (what plan() returns). */
export interface StepPlan {
  readonly pair: TokenPair;
  /** Real tokens per sequence (the units run at the bucketed length). */
  readonly tokens: Readonly<Record<SeqName, number>>;
  /** Phase 1: both sequences' forward with the adapter, ending in their token log-probs. */
  readonly forward: readonly WorkUnit[];
  /** Phase 2, after loss(): both backward passes, then the optimizer unit (last). */
  readonly backward: readonly WorkUnit[];
}

/**
 * A KTO step's plan: the completion sequence (prompt + completion) runs in the 'chosen' slot, the
 * KL sequence (prompt + the mismatched completion) in the 'rejected' slot — the same forward units
 * as a DPO pair's. The backward is the completion's only (the KL sequence's backward weight is 0,
 * so its units would add exactly nothing), then the optimizer unit.
 */
export interface KtoStepPlan extends StepPlan {
  readonly example: TokenKto;
}

/** Encode units in order into one command buffer (one compute pass for all of them) and submit it. */
export function submitUnits(ctx: GpuContext, units: readonly WorkUnit[]): void {
  const enc = ctx.device.createCommandEncoder({ label: 'train units' });
  encodeDispatches(enc, units.flatMap((u) => u.dispatches)); // one compute pass: however finely the step is cut
  ctx.device.queue.submit([enc.finish()]);
}

/**
 * The unit lists of one trainer: each sequence's forward (with or without the adapter) and backward
 * at a bucketed length, built on first use from train-units.ts's segments and kept until destroy().
 * The lists own their dispatches' uniforms, so destroy() releases them.
 */
export class UnitLists {
  private readonly fwdPlans = new Map<string, WorkUnit[]>();
  private readonly bwdPlans = new Map<string, WorkUnit[]>();

  /** onBuild is called once per list built (a cache miss: its first run also pays set-up and shader compiles). */
  constructor(
    private readonly deps: UnitDeps,
    readonly granularity: UnitGranularity,
    private readonly onBuild: () => void,
  ) {}

  /** A layer's (or the head's) segments as units: one per segment, or one for all of them. */
  private segmentUnits(kind: UnitKind, seq: SeqName, layer: number | undefined, segments: UnitSegment[], adapter?: boolean): WorkUnit[] {
    const base = { kind, seq, ...(layer === undefined ? {} : { layer }), ...(adapter === undefined ? {} : { adapter }) };
    if (this.granularity === 'matmul') return segments.map((g): WorkUnit => ({ ...base, part: g.part, dispatches: g.dispatches, mmacs: g.mmacs, bytes: g.bytes }));
    const sum = (k: 'mmacs' | 'bytes') => segments.reduce((a, g) => a + g[k], 0);
    return [{ ...base, dispatches: segments.flatMap((g) => g.dispatches), mmacs: sum('mmacs'), bytes: sum('bytes') }];
  }

  /** Units of one sequence's forward at bucketed length Tb: embed, layers, head (built once per shape). */
  forward(seq: SeqName, Tb: number, withAdapter: boolean): WorkUnit[] {
    return cached(this.fwdPlans, `${seq}:${withAdapter}:${Tb}`, this.onBuild, () => {
      const { arena, weights } = this.deps;
      const a = arena.seqs[seq];
      const adapter = withAdapter;
      const c = weights.config;
      return [
        { kind: 'embed', seq, adapter, dispatches: embedDispatches(this.deps, a, Tb), mmacs: 0, bytes: 4 * Tb * c.hiddenSize },
        ...weights.layers.flatMap((_, layer) => this.segmentUnits('forward', seq, layer, layerForwardSegments(this.deps, a, layer, Tb, withAdapter), adapter)),
        ...this.segmentUnits('head', seq, undefined, headSegments(this.deps, a, Tb), adapter),
      ];
    });
  }

  /** Units of one sequence's backward: head-backward, then layers L-1..0. */
  backward(seq: SeqName, Tb: number): WorkUnit[] {
    return cached(this.bwdPlans, `${seq}:${Tb}`, this.onBuild, () => {
      const { arena, weights } = this.deps;
      const a = arena.seqs[seq];
      const layers = weights.layers.map((_, layer) => this.segmentUnits('backward', seq, layer, layerBackwardSegments(this.deps, a, layer, Tb)));
      return [...this.segmentUnits('head-backward', seq, undefined, headBackwardSegments(this.deps, a, Tb)), ...layers.reverse().flat()];
    });
  }

  /** Frees every list's uniforms (the buffers they bind are the arena's and the model's, not freed here). */
  destroy(): void {
    for (const plans of [this.fwdPlans, this.bwdPlans]) {
      for (const units of plans.values()) releaseDispatches(units.flatMap((u) => u.dispatches));
      plans.clear();
    }
  }
}

/**
 * Get or build a unit list. Never dropped before destroy(): the keys are bounded (two sequences ×
 * adapter on/off × the length buckets up to maxTokens), and a step in flight holds its lists.
 */
function cached(plans: Map<string, WorkUnit[]>, key: string, onBuild: () => void, build: () => WorkUnit[]): WorkUnit[] {
  let plan = plans.get(key);
  if (!plan) {
    plan = build();
    onBuild();
    plans.set(key, plan);
  }
  return plan;
}
