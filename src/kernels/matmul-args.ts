/**
 * The contract shared by GEMV (decode) and GEMM (prefill): y[M, N] = x[M, K] · Wᵀ, activations f32,
 * W a GpuWeight in any storage format (src/kernels/weights.ts). Both return one KernelDispatch per
 * weight shard; each shard writes its own column range [rowStart, rowStart + rows) of y.
 */
import { bufferOf, type Binding } from '../gpu/binding.ts';
import type { GpuContext } from '../gpu/device.ts';
import { ShapeError } from '../gpu/errors.ts';
import { requireBufferFits, requireDims } from '../gpu/shape.ts';
import { checkWeightShards, type GpuWeight } from './weights.ts';

export interface MatmulArgs {
  x: Binding; // [M, K] f32 activations (a buffer or a range of rows)
  w: GpuWeight; // [N, K]
  y: Binding; // [M, N] f32 output (overwritten)
  M: number; // rows of x: batch of decode tokens, or prefill tokens
}

/** Guards common to every matmul variant; `kernel` names the caller in the error. */
export function checkMatmul(kernel: string, _ctx: GpuContext, a: MatmulArgs): void {
  const { w, M } = a;
  requireDims(kernel, 'shape', { M, N: w.N, K: w.K });
  requireBufferFits(kernel, 'x', a.x, [M, w.K]);
  requireBufferFits(kernel, 'y', a.y, [M, w.N]);
  if (bufferOf(a.x) === bufferOf(a.y)) throw new ShapeError(kernel, 'y', 'must not alias x');
  checkWeightShards(kernel, `w '${w.label}'`, w);
}
