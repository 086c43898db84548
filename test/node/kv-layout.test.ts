import { describe, expect, it } from 'vitest';
import { ShapeError } from '../../src/gpu/errors.ts';
import {
  BLOCK_SIZE,
  NO_BLOCK,
  blocksForLength,
  cacheRowOffset,
  kvCacheElements,
  kvCacheShape,
  kvRowOffset,
  logicalBlockOf,
  packBlockTables,
  physicalBlock,
  slotOf,
} from '../../src/kv/layout.ts';
import { shuffled } from '../util/paged-kv.ts';

describe('paged KV layout', () => {
  it('uses 16-token blocks', () => {
    expect(BLOCK_SIZE).toBe(16);
  });

  it('counts the blocks a length needs', () => {
    const cases: [number, number][] = [[0, 0], [1, 1], [5, 1], [16, 1], [17, 2], [32, 2], [40, 3], [100, 7]];
    for (const [len, blocks] of cases) expect(blocksForLength(len), `len ${len}`).toBe(blocks);
    expect(() => blocksForLength(-1)).toThrow(RangeError);
    expect(() => blocksForLength(1.5)).toThrow(RangeError);
  });

  it('splits a position into logical block and slot', () => {
    for (const pos of [0, 1, 15, 16, 17, 39, 99]) {
      expect(logicalBlockOf(pos) * BLOCK_SIZE + slotOf(pos)).toBe(pos);
      expect(slotOf(pos)).toBeLessThan(BLOCK_SIZE);
    }
    expect([logicalBlockOf(15), slotOf(15), logicalBlockOf(16), slotOf(16)]).toEqual([0, 15, 1, 0]);
  });

  it('row offsets are the row-major strides of [nBlocks, 16, nKvHeads, headDim]', () => {
    const [nBlocks, nKv, hd] = [3, 2, 5];
    expect(kvCacheShape(nBlocks, nKv, hd)).toEqual([3, 16, 2, 5]);
    expect(kvCacheElements(nBlocks, nKv, hd)).toBe(3 * 16 * 2 * 5);
    let expected = 0;
    for (let b = 0; b < nBlocks; b++)
      for (let s = 0; s < BLOCK_SIZE; s++)
        for (let h = 0; h < nKv; h++) {
          expect(kvRowOffset(b, s, h, nKv, hd)).toBe(expected);
          expected += hd;
        }
    expect(expected).toBe(kvCacheElements(nBlocks, nKv, hd));
  });

  it('packs block tables row per sequence, padding with NO_BLOCK', () => {
    const p = packBlockTables([[4, 2], [0], [1, 3, 5]]);
    expect(p.nSeqs).toBe(3);
    expect(p.maxBlocksPerSeq).toBe(3);
    expect(Array.from(p.data)).toEqual([4, 2, NO_BLOCK, 0, NO_BLOCK, NO_BLOCK, 1, 3, 5]);
    const wide = packBlockTables([[7]], 4);
    expect(Array.from(wide.data)).toEqual([7, NO_BLOCK, NO_BLOCK, NO_BLOCK]);
    // an empty table still gets one column so the GPU buffer is never zero-sized
    expect(packBlockTables([[]]).maxBlocksPerSeq).toBe(1);
  });

  it('rejects tables that do not fit or hold bad ids', () => {
    expect(() => packBlockTables([[1, 2, 3]], 2)).toThrow(ShapeError);
    expect(() => packBlockTables([[1, 2, 3]], 2)).toThrow(/tables\[0\] has 3 blocks/);
    expect(() => packBlockTables([[1, -1]])).toThrow(/tables\[0\]\[1\]/);
    expect(() => packBlockTables([[NO_BLOCK]])).toThrow(ShapeError);
    expect(() => packBlockTables([])).toThrow(ShapeError);
    expect(() => packBlockTables([[1]], 0)).toThrow(/maxBlocksPerSeq/);
  });

  it('finds physical blocks through the table and refuses missing ones', () => {
    const p = packBlockTables([[9, 4], [2]]);
    expect(physicalBlock(p.data, p.maxBlocksPerSeq, 0, 0)).toBe(9);
    expect(physicalBlock(p.data, p.maxBlocksPerSeq, 0, 31)).toBe(4);
    expect(physicalBlock(p.data, p.maxBlocksPerSeq, 1, 15)).toBe(2);
    expect(() => physicalBlock(p.data, p.maxBlocksPerSeq, 1, 16)).toThrow(/sequence 1 has no block for position 16/);
    expect(() => physicalBlock(p.data, p.maxBlocksPerSeq, 0, 32)).toThrow(RangeError);
  });

  it('gives every (sequence, position, head) of shuffled tables its own in-bounds row', () => {
    const lens = [1, 17, 40, 16];
    const nKvHeads = 3, headDim = 4;
    const need = lens.map(blocksForLength);
    const nBlocks = need.reduce((a, b) => a + b, 0);
    const ids = shuffled(nBlocks, 42);
    let next = 0;
    const tables = need.map((n) => ids.slice(next, (next += n)));
    const p = packBlockTables(tables);
    const kv = { blockTable: p.data, maxBlocksPerSeq: p.maxBlocksPerSeq, nKvHeads, headDim };
    const seen = new Set<number>();
    lens.forEach((len, s) => {
      for (let pos = 0; pos < len; pos++)
        for (let h = 0; h < nKvHeads; h++) {
          const off = cacheRowOffset(kv, s, pos, h);
          expect(off % headDim).toBe(0);
          expect(off).toBeLessThan(kvCacheElements(nBlocks, nKvHeads, headDim));
          // block id and slot can be read back from the offset
          expect(Math.floor(off / (BLOCK_SIZE * nKvHeads * headDim))).toBe(tables[s][Math.floor(pos / 16)]);
          expect(Math.floor(off / (nKvHeads * headDim)) % BLOCK_SIZE).toBe(pos % 16);
          seen.add(off);
        }
    });
    expect(seen.size).toBe(lens.reduce((a, b) => a + b, 0) * nKvHeads);
  });
});
