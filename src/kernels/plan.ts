/**
 * Kernel plans: which variants the kernel families build on a device.
 *
 * - 'fused' (the default): the forward pass fuses what pays (RMSNorm into the next matmul's
 *   prologue, q/k/v and gate/up as one matmul each over weights concatenated at load, bias,
 *   SiLU-gate and residual adds as matmul epilogues: src/kernels/linear.ts), and on a CPU-class
 *   device (SwiftShader, llvmpipe: every invocation is a SIMD lane of a CPU thread, and every
 *   workgroup barrier a fiber switch) the families whose work per workgroup is tiny switch to
 *   "serial" variants without workgroup memory or barriers: one invocation owns an output (a
 *   row of RMSNorm and its backward, a LoRA shrink cell, an attention (query, head) or (key, KV
 *   head)) and loops over the reduced dimension in registers; matmuls of a few dozen rows use the
 *   register-blocked small-M GEMM instead of the workgroup-tiled one.
 * - 'unfused': the plan before issue 11, exactly: every kernel family's original variant and the
 *   forward pass's one-dispatch-per-operation list. Kept selectable so one run can compare the
 *   two (`mace bench decode --plan fused,unfused`, `mace train --synthetic ... --plan unfused`).
 *
 * The plan is per GpuContext (`ctx.kernels`, explicit state of the context, never global) and is
 * read when dispatches are BUILT: set it before building a ForwardPass or a trainer.
 */
import type { GpuContext } from '../gpu/device.ts';

export type KernelPlan = 'fused' | 'unfused';
export const KERNEL_PLANS: readonly KernelPlan[] = ['fused', 'unfused'];

/** Variant style of the families that have both: 'workgroup' (reductions across a workgroup) or 'serial' (one invocation per output). */
export type ReductionStyle = 'workgroup' | 'serial';

export function setKernelPlan(ctx: GpuContext, plan: KernelPlan): void {
  if (!KERNEL_PLANS.includes(plan)) throw new RangeError(`kernel plan '${String(plan)}' is not one of ${KERNEL_PLANS.join(', ')}`);
  ctx.kernels.plan = plan;
}

export function kernelPlan(ctx: GpuContext): KernelPlan {
  return ctx.kernels.plan;
}

/**
 * A device whose "GPU" is a CPU: WebGPU's SwiftShader (Chromium's fallback adapter, Dawn's
 * Vulkan ICD) or Mesa's llvmpipe / lavapipe. Known from the adapter info only; real GPUs never
 * report these names.
 */
export function isCpuClassDevice(ctx: Pick<GpuContext, 'adapterInfo'>): boolean {
  const a = ctx.adapterInfo;
  const text = `${a.vendor} ${a.architecture} ${a.device} ${a.description}`.toLowerCase();
  return /swiftshader|llvmpipe|lavapipe|software rasterizer/.test(text);
}

/** Force the reduction style (tests of both variants on one device); undefined restores the device's choice. */
export function setReductionStyle(ctx: GpuContext, style: ReductionStyle | undefined): void {
  ctx.kernels.forcedStyle = style ?? null;
}

/** The reduction style on this device and plan: serial on CPU-class devices under the fused plan. */
export function reductionStyle(ctx: GpuContext): ReductionStyle {
  const forced = ctx.kernels.forcedStyle;
  if (forced) return forced;
  return kernelPlan(ctx) === 'fused' && isCpuClassDevice(ctx) ? 'serial' : 'workgroup';
}

/**
 * Workgroup size for a barrier-free kernel of `invocations` independent invocations: as large as
 * `max`, but small enough that there are at least 4 workgroups (a power of two, at least 4 = one
 * SwiftShader SIMD batch). A CPU-class device runs each workgroup on one thread, so a decode-sized
 * dispatch in a single workgroup would use one core.
 */
export function spreadWorkgroupSize(invocations: number, max = 64): number {
  const want = 2 ** Math.floor(Math.log2(Math.max(1, invocations / 4)));
  return Math.min(max, Math.max(4, want));
}
