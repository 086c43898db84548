import { describe, expect, it } from 'vitest';
import { BatchError, buildBatchStep, commitBatch, releaseSequence, type SequenceState } from '../../src/engine/batch.ts';
import { NO_BLOCK } from '../../src/kv/layout.ts';
import { BlockPool, OutOfBlocksError } from '../../src/kv/pool.ts';

const seq = (tokens: number[], computed = 0, blocks: number[] = []): SequenceState => ({ tokens, computed, blocks });

describe('buildBatchStep', () => {
  it('flattens a prefill chunk and a decode step into one mixed batch', () => {
    const pool = new BlockPool(8);
    const a = seq(Array.from({ length: 20 }, (_, i) => 100 + i)); // prompt of 20, chunk of 18
    const b = seq([7, 8, 9], 2, pool.allocate(1)); // decode: token 9 at position 2
    const step = buildBatchStep([{ seq: a, count: 18 }, { seq: b, count: 1 }], pool, 4);
    expect(step.mode).toBe('mixed');
    expect([...step.tokens]).toEqual([...a.tokens.slice(0, 18), 9]);
    expect([...step.tokenSeq]).toEqual([...Array(18).fill(0), 1]);
    expect([...step.tokenPos]).toEqual([...Array.from({ length: 18 }, (_, i) => i), 2]);
    expect(a.blocks).toEqual([1, 2]); // 18 tokens -> 2 blocks, taken after b's block 0
    expect([...step.blockTables]).toEqual([1, 2, NO_BLOCK, NO_BLOCK, 0, NO_BLOCK, NO_BLOCK, NO_BLOCK]);
    expect([...step.seqLens]).toEqual([18, 3]);
    expect([...step.lastRows]).toEqual([17, 18]);
    commitBatch([{ seq: a, count: 18 }, { seq: b, count: 1 }]);
    expect(a.computed).toBe(18);
    expect(b.computed).toBe(3);
  });

  it('is a decode batch when every sequence runs one token', () => {
    const pool = new BlockPool(4);
    const a = seq([1, 2, 3, 4], 3, pool.allocate(1));
    const b = seq(Array(17).fill(5), 16, pool.allocate(1)); // position 16 starts a second block
    const step = buildBatchStep([{ seq: a, count: 1 }, { seq: b, count: 1 }], pool, 2);
    expect(step.mode).toBe('decode');
    expect([...step.tokenSeq]).toEqual([0, 1]);
    expect([...step.seqLens]).toEqual([4, 17]);
    expect(b.blocks).toEqual([1, 2]);
  });

  it('leaves every sequence untouched when the pool cannot hold the batch', () => {
    const pool = new BlockPool(2);
    const a = seq(Array(16).fill(1));
    const b = seq(Array(32).fill(1));
    expect(() => buildBatchStep([{ seq: a, count: 16 }, { seq: b, count: 32 }], pool, 4)).toThrow(OutOfBlocksError);
    expect(a.blocks).toEqual([]);
    expect(b.blocks).toEqual([]);
    expect(pool.numFree).toBe(2);
  });

  it('refuses malformed entries with a reason', () => {
    const pool = new BlockPool(4);
    const a = seq([1, 2, 3]);
    expect(() => buildBatchStep([], pool, 4)).toThrow(BatchError);
    expect(() => buildBatchStep([{ seq: a, count: 4 }], pool, 4)).toThrow('runs 4 tokens from 0, the sequence has 3');
    expect(() => buildBatchStep([{ seq: a, count: 1 }, { seq: a, count: 1 }], pool, 4)).toThrow('repeats a sequence');
    expect(() => buildBatchStep([{ seq: seq(Array(40).fill(0)), count: 40 }], pool, 2)).toThrow('past the context limit 32');
  });

  it('releases blocks tail first', () => {
    const pool = new BlockPool(4);
    const a = seq(Array(40).fill(0));
    buildBatchStep([{ seq: a, count: 40 }], pool, 4);
    expect(a.blocks).toEqual([0, 1, 2]);
    releaseSequence(a, pool);
    expect(pool.freeQueue()).toEqual([3, 2, 1, 0]);
  });
});
