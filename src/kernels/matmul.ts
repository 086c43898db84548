/**
 * The matmul chooser: y[M, N] = x[M, K] · Wᵀ through GEMV for a few rows (decode, small batches:
 * bound by reading W once, no tiling pays off) and through a GEMM otherwise (prefill, training):
 * the workgroup-tiled one (gemm.ts), or on a CPU-class device under the fused plan
 * (src/kernels/plan.ts) the register-blocked small-M GEMM without workgroup memory or barriers
 * (linear.ts with nothing fused), for M up to SMALL_GEMM_MAX_M and K % 4 == 0.
 * Every variant returns one dispatch per weight shard and checks its arguments before dispatching.
 */
import type { GpuContext } from '../gpu/device.ts';
import type { KernelDispatch } from '../gpu/dispatch.ts';
import { gemm } from './gemm.ts';
import { GEMV_MAX_M, gemv } from './gemv.ts';
import { linear } from './linear.ts';
import type { MatmulArgs } from './matmul-args.ts';
import { reductionStyle } from './plan.ts';

export type MatmulKernel = 'gemv' | 'gemm' | 'gemm-small';

/**
 * Largest M the small-M GEMM takes on a CPU-class device. On SwiftShader the tiled GEMM's
 * barriers cost more than the small GEMM's extra (cached) loads well past training's 96-128 rows.
 */
export const SMALL_GEMM_MAX_M = 1024;

/** Which kernel serves M rows of x (the device and the weight's K matter only past GEMV_MAX_M). */
export function chooseMatmul(M: number, ctx?: GpuContext, K?: number): MatmulKernel {
  if (M <= GEMV_MAX_M) return 'gemv';
  if (ctx && K !== undefined && K % 4 === 0 && M <= SMALL_GEMM_MAX_M && reductionStyle(ctx) === 'serial') return 'gemm-small';
  return 'gemm';
}

export function matmul(ctx: GpuContext, a: MatmulArgs): KernelDispatch[] {
  const kernel = chooseMatmul(a.M, ctx, a.w.K);
  if (kernel === 'gemv') return gemv(ctx, a);
  if (kernel === 'gemm-small') return linear(ctx, a);
  return gemm(ctx, a);
}
