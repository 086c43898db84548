/**
 * Shared helpers of the browser tests: one device for the whole file, upload/readback, seeded
 * random data and the tolerance check. Tolerances are per dtype and stated at each call site.
 */
import { acquireGpu, type AcquireOptions, type GpuContext } from '../../src/gpu/device.ts';
import { readF32, readU32, uploadStorage } from '../../src/gpu/buffers.ts';
import { runDispatches, type KernelDispatch } from '../../src/gpu/dispatch.ts';

export { mulberry32, randomF32, closeTo, type Tolerance } from '../util/random.ts';

const contexts = new Map<string, Promise<GpuContext>>();

/** A cached device; options (e.g. a small binding cap) get their own device. */
export function testGpu(options: AcquireOptions = {}): Promise<GpuContext> {
  const key = JSON.stringify(options);
  let ctx = contexts.get(key);
  if (!ctx) {
    ctx = acquireGpu({ ...options, label: `test ${key}` });
    contexts.set(key, ctx);
  }
  return ctx;
}

export function upload(ctx: GpuContext, data: Float32Array | Uint32Array | Int32Array, label = 'test'): GPUBuffer {
  return uploadStorage(ctx, data, label);
}

export async function run(ctx: GpuContext, ...dispatches: (KernelDispatch | KernelDispatch[])[]): Promise<void> {
  ctx.device.pushErrorScope('validation');
  await runDispatches(ctx, dispatches.flat());
  const err = await ctx.device.popErrorScope();
  if (err) throw new Error(`GPU validation error: ${err.message}`);
}

export const download = readF32;
export const downloadU32 = readU32;
