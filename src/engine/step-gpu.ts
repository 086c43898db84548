/**
 * One iteration's GPU side, as functions over the explicit `StepGpu` struct the engine passes down:
 * the batch step written and its forward + sampling encoded as per-layer parts
 * (`encodeInference`), the parts submitted in one submission or in balanced layer-range slices with
 * GPU time per kind (`submitParts`), and the sampled ids handed to their requests (`acceptSampled`).
 */
import type { GpuContext } from '../gpu/device.ts';
import { encodeDispatches, type KernelDispatch } from '../gpu/dispatch.ts';
import type { BlockPool } from '../kv/pool.ts';
import type { ForwardPass } from '../model/forward.ts';
import type { IterationPlan } from '../scheduler/types.ts';
import { buildBatchStep, commitBatch, type BatchEntry } from './batch.ts';
import type { KindTimer, KindTimes, TimedKind } from './kind-timer.ts';
import { IDLE_ROW, type Request } from './request.ts';
import type { GpuSampler } from './sampler.ts';
import { partitionSlices } from './slices.ts';

/** What an iteration's GPU work needs (owned by the engine). */
export interface StepGpu {
  ctx: GpuContext;
  forward: ForwardPass;
  sampler: GpuSampler;
  timer: KindTimer;
  pool: BlockPool;
  maxBlocksPerSeq: number;
  now: () => number;
}

/** A part of one iteration's GPU work: encoded in order, submitted in slices. */
export interface WorkPart {
  encode: (enc: GPUCommandEncoder) => void;
  /** Predicted ms (for balancing slices). */
  ms: number;
  /** What it runs (its GPU time is measured per kind). */
  kind: TimedKind;
}

/** An iteration's measured time: wall time submit → results, and GPU time per kind when timed. */
export interface Measured {
  measuredMs: number;
  slices: number;
  gpu: KindTimes | null;
}


/** One iteration's inference rows between encode and read-back. */
export interface InferenceStep {
  plan: IterationPlan;
  reqs: Request[];
  entries: BatchEntry[];
  nSeqs: number;
  withLogprobs: boolean;
  result: Awaited<ReturnType<GpuSampler['read']>> | null;
}

/** Build and write the batch step of `reqs` (the plan's entries, in order); its forward parts and the sampling go into `parts`. */
export function encodeInference(g: StepGpu, plan: IterationPlan, reqs: Request[], parts: WorkPart[]): InferenceStep {
  const entries: BatchEntry[] = plan.entries.map((e, i) => ({ seq: reqs[i].seq, count: e.count }));
  const step = buildBatchStep(entries, g.pool, g.maxBlocksPerSeq, g.forward.defaultWindow);
  const { T, nSeqs, lora } = g.forward.write(step);
  const rows = plan.entries.map((e, i) => (e.sample ? reqs[i].sampleRow() : IDLE_ROW));
  const withEdits = g.sampler.writeRows(rows); // logit bias / grammar masks, when some row has them
  const withPenalties = rows.some((r) => r.penalty.nSeen > 0);
  const withLogprobs = plan.entries.some((e, i) => e.sample && reqs[i].settings.topLogprobs !== null);
  const k = g.sampler.candidatesFor(rows, withLogprobs);
  const layerParts = g.forward.dispatchParts(T, nSeqs, step.mode, lora);
  const sampling: KernelDispatch[] = g.sampler.dispatches(nSeqs, k, withPenalties, withLogprobs, withEdits);
  const perLayer = (plan.predictedMs.decode + plan.predictedMs.prefill) / layerParts.length;
  layerParts.forEach((dispatches, l) => {
    const last = l === layerParts.length - 1;
    parts.push({
      ms: perLayer,
      kind: 'inference',
      encode: (enc) => {
        encodeDispatches(enc, last ? [...dispatches, ...sampling] : dispatches);
        if (last) g.sampler.encodeReadback(enc, nSeqs, withLogprobs);
      },
    });
  });
  return { plan, reqs, entries, nSeqs, withLogprobs, result: null };
}

/**
 * Submit the parts in `slices` balanced groups, waiting for each group before the next (so one
 * submission holds the GPU about one budget), then read the sampled ids. Returns the measured
 * wall time from the first submission to the last result.
 */
export async function submitParts(g: StepGpu, parts: WorkPart[], slices: number, inference: InferenceStep | null, label: string): Promise<Measured> {
  const groups = partitionSlices(parts.map((p) => p.ms), slices);
  const queue = g.ctx.device.queue;
  const timer = g.timer;
  timer.begin();
  const t0 = g.now();
  for (const [gi, group] of groups.entries()) {
    const enc = g.ctx.device.createCommandEncoder({ label: `${label}${groups.length > 1 ? ` slice ${gi + 1}/${groups.length}` : ''}` });
    let kind: TimedKind | null = null;
    for (const i of group) {
      if (parts[i].kind !== kind) timer.mark(enc, (kind = parts[i].kind));
      parts[i].encode(enc);
    }
    timer.mark(enc, null);
    const last = gi === groups.length - 1;
    if (last) timer.resolve(enc);
    queue.submit([enc.finish()]);
    if (!last) await queue.onSubmittedWorkDone();
  }
  // The marks map in parallel with the sampled ids: the same wait, not another round trip. A
  // failed map (the engine destroyed mid-iteration, a lost device) leaves this iteration on wall
  // time; whatever failed shows in the sampled ids' read-back.
  const gpu = timer.read().catch(() => null);
  if (inference) {
    commitBatch(inference.entries);
    inference.result = await g.sampler.read(inference.nSeqs, inference.withLogprobs);
  } else await queue.onSubmittedWorkDone();
  return { measuredMs: g.now() - t0, slices: groups.length, gpu: await gpu };
}

/** Hand each sampled id to its request (finished and aborted ones take nothing). */
export function acceptSampled(g: StepGpu, s: InferenceStep): void {
  const result = s.result!;
  s.plan.entries.forEach((e, i) => {
    const r = s.reqs[i];
    if (!e.sample || r.aborted || r.finished) return;
    const update = r.accept(result.ids[i], result.logprobs?.[i] ?? null);
    if (update && r.slot >= 0) g.sampler.updateSeen(r.slot, update);
  });
}
