import { describe, expect, it } from 'vitest';
import { BlockPool, BlockPoolError, OutOfBlocksError } from '../../src/kv/pool.ts';

describe('BlockPool', () => {
  it('starts with every block free in id order', () => {
    const pool = new BlockPool(4);
    expect(pool.numFree).toBe(4);
    expect(pool.freeQueue()).toEqual([0, 1, 2, 3]);
  });

  it('allocates from the head with ref count 1', () => {
    const pool = new BlockPool(5);
    expect(pool.allocate(2)).toEqual([0, 1]);
    expect(pool.refCount(0)).toBe(1);
    expect(pool.freeQueue()).toEqual([2, 3, 4]);
    expect(pool.numUsed).toBe(2);
  });

  it('appends freed blocks to the tail in the order given (eviction order)', () => {
    const pool = new BlockPool(5);
    const seq = pool.allocate(3); // [0, 1, 2]
    pool.free([...seq].reverse());
    expect(pool.freeQueue()).toEqual([3, 4, 2, 1, 0]);
    expect(pool.allocate(3)).toEqual([3, 4, 2]);
  });

  it('is all-or-nothing when blocks run out', () => {
    const pool = new BlockPool(3);
    pool.allocate(2);
    expect(() => pool.allocate(2)).toThrow(OutOfBlocksError);
    expect(() => pool.allocate(2)).toThrow('KV cache: 2 blocks requested, 1 free');
    expect(pool.numFree).toBe(1);
    expect(pool.freeQueue()).toEqual([2]);
  });

  it('keeps shared blocks until the last reference is freed', () => {
    const pool = new BlockPool(4);
    const a = pool.allocate(2); // [0, 1]
    pool.share(a); // a fork shares the prefix
    expect(pool.refCount(0)).toBe(2);
    pool.free(a);
    expect(pool.numFree).toBe(2);
    expect(pool.refCount(1)).toBe(1);
    pool.free([1, 0]);
    expect(pool.freeQueue()).toEqual([2, 3, 1, 0]);
  });

  it('revives a free block from the middle of the queue (prefix hit)', () => {
    const pool = new BlockPool(4);
    pool.take(2);
    expect(pool.freeQueue()).toEqual([0, 1, 3]);
    expect(pool.refCount(2)).toBe(1);
    pool.take(2);
    expect(pool.refCount(2)).toBe(2);
    expect(pool.numFree).toBe(3);
  });

  it('rejects double frees, foreign ids and sharing free blocks without changing state', () => {
    const pool = new BlockPool(3);
    const [b] = pool.allocate(1);
    expect(() => pool.free([b, b])).toThrow(BlockPoolError);
    expect(pool.refCount(b)).toBe(1);
    expect(() => pool.free([7])).toThrow('block id 7 is outside [0, 3)');
    expect(() => pool.share([1])).toThrow('share: block 1 is free');
    expect(() => new BlockPool(0)).toThrow(BlockPoolError);
    expect(() => pool.allocate(-1)).toThrow(BlockPoolError);
  });

  it('tells the reuse listener of every block allocate hands out, in order, after its state is final', () => {
    const pool = new BlockPool(4);
    const heard: [number, number, number][] = [];
    pool.setReuseListener((b) => heard.push([b, pool.refCount(b), pool.numFree]));
    pool.take(2); // a prefix hit revives; nothing is reused
    expect(heard).toEqual([]);
    expect(pool.allocate(2)).toEqual([0, 1]);
    pool.free([1]);
    expect(pool.allocate(0)).toEqual([]);
    expect(() => pool.allocate(3)).toThrow(OutOfBlocksError); // all or nothing: nobody told
    expect(pool.allocate(2)).toEqual([3, 1]);
    expect(heard).toEqual([
      [0, 1, 1],
      [1, 1, 1],
      [3, 1, 0],
      [1, 1, 0],
    ]);
  });

  it('has at most one reuse listener', () => {
    const pool = new BlockPool(2);
    const heard: number[] = [];
    const f = (b: number): void => void heard.push(b);
    pool.setReuseListener(f);
    pool.setReuseListener(f); // the same one again is harmless
    expect(() => pool.setReuseListener(() => {})).toThrow(BlockPoolError);
    pool.setReuseListener(null);
    pool.allocate(1);
    expect(heard).toEqual([]);
    pool.setReuseListener(f);
    pool.allocate(1);
    expect(heard).toEqual([1]);
  });
});
