/**
 * The contract shared by GEMV (decode) and GEMM (prefill): y[M, N] = x[M, K] · Wᵀ, activations f32,
 * W a GpuWeight in any storage format (src/kernels/weights.ts). Both return one KernelDispatch per
 * weight shard; each shard writes its own column range [rowStart, rowStart + rows) of y.
 */
import type { GpuContext } from '../gpu/device.ts';
import { ShapeError } from '../gpu/errors.ts';
import { fmtShape, requireBufferFits, requireDims } from '../gpu/shape.ts';
import { rowScaleWords, rowWords, type GpuWeight } from './weights.ts';

export interface MatmulArgs {
  x: GPUBuffer; // [M, K] f32 activations
  w: GpuWeight; // [N, K]
  y: GPUBuffer; // [M, N] f32 output (overwritten)
  M: number; // rows of x: batch of decode tokens, or prefill tokens
}

/** Guards common to every matmul variant; `kernel` names the caller in the error. */
export function checkMatmul(kernel: string, _ctx: GpuContext, a: MatmulArgs): void {
  const { w, M } = a;
  requireDims(kernel, 'shape', { M, N: w.N, K: w.K });
  requireBufferFits(kernel, 'x', a.x, [M, w.K]);
  requireBufferFits(kernel, 'y', a.y, [M, w.N]);
  if (a.x === a.y) throw new ShapeError(kernel, 'y', 'must not alias x');
  let next = 0;
  for (const s of w.shards) {
    if (s.rowStart !== next) throw new ShapeError(kernel, `w '${w.label}'`, `shards are not contiguous at row ${s.rowStart} (expected ${next})`);
    next += s.rows;
    requireBufferFits(kernel, `w '${w.label}' shard@${s.rowStart}`, s.data, [s.rows, rowWords(w.format, w.K)]);
    if (w.format === 'q4') {
      if (!s.scales) throw new ShapeError(kernel, `w '${w.label}' shard@${s.rowStart}`, 'is q4 but has no scales buffer');
      requireBufferFits(kernel, `w '${w.label}' scales@${s.rowStart}`, s.scales, [s.rows, rowScaleWords('q4', w.K)]);
    }
  }
  if (next !== w.N) throw new ShapeError(kernel, `w '${w.label}'`, `shards cover ${next} rows of ${fmtShape([w.N, w.K])}`);
}
