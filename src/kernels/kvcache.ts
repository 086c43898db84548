/**
 * KV-cache family: the paged cache as the kernels see it, and the write of new tokens' K/V rows.
 * Layout maths (block size, slot offsets, table packing) lives in src/kv/layout.ts.
 */
import kvWriteWgsl from '../../shaders/kv_write.wgsl?raw';
import type { GpuContext } from '../gpu/device.ts';
import { grid1d, makeDispatch, type KernelDispatch } from '../gpu/dispatch.ts';
import { ShapeError } from '../gpu/errors.ts';
import { requireBufferFits, requireDims } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';
import { BLOCK_SIZE, cacheRowOffset, kvCacheShape, type PagedKvHost } from '../kv/layout.ts';

/** One layer's paged cache on the GPU, with the block tables of the sequences in the batch. */
export interface PagedKvGpu {
  kCache: GPUBuffer; // [nBlocks, 16, nKvHeads, headDim] f32
  vCache: GPUBuffer; // [nBlocks, 16, nKvHeads, headDim] f32
  blockTable: GPUBuffer; // [nSeqs, maxBlocksPerSeq] u32
  nBlocks: number;
  nKvHeads: number;
  headDim: number;
  nSeqs: number;
  maxBlocksPerSeq: number;
}

/** Guards shared by every kernel that touches the paged cache. */
export function checkPagedKv(kernel: string, kv: PagedKvGpu): void {
  const { nBlocks, nKvHeads, headDim, nSeqs, maxBlocksPerSeq } = kv;
  requireDims(kernel, 'kv', { nBlocks, nKvHeads, headDim, nSeqs, maxBlocksPerSeq });
  requireBufferFits(kernel, 'kCache', kv.kCache, kvCacheShape(nBlocks, nKvHeads, headDim));
  requireBufferFits(kernel, 'vCache', kv.vCache, kvCacheShape(nBlocks, nKvHeads, headDim));
  requireBufferFits(kernel, 'blockTable', kv.blockTable, [nSeqs, maxBlocksPerSeq]);
  if (kv.kCache === kv.vCache) throw new ShapeError(kernel, 'vCache', 'must not alias kCache');
}

export const KvWriteParams = defineUniforms('Params', { T: 'u32', nKvHeads: 'u32', headDim: 'u32', maxBlocksPerSeq: 'u32' });
const WRITE_WG = 256;

export interface KvWriteArgs extends PagedKvGpu {
  k: GPUBuffer; // [T, nKvHeads, headDim] f32, the new tokens' keys (RoPE already applied)
  v: GPUBuffer; // [T, nKvHeads, headDim] f32
  tokenSeq: GPUBuffer; // [T] u32, block-table row of each token
  tokenPos: GPUBuffer; // [T] u32, position of each token in its sequence
  T: number;
}

/**
 * Write T tokens' K/V rows into the cache at their (sequence, position). The engine must have
 * allocated the blocks (table entries) for every written position; two tokens must not share a
 * (sequence, position), or which one lands is unspecified.
 */
export function kvWrite(ctx: GpuContext, a: KvWriteArgs): KernelDispatch {
  const kernel = 'kvWrite';
  checkPagedKv(kernel, a);
  requireDims(kernel, 'T', { T: a.T });
  requireBufferFits(kernel, 'k', a.k, [a.T, a.nKvHeads, a.headDim]);
  requireBufferFits(kernel, 'v', a.v, [a.T, a.nKvHeads, a.headDim]);
  requireBufferFits(kernel, 'tokenSeq', a.tokenSeq, [a.T]);
  requireBufferFits(kernel, 'tokenPos', a.tokenPos, [a.T]);
  const variant = `kv_write_f32_wg${WRITE_WG}`;
  return makeDispatch(ctx, {
    variant,
    code: () => specialize(kvWriteWgsl, { PARAMS: KvWriteParams.wgsl, WG: WRITE_WG, BLOCK_SIZE }, variant),
    uniforms: KvWriteParams.pack({ T: a.T, nKvHeads: a.nKvHeads, headDim: a.headDim, maxBlocksPerSeq: a.maxBlocksPerSeq }),
    storage: [a.k, a.v, a.tokenSeq, a.tokenPos, a.blockTable, a.kCache, a.vCache],
    workgroups: grid1d(Math.ceil((a.T * a.nKvHeads * a.headDim) / WRITE_WG), ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}

/** CPU reference of kvWrite: copies each token's rows into `cache` in place. */
export function kvWriteRef(cache: PagedKvHost, k: Float32Array, v: Float32Array, tokenSeq: ArrayLike<number>, tokenPos: ArrayLike<number>, T: number): void {
  const row = cache.headDim;
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < cache.nKvHeads; h++) {
      const dst = cacheRowOffset(cache, tokenSeq[t], tokenPos[t], h);
      const src = (t * cache.nKvHeads + h) * row;
      for (let d = 0; d < row; d++) {
        cache.kCache[dst + d] = k[src + d];
        cache.vCache[dst + d] = v[src + d];
      }
    }
  }
}
