/**
 * The paged KV cache on the GPU: one K and one V buffer per layer, `[nBlocks, 16, nKvHeads,
 * headDim] f32` each, and the BlockPool that hands out their blocks. Sized from a memory budget,
 * capped so that one layer's buffer fits one storage binding.
 */
import { building } from '../gpu/owner.ts';
import { LimitsTooSmallError } from '../gpu/errors.ts';
import { createStorage } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/device.ts';
import { BLOCK_SIZE, kvCacheElements } from './layout.ts';
import { BlockPool } from './pool.ts';

export interface KvCacheSpec {
  nLayers: number;
  nKvHeads: number;
  headDim: number;
}

export interface KvCacheGpu extends KvCacheSpec {
  nBlocks: number;
  k: GPUBuffer[]; // per layer [nBlocks, 16, nKvHeads, headDim] f32
  v: GPUBuffer[]; // per layer [nBlocks, 16, nKvHeads, headDim] f32
  pool: BlockPool;
  /** Bytes of GPU memory held. */
  bytes: number;
  destroy(): void;
}

/** Bytes one block takes across all layers, K and V. */
export function bytesPerBlock(s: KvCacheSpec): number {
  return s.nLayers * 2 * BLOCK_SIZE * s.nKvHeads * s.headDim * 4;
}

/** How many blocks fit `budgetBytes`, capped by the binding limit of one layer's buffer. */
export function blocksForBudget(ctx: Pick<GpuContext, 'limits'>, s: KvCacheSpec, budgetBytes: number): number {
  const perLayerBlock = BLOCK_SIZE * s.nKvHeads * s.headDim * 4;
  const byLimit = Math.floor(Math.min(ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize) / perLayerBlock);
  const n = Math.min(Math.floor(budgetBytes / bytesPerBlock(s)), byLimit);
  if (n < 1) throw new LimitsTooSmallError('kv memory budget', bytesPerBlock(s), budgetBytes, 'the KV cache (one 16-token block)');
  return n;
}

export function createKvCache(ctx: GpuContext, s: KvCacheSpec, nBlocks: number): KvCacheGpu {
  const elems = kvCacheElements(nBlocks, s.nKvHeads, s.headDim);
  const k: GPUBuffer[] = [];
  const v: GPUBuffer[] = [];
  building((b) => {
    for (let l = 0; l < s.nLayers; l++) {
      k.push(b.take(createStorage(ctx, elems * 4, `kv.k[${l}]`)));
      v.push(b.take(createStorage(ctx, elems * 4, `kv.v[${l}]`)));
    }
  });
  return {
    ...s,
    nBlocks,
    k,
    v,
    pool: new BlockPool(nBlocks),
    bytes: nBlocks * bytesPerBlock(s),
    destroy() {
      for (const b of [...k, ...v]) b.destroy();
    },
  };
}
