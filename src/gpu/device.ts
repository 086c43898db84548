/**
 * Device acquisition. Asks the adapter for its real limits (the defaults of requestDevice are the
 * spec minimums, far below what GPUs offer) and the optional features we have fast paths for, and
 * wraps the device in a GpuContext: the one struct every kernel and the engine receive.
 */
import { GpuTally } from './tally.ts';
import { DeviceLostError, NoAdapterError, WebGpuUnavailableError } from './errors.ts';
import { PipelineCache } from './pipelines.ts';

/** The limits that size our tensors and tiles. */
export interface GpuLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  maxComputeWorkgroupStorageSize: number;
  maxStorageBuffersPerShaderStage: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupSizeX: number;
  maxComputeWorkgroupsPerDimension: number;
  minStorageBufferOffsetAlignment: number;
}

/** Spec defaults: what every WebGPU device must offer; we never ask for less. */
export const SPEC_DEFAULT_LIMITS: GpuLimits = {
  maxStorageBufferBindingSize: 128 * 1024 * 1024,
  maxBufferSize: 256 * 1024 * 1024,
  maxComputeWorkgroupStorageSize: 16384,
  maxStorageBuffersPerShaderStage: 8,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
  maxComputeWorkgroupsPerDimension: 65535,
  minStorageBufferOffsetAlignment: 256,
};

const LIMIT_NAMES = Object.keys(SPEC_DEFAULT_LIMITS) as (keyof GpuLimits)[];

/** Optional features, each with a fallback when absent. */
export interface GpuFeatures {
  /** Native f16 arithmetic in WGSL (`enable f16;`). Fallback: f16 packed in u32, unpack2x16float. */
  shaderF16: boolean;
  /** Subgroup reductions. Fallback: workgroup-memory tree reductions. */
  subgroups: boolean;
  /** GPU timestamps per pass. Fallback: wall-clock around queue completion. */
  timestampQuery: boolean;
}

export interface AcquireOptions {
  /** The GPU object: `navigator.gpu` in a browser, `create([])` from the `webgpu` package in Node. */
  gpu?: GPU;
  powerPreference?: GPUPowerPreference;
  /** Turn fast paths off (tests of the fallbacks, or a driver bug). */
  disableFeatures?: Partial<Record<keyof GpuFeatures, boolean>>;
  /**
   * Cap the limits the runtime plans with (never above what the adapter has). Tests use a small
   * maxStorageBufferBindingSize to exercise tensor splitting without allocating gigabytes.
   */
  limitsCap?: Partial<GpuLimits>;
  label?: string;
}

/**
 * Which kernel variants this context builds (src/kernels/plan.ts reads and sets it): 'fused' (the
 * default) or 'unfused' (the plan before issue 11), and a reduction style forced by tests (null:
 * the device's choice). Read when dispatches are built, so it is per context, never global.
 */
export interface KernelChoice {
  plan: 'fused' | 'unfused';
  forcedStyle: 'workgroup' | 'serial' | null;
}

export interface GpuContext {
  readonly device: GPUDevice;
  /** The kernel plan of this context (mutable: set it before building dispatches). */
  readonly kernels: KernelChoice;
  readonly adapterInfo: { vendor: string; architecture: string; device: string; description: string };
  readonly features: GpuFeatures;
  /** Effective limits: the device's, lowered by `limitsCap`. Plan tensors and tiles with these. */
  readonly limits: GpuLimits;
  readonly pipelines: PipelineCache;
  /** Live GPU buffers and bytes by label prefix (always on: leak tests, GPU memory by owner). */
  readonly tally: GpuTally;
  /** Fires 'lost' (CustomEvent<DeviceLostError>) and 'error' (CustomEvent<GPUError>) events. */
  readonly events: EventTarget;
  /** Resolves when the device is lost, with the typed error (never rejects). */
  readonly lost: Promise<DeviceLostError>;
  destroy(): void;
}

