/**
 * The matmul chooser: y[M, N] = x[M, K] · Wᵀ through GEMV for a few rows (decode, small batches:
 * bound by reading W once, no tiling pays off) and through the tiled GEMM otherwise (prefill).
 * Both return one dispatch per weight shard and check their arguments before dispatching.
 */
import type { GpuContext } from '../gpu/device.ts';
import type { KernelDispatch } from '../gpu/dispatch.ts';
import { gemm } from './gemm.ts';
import { GEMV_MAX_M, gemv } from './gemv.ts';
import type { MatmulArgs } from './matmul-args.ts';

export type MatmulKernel = 'gemv' | 'gemm';

/** Which kernel serves M rows of x. */
export function chooseMatmul(M: number): MatmulKernel {
  return M <= GEMV_MAX_M ? 'gemv' : 'gemm';
}

export function matmul(ctx: GpuContext, a: MatmulArgs): KernelDispatch[] {
  return chooseMatmul(a.M) === 'gemv' ? gemv(ctx, a) : gemm(ctx, a);
}
