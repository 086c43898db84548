import { describe, expect, it } from 'vitest';
import { acquireGpu, describeGpu, SPEC_DEFAULT_LIMITS } from '../../src/gpu/device.ts';
import { DeviceLostError, NoAdapterError, WebGpuUnavailableError } from '../../src/gpu/errors.ts';
import { GpuProfiler } from '../../src/gpu/profiler.ts';
import { residualAdd } from '../../src/kernels/residual.ts';
import { encodeDispatches } from '../../src/gpu/dispatch.ts';
import { testGpu, upload } from './gpu.ts';

describe('device acquisition', () => {
  it('asks for the adapter limits, not the spec defaults', async () => {
    const ctx = await testGpu();
    const adapter = (await navigator.gpu.requestAdapter())!;
    expect(ctx.limits.maxStorageBufferBindingSize).toBe(adapter.limits.maxStorageBufferBindingSize);
    expect(ctx.limits.maxBufferSize).toBe(adapter.limits.maxBufferSize);
    expect(ctx.limits.maxComputeWorkgroupStorageSize).toBe(adapter.limits.maxComputeWorkgroupStorageSize);
    expect(ctx.limits.maxStorageBuffersPerShaderStage).toBe(adapter.limits.maxStorageBuffersPerShaderStage);
    expect(ctx.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(SPEC_DEFAULT_LIMITS.maxStorageBufferBindingSize);
    expect(describeGpu(ctx)).toMatch(/max binding \d+ MiB/);
  });
  it('detects optional features and honours disableFeatures', async () => {
    const adapter = (await navigator.gpu.requestAdapter())!;
    const ctx = await testGpu();
    expect(ctx.features.subgroups).toBe(adapter.features.has('subgroups' as GPUFeatureName));
    expect(ctx.features.timestampQuery).toBe(adapter.features.has('timestamp-query'));
    expect(ctx.features.shaderF16).toBe(adapter.features.has('shader-f16'));
    const off = await testGpu({ disableFeatures: { subgroups: true, timestampQuery: true, shaderF16: true } });
    expect(off.features).toEqual({ shaderF16: false, subgroups: false, timestampQuery: false });
    expect(off.device.features.has('timestamp-query')).toBe(false);
  });
  it('lowers planning limits to a cap (for split tests) but never raises them', async () => {
    const ctx = await testGpu({ limitsCap: { maxStorageBufferBindingSize: 4096, maxBufferSize: 2 ** 50 } });
    expect(ctx.limits.maxStorageBufferBindingSize).toBe(4096);
    expect(ctx.limits.maxBufferSize).toBe(ctx.device.limits.maxBufferSize);
  });
  it('types the absence of WebGPU and of an adapter', async () => {
    const noAdapter = { requestAdapter: async () => null } as unknown as GPU;
    await expect(acquireGpu({ gpu: noAdapter })).rejects.toBeInstanceOf(NoAdapterError);
    const saved = Object.getOwnPropertyDescriptor(Navigator.prototype, 'gpu')!;
    Object.defineProperty(Navigator.prototype, 'gpu', { configurable: true, get: () => undefined });
    try {
      await expect(acquireGpu()).rejects.toBeInstanceOf(WebGpuUnavailableError);
    } finally {
      Object.defineProperty(Navigator.prototype, 'gpu', saved);
    }
  });
  it('surfaces device loss as an event carrying a typed error', async () => {
    const ctx = await acquireGpu({ label: 'to-lose' });
    const seen = new Promise<DeviceLostError>((resolve) => ctx.events.addEventListener('lost', (e) => resolve((e as CustomEvent<DeviceLostError>).detail)));
    ctx.destroy();
    const err = await seen;
    expect(err).toBeInstanceOf(DeviceLostError);
    expect(err.reason).toBe('destroyed');
    expect(await ctx.lost).toBe(err);
  });
});

describe('pipeline cache', () => {
  it('compiles a variant once and reuses it', async () => {
    const ctx = await testGpu();
    const h = upload(ctx, new Float32Array(64)), d = upload(ctx, new Float32Array(64));
    const before = ctx.pipelines.size;
    const a = residualAdd(ctx, { h, delta: d, n: 64 });
    const b = residualAdd(ctx, { h, delta: d, n: 32 });
    expect(a.pipeline).toBe(b.pipeline);
    expect(ctx.pipelines.size - before).toBeLessThanOrEqual(1);
    expect(ctx.pipelines.has('residual_add_f32_wg256')).toBe(true);
    await ctx.pipelines.check('residual_add_f32_wg256');
    await ctx.pipelines.check('residual_add_f32_wg256'); // a second check answers too (it once hung)
    await expect(ctx.pipelines.check('never_built')).rejects.toThrow('pipeline never_built was never built');
  });
});

describe('profiler', () => {
  async function profile(forceWall: boolean) {
    const ctx = await testGpu();
    const n = 1 << 16;
    const h = upload(ctx, new Float32Array(n)), d = upload(ctx, new Float32Array(n));
    const dispatch = residualAdd(ctx, { h, delta: d, n });
    const prof = new GpuProfiler(ctx, 8, forceWall);
    prof.begin();
    const enc = ctx.device.createCommandEncoder();
    encodeDispatches(enc, [dispatch, dispatch], prof);
    prof.resolve(enc);
    ctx.device.queue.submit([enc.finish()]);
    return { prof, entries: await prof.collect() };
  }
  it('reports per-pass GPU time with timestamp queries', async () => {
    const ctx = await testGpu();
    if (!ctx.features.timestampQuery) return; // covered by the wall-clock test below
    const { prof, entries } = await profile(false);
    expect(prof.mode).toBe('timestamp');
    expect(entries.map((e) => e.label)).toEqual(['residual_add_f32_wg256', 'residual_add_f32_wg256']);
    for (const e of entries) expect(e.ms).toBeGreaterThanOrEqual(0);
    expect(entries.some((e) => e.ms > 0)).toBe(true);
  });
  it('falls back to wall-clock for the whole submission', async () => {
    const { prof, entries } = await profile(true);
    expect(prof.mode).toBe('wall-clock');
    expect(entries).toHaveLength(1);
    expect(entries[0].label).toBe('submission');
    expect(entries[0].ms).toBeGreaterThan(0);
  });
});
