/**
 * Paged KV-cache layout: the one place that says where a token's K/V row lives. Pure TypeScript
 * (no WebGPU), so the kernels' index maths and the CPU references share one tested definition.
 *
 * Per layer there is one K and one V buffer, each `[nBlocks, BLOCK_SIZE, nKvHeads, headDim] f32`.
 * A sequence owns a block table: the list of physical block ids holding its positions in order,
 * so position `pos` lives in physical block `table[floor(pos / 16)]` at slot `pos % 16`.
 * All sequences' tables are packed into one `[nSeqs, maxBlocksPerSeq] u32` array, row per
 * sequence, unused entries set to NO_BLOCK (kernels never read past a sequence's length).
 */
import { ShapeError } from '../gpu/errors.ts';

/** Tokens per cache block. The WGSL kernels hard-code the same value (BLOCK_SIZE placeholder). */
export const BLOCK_SIZE = 16;

/** Filler of unused block-table entries: an id no pool ever hands out. */
export const NO_BLOCK = 0xffffffff;

/** Blocks a sequence of `length` tokens occupies. */
export function blocksForLength(length: number): number {
  if (!Number.isInteger(length) || length < 0) throw new RangeError(`blocksForLength: length ${length} is not a non-negative integer`);
  return Math.ceil(length / BLOCK_SIZE);
}

/** Index into the sequence's block table (logical block) holding position `pos`. */
export function logicalBlockOf(pos: number): number {
  return Math.floor(pos / BLOCK_SIZE);
}

/** Slot of position `pos` inside its block. */
export function slotOf(pos: number): number {
  return pos % BLOCK_SIZE;
}

/** Shape of one layer's K (or V) cache buffer. */
export function kvCacheShape(nBlocks: number, nKvHeads: number, headDim: number): [number, number, number, number] {
  return [nBlocks, BLOCK_SIZE, nKvHeads, headDim];
}

/** f32 elements of one layer's K (or V) cache buffer. */
export function kvCacheElements(nBlocks: number, nKvHeads: number, headDim: number): number {
  return nBlocks * BLOCK_SIZE * nKvHeads * headDim;
}

/** Element offset of the row (physBlock, slot, kvHead, 0) in a cache buffer. */
export function kvRowOffset(physBlock: number, slot: number, kvHead: number, nKvHeads: number, headDim: number): number {
  return ((physBlock * BLOCK_SIZE + slot) * nKvHeads + kvHead) * headDim;
}

/** Host copy of one layer's paged cache plus block tables: what the CPU references read. */
export interface PagedKvHost {
  kCache: Float32Array; // [nBlocks, 16, nKvHeads, headDim]
  vCache: Float32Array; // [nBlocks, 16, nKvHeads, headDim]
  blockTable: Uint32Array; // [nSeqs, maxBlocksPerSeq], NO_BLOCK where unused
  maxBlocksPerSeq: number;
  nKvHeads: number;
  headDim: number;
}

/**
 * Physical block holding position `pos` of sequence `seq`. Throws when the table has no block
 * there (the references are strict where the GPU can only rely on robust buffer access).
 */
export function physicalBlock(blockTable: ArrayLike<number>, maxBlocksPerSeq: number, seq: number, pos: number): number {
  const logical = logicalBlockOf(pos);
  const block = logical < maxBlocksPerSeq ? blockTable[seq * maxBlocksPerSeq + logical] : undefined;
  if (block === undefined || block === NO_BLOCK) {
    throw new RangeError(`sequence ${seq} has no block for position ${pos} (logical block ${logical}, table width ${maxBlocksPerSeq})`);
  }
  return block;
}

/** Element offset of the K/V row of (seq, pos, kvHead) in a cache buffer, through the block table. */
export function cacheRowOffset(kv: Pick<PagedKvHost, 'blockTable' | 'maxBlocksPerSeq' | 'nKvHeads' | 'headDim'>, seq: number, pos: number, kvHead: number): number {
  const block = physicalBlock(kv.blockTable, kv.maxBlocksPerSeq, seq, pos);
  return kvRowOffset(block, slotOf(pos), kvHead, kv.nKvHeads, kv.headDim);
}

export interface PackedBlockTables {
  data: Uint32Array; // [nSeqs, maxBlocksPerSeq] u32
  nSeqs: number;
  maxBlocksPerSeq: number;
}

/**
 * Pack per-sequence block lists into the `[nSeqs, maxBlocksPerSeq]` array the kernels read.
 * `maxBlocksPerSeq` defaults to the longest list (at least 1, so the buffer is never empty).
 */
export function packBlockTables(tables: readonly (readonly number[])[], maxBlocksPerSeq?: number): PackedBlockTables {
  const longest = tables.reduce((m, t) => Math.max(m, t.length), 0);
  const width = maxBlocksPerSeq ?? Math.max(1, longest);
  if (!Number.isInteger(width) || width <= 0) throw new ShapeError('packBlockTables', 'maxBlocksPerSeq', `= ${width}; it must be a positive integer`);
  if (tables.length === 0) throw new ShapeError('packBlockTables', 'tables', 'is empty; at least one sequence is needed');
  const data = new Uint32Array(tables.length * width).fill(NO_BLOCK);
  tables.forEach((t, s) => {
    if (t.length > width) throw new ShapeError('packBlockTables', `tables[${s}]`, `has ${t.length} blocks, more than maxBlocksPerSeq = ${width}`);
    t.forEach((b, i) => {
      if (!Number.isInteger(b) || b < 0 || b >= NO_BLOCK) throw new ShapeError('packBlockTables', `tables[${s}][${i}]`, `= ${b} is not a valid block id`);
      data[s * width + i] = b;
    });
  });
  return { data, nSeqs: tables.length, maxBlocksPerSeq: width };
}
