/**
 * How the benchmark times a kernel: encode the same dispatches many times into one submission
 * (so per-submission overhead is spread over many calls, as in a decode step) and take the
 * wall-clock time from submit to queue completion, median over several submissions after warm-up.
 * With timestamp-query, one extra profiled submission gives the GPU's own time per call.
 */
import type { GpuContext } from '../src/gpu/device.ts';
import { encodeDispatches, type KernelDispatch } from '../src/gpu/dispatch.ts';
import { GpuProfiler } from '../src/gpu/profiler.ts';
import { median } from './report.ts';

export interface TimingPlan {
  iters: number; // timed submissions
  targetMs: number; // aim for submissions about this long
  maxCalls: number; // most calls encoded in one submission
}

export interface Timing {
  ms: number; // wall-clock per call
  gpuMs?: number; // timestamp-query GPU time per call
  calls: number; // calls per submission
}

/** Passes one profiled submission may time: 2 queries each, and query sets are capped at 4096 queries. */
const MAX_PROFILED_PASSES = 1024;

/** Encode `calls` repetitions of `call` into one command buffer. */
function encodeCalls(ctx: GpuContext, call: readonly KernelDispatch[], calls: number, profiler?: GpuProfiler): GPUCommandBuffer {
  const enc = ctx.device.createCommandEncoder({ label: `bench ${call[0]?.label ?? ''} x${calls}` });
  const all: KernelDispatch[] = [];
  for (let i = 0; i < calls; i++) all.push(...call);
  encodeDispatches(enc, all, profiler);
  profiler?.resolve(enc);
  return enc.finish();
}

/** Wall-clock ms of one submission of `calls` calls, from submit to queue completion. */
async function submitAndWait(ctx: GpuContext, call: readonly KernelDispatch[], calls: number): Promise<number> {
  const cmd = encodeCalls(ctx, call, calls); // encoding is outside the timed region
  const t0 = performance.now();
  ctx.device.queue.submit([cmd]);
  await ctx.device.queue.onSubmittedWorkDone();
  return performance.now() - t0;
}

/** GPU ms per call from one profiled submission, or undefined without timestamp queries. */
async function gpuTimePerCall(ctx: GpuContext, call: readonly KernelDispatch[], calls: number): Promise<number | undefined> {
  if (!ctx.features.timestampQuery || call.length === 0) return undefined;
  const profiled = Math.max(1, Math.min(calls, Math.floor(MAX_PROFILED_PASSES / call.length)));
  const profiler = new GpuProfiler(ctx, profiled * call.length);
  try {
    profiler.begin();
    ctx.device.queue.submit([encodeCalls(ctx, call, profiled, profiler)]);
    const entries = await profiler.collect();
    return entries.reduce((s, e) => s + e.ms, 0) / profiled;
  } finally {
    profiler.destroy();
  }
}

/** Time one call (the dispatches of one kernel invocation). Reports GPU validation errors. */
export async function timeCall(ctx: GpuContext, call: readonly KernelDispatch[], plan: TimingPlan): Promise<Timing> {
  ctx.device.pushErrorScope('validation');
  // Warm-up: pipeline compilation and first touch of the buffers; then a probe sizes the submissions.
  await submitAndWait(ctx, call, 1);
  const probe = await submitAndWait(ctx, call, 1);
  const calls = Math.max(1, Math.min(plan.maxCalls, Math.round(plan.targetMs / Math.max(probe, 1e-3))));
  await submitAndWait(ctx, call, calls);
  const samples: number[] = [];
  for (let i = 0; i < plan.iters; i++) samples.push((await submitAndWait(ctx, call, calls)) / calls);
  const gpuMs = await gpuTimePerCall(ctx, call, calls);
  const err = await ctx.device.popErrorScope();
  if (err) throw new Error(`GPU validation error while timing ${call[0]?.label}: ${err.message}`);
  return { ms: median(samples), gpuMs, calls };
}
