/**
 * Test fixtures for the paged KV cache (Node and browser): sequences of given lengths with
 * shuffled, non-contiguous block tables, random K/V written through kvWriteRef, and every slot
 * nobody owns filled with NaN so a kernel that reads a wrong row cannot pass by luck.
 */
import { kvWriteRef } from '../../src/kernels/kvcache.ts';
import { blocksForLength, kvCacheElements, packBlockTables, type PagedKvHost } from '../../src/kv/layout.ts';
import { mulberry32, randomF32 } from './random.ts';

export interface PagedFixture {
  host: PagedKvHost;
  tables: number[][];
  nBlocks: number;
  nSeqs: number;
  /** Per sequence, the K and V rows written: [len, nKvHeads, headDim]. */
  k: Float32Array[];
  v: Float32Array[];
}

/** Fisher-Yates with the seeded PRNG. */
export function shuffled(n: number, seed: number): number[] {
  const r = mulberry32(seed);
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/**
 * `written[s]` tokens of sequence s are in the cache; `capacity[s]` (default: written) positions
 * have blocks. A few spare blocks owned by nobody sit between them. Table width is `width` or the
 * longest table.
 */
export function makePagedFixture(seed: number, written: number[], nKvHeads: number, headDim: number, capacity = written, width?: number): PagedFixture {
  const need = capacity.map((c) => blocksForLength(Math.max(1, c)));
  const spare = 3;
  const nBlocks = need.reduce((a, b) => a + b, 0) + spare;
  const ids = shuffled(nBlocks, seed);
  let next = 0;
  const tables = need.map((n) => ids.slice(next, (next += n)));
  const packed = packBlockTables(tables, width);
  const host: PagedKvHost = {
    kCache: new Float32Array(kvCacheElements(nBlocks, nKvHeads, headDim)).fill(NaN),
    vCache: new Float32Array(kvCacheElements(nBlocks, nKvHeads, headDim)).fill(NaN),
    blockTable: packed.data,
    maxBlocksPerSeq: packed.maxBlocksPerSeq,
    nKvHeads,
    headDim,
  };
  const k: Float32Array[] = [];
  const v: Float32Array[] = [];
  written.forEach((len, s) => {
    const rowLen = nKvHeads * headDim;
    k.push(randomF32(len * rowLen, seed * 7919 + s * 2 + 1));
    v.push(randomF32(len * rowLen, seed * 7919 + s * 2 + 2));
    const pos = Array.from({ length: len }, (_, i) => i);
    kvWriteRef(host, k[s], v[s], new Array(len).fill(s), pos, len);
  });
  return { host, tables, nBlocks, nSeqs: written.length, k, v };
}