function defaultGpu(): GPU {
  const nav = (globalThis as { navigator?: Navigator }).navigator;
  if (!nav || !('gpu' in nav) || !nav.gpu) {
    const secure = (globalThis as { isSecureContext?: boolean }).isSecureContext;
    throw new WebGpuUnavailableError(secure === false ? 'the page is not a secure context (use https or localhost)' : 'navigator.gpu is undefined in this browser');
  }
  return nav.gpu;
}

/** Acquire a device with the adapter's best limits and the optional features it has. */
export async function acquireGpu(options: AcquireOptions = {}): Promise<GpuContext> {
  const gpu = options.gpu ?? defaultGpu();
  const adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
  if (!adapter) throw new NoAdapterError();

  const off = options.disableFeatures ?? {};
  const wanted: [keyof GpuFeatures, GPUFeatureName][] = [
    ['shaderF16', 'shader-f16'],
    ['subgroups', 'subgroups' as GPUFeatureName],
    ['timestampQuery', 'timestamp-query'],
  ];
  const requiredFeatures: GPUFeatureName[] = [];
  const features: GpuFeatures = { shaderF16: false, subgroups: false, timestampQuery: false };
  for (const [key, name] of wanted) {
    if (adapter.features.has(name) && !off[key]) {
      requiredFeatures.push(name);
      features[key] = true;
    }
  }

  const requiredLimits: Record<string, number> = {};
  for (const name of LIMIT_NAMES) {
    const have = (adapter.limits as unknown as Record<string, number>)[name];
    // Alignment limits are "smaller is better": take the adapter's value as is.
    if (typeof have === 'number') requiredLimits[name] = have;
  }

  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ label: options.label ?? 'mace-web', requiredFeatures, requiredLimits });
  } catch {
    // Some implementations refuse their own maxima; the spec defaults always work.
    device = await adapter.requestDevice({ label: options.label ?? 'mace-web', requiredFeatures });
  }

  const limits = {} as GpuLimits;
  for (const name of LIMIT_NAMES) {
    const actual = (device.limits as unknown as Record<string, number>)[name] ?? SPEC_DEFAULT_LIMITS[name];
    const cap = options.limitsCap?.[name];
    limits[name] = cap === undefined ? actual : name === 'minStorageBufferOffsetAlignment' ? Math.max(actual, cap) : Math.min(actual, cap);
  }

  const events = new EventTarget();
  let destroyed = false;
  const lost = device.lost.then((info) => {
    const err = new DeviceLostError(String(info.reason ?? 'unknown'), info.message || (destroyed ? 'destroyed by the runtime' : 'no message'));
    events.dispatchEvent(new CustomEvent('lost', { detail: err }));
    return err;
  });
  device.addEventListener('uncapturederror', (ev) => {
    events.dispatchEvent(new CustomEvent('error', { detail: (ev as GPUUncapturedErrorEvent).error }));
  });

  const info = adapter.info ?? ({} as GPUAdapterInfo);
  return {
    device,
    adapterInfo: {
      vendor: info.vendor ?? '',
      architecture: info.architecture ?? '',
      device: info.device ?? '',
      description: info.description ?? '',
    },
    features,
    limits,
    pipelines: new PipelineCache(device),
    tally: GpuTally.of(device),
    kernels: { plan: 'fused', forcedStyle: null },
    events,
    lost,
    destroy() {
      destroyed = true;
      device.destroy();
    },
  };
}

/** Human-readable one-liner for logs and the demo page. */
export function describeGpu(ctx: GpuContext): string {
  const a = ctx.adapterInfo;
  const name = [a.vendor, a.architecture, a.device, a.description].filter(Boolean).join(' ') || 'unknown adapter';
  const f = Object.entries(ctx.features)
    .filter(([, v]) => v)
    .map(([k]) => k)
    .join(', ');
  return `${name} (features: ${f || 'none'}; max binding ${(ctx.limits.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB)`;
}
