/**
 * A dispatch is plain data: the pipeline, its bind group and the workgroup grid. Kernels build
 * them once (at load or when a batch shape is first seen) and the engine re-encodes the same
 * objects every token: no per-token allocation. Values that change per token (positions, lengths,
 * token ids) live in storage buffers updated with writeBuffer, never in the uniforms.
 *
 * Binding convention for every shader: binding 0 is the uniform struct `p` when the kernel has
 * one, then the storage buffers at 1, 2, ... in the order the kernel file lists them.
 */
import { isRange, type Binding } from './binding.ts';
import { uploadUniform } from './buffers.ts';
import type { GpuContext } from './device.ts';
import type { GpuProfiler } from './profiler.ts';

export interface KernelDispatch {
  /** Variant name, also the pass label in profiles. */
  readonly label: string;
  readonly pipeline: GPUComputePipeline;
  readonly bindGroup: GPUBindGroup;
  readonly workgroups: readonly [number, number, number];
  /**
   * Its uniform buffer (null: the kernel has none), owned by whoever holds the dispatch: freed by
   * releaseDispatches when the list is dropped (a plan evicted, its owner destroyed).
   */
  readonly uniforms: GPUBuffer | null;
}

/** A storage binding: a whole buffer, or a byte range of one (offset aligned to minStorageBufferOffsetAlignment). */
export type { Binding } from './binding.ts';

export interface DispatchSpec {
  variant: string;
  /** The specialised WGSL, built only on a pipeline-cache miss. */
  code: () => string;
  /** Packed uniforms (UniformLayout.pack), bound at 0; omit for kernels without uniforms. */
  uniforms?: ArrayBuffer;
  /** Storage buffers bound at 1.. (or 0.. without uniforms). */
  storage: Binding[];
  workgroups: readonly [number, number, number];
}

export function makeDispatch(ctx: GpuContext, spec: DispatchSpec): KernelDispatch {
  const pipeline = ctx.pipelines.get(spec.variant, spec.code);
  const entries: GPUBindGroupEntry[] = [];
  let slot = 0;
  const uniforms = spec.uniforms ? uploadUniform(ctx, spec.uniforms, `${spec.variant}.params`) : null;
  if (uniforms) entries.push({ binding: slot++, resource: { buffer: uniforms } });
  for (const b of spec.storage) {
    entries.push({ binding: slot++, resource: isRange(b) ? { buffer: b.buffer, offset: b.offset ?? 0, size: b.size } : { buffer: b } });
  }
  const bindGroup = ctx.device.createBindGroup({ label: spec.variant, layout: pipeline.getBindGroupLayout(0), entries });
  return { label: spec.variant, pipeline, bindGroup, workgroups: spec.workgroups, uniforms };
}

/** Free the uniform buffers of dispatches that will never be encoded again (each list once; a second call is harmless). */
export function releaseDispatches(dispatches: Iterable<KernelDispatch>): void {
  for (const d of dispatches) d.uniforms?.destroy();
}


/**
 * Split a 1-D count of workgroups into an x*y grid that respects maxComputeWorkgroupsPerDimension.
 * Shaders recover the linear index as `wid.x + wid.y * nwg.x` and return when it is >= the count.
 */
export function grid1d(count: number, maxPerDim = 65535): [number, number, number] {
  if (count <= maxPerDim) return [Math.max(1, count), 1, 1];
  const y = Math.ceil(count / maxPerDim);
  return [Math.ceil(count / y), y, 1];
}

/**
 * Encode dispatches. With a timestamp profiler each dispatch gets its own pass (timestamps are per
 * pass); otherwise they share one pass, which is cheaper to encode.
 */
export function encodeDispatches(encoder: GPUCommandEncoder, dispatches: readonly KernelDispatch[], profiler?: GpuProfiler): void {
  if (profiler && profiler.mode === 'timestamp') {
    for (const d of dispatches) {
      const pass = encoder.beginComputePass({ label: d.label, timestampWrites: profiler.pass(d.label) });
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.bindGroup);
      pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
      pass.end();
    }
    return;
  }
  const pass = encoder.beginComputePass();
  for (const d of dispatches) {
    pass.setPipeline(d.pipeline);
    pass.setBindGroup(0, d.bindGroup);
    pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
  }
  pass.end();
}

/** runDispatches for dispatches built for this one run: their uniforms are freed after it. */
export async function runOnce(ctx: GpuContext, dispatches: readonly KernelDispatch[]): Promise<void> {
  try {
    await runDispatches(ctx, dispatches);
  } finally {
    releaseDispatches(dispatches);
  }
}

/** Encode, submit and wait: for tests and one-off work at load, never the decode loop. */
export async function runDispatches(ctx: GpuContext, dispatches: readonly KernelDispatch[]): Promise<void> {
  const enc = ctx.device.createCommandEncoder({ label: dispatches.map((d) => d.label).join('+').slice(0, 120) });
  encodeDispatches(enc, dispatches);
  ctx.device.queue.submit([enc.finish()]);
  await ctx.device.queue.onSubmittedWorkDone();
}
