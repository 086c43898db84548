import { describe, expect, it } from 'vitest';
import { BLOCK_SIZE } from '../../src/kv/layout.ts';
import { BlockPool, BlockPoolError, OutOfBlocksError } from '../../src/kv/pool.ts';
import { PrefixCache, PrefixCacheError } from '../../src/kv/prefix-cache.ts';

/** One full block of distinct, readable ids: v*100 .. v*100+15. */
function blk(v: number): number[] {
  return Array.from({ length: BLOCK_SIZE }, (_, j) => v * 100 + j);
}

/** Full blocks blk(v) for each v, then `tail` loose tokens. */
function prompt(blocks: number[], ...tail: number[]): number[] {
  return [...blocks.flatMap(blk), ...tail];
}

function setup(numBlocks: number): { pool: BlockPool; cache: PrefixCache } {
  const pool = new BlockPool(numBlocks);
  return { pool, cache: new PrefixCache(pool) };
}

function reason(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(PrefixCacheError);
    expect((e as PrefixCacheError).code).toBe('prefix-cache');
    return (e as PrefixCacheError).reason;
  }
  throw new Error('expected a PrefixCacheError');
}

describe('PrefixCache', () => {
  it('matches full and partial prefixes after an insert, and counts blocks asked and hit', () => {
    const { pool, cache } = setup(8);
    const tokens = prompt([1, 2, 3], 7, 8, 9, 10, 11); // 53 tokens: 3 full blocks + 5
    expect(pool.allocate(4)).toEqual([0, 1, 2, 3]);
    expect(cache.insert(tokens, '', [0, 1, 2, 3])).toEqual({ added: 3, present: 0, ignored: [] });
    expect(cache.stats().cachedBlocks).toBe(3);

    expect(cache.match(tokens, '')).toEqual([0, 1, 2]); // asks 3
    expect(cache.match(tokens.slice(0, 40), '')).toEqual([0, 1]); // asks floor(39 / 16) = 2
    expect(cache.match(prompt([1, 2, 9], 5), '')).toEqual([0, 1]); // diverges in block 2; asks 3
    expect(cache.match(prompt([5, 2, 3], 1), '')).toEqual([]); // diverges in block 0; asks 3
    expect(cache.match(prompt([1], 4), '')).toEqual([0]); // asks 1
    expect(cache.match(prompt([1]), '')).toEqual([]); // 16 tokens: the last must run; asks 0
    expect(cache.match([], '')).toEqual([]); // asks 0
    const one = [...blk(1)];
    one[15] = 999; // a single differing id in the block breaks the match
    expect(cache.match([...one, 1], '')).toEqual([]); // asks 1
    expect(cache.stats()).toEqual({ cachedBlocks: 3, hits: 8, queries: 13, evictions: 0, invalidated: 0, hitRate: 8 / 13 });
  });

  it('leaves the last token of a prompt of exactly k blocks to compute: k - 1 blocks match', () => {
    const { pool, cache } = setup(4);
    const tokens = prompt([1, 2, 3]);
    cache.insert(tokens, '', pool.allocate(3));
    expect(cache.match(tokens, '')).toEqual([0, 1]);
    expect(cache.match([...tokens, 42], '')).toEqual([0, 1, 2]);
  });

  it('is idempotent and extends a cached chain', () => {
    const { pool, cache } = setup(6);
    const blocks = pool.allocate(4); // [0, 1, 2, 3]
    const tokens = prompt([1, 2, 3, 4]);
    expect(cache.insert(tokens.slice(0, 50), '', blocks)).toEqual({ added: 3, present: 0, ignored: [] });
    expect(cache.insert(tokens.slice(0, 50), '', blocks)).toEqual({ added: 0, present: 3, ignored: [] });
    expect(cache.insert(tokens.slice(0, 20), '', blocks)).toEqual({ added: 0, present: 1, ignored: [] });
    expect(cache.insert(tokens, '', blocks)).toEqual({ added: 1, present: 3, ignored: [] });
    expect(cache.stats().cachedBlocks).toBe(4);
    expect(cache.match([...tokens, 0], '')).toEqual([0, 1, 2, 3]);
  });

  it('shares a common system prompt: the same physical blocks, counted by the pool', () => {
    const { pool, cache } = setup(8);
    const a = prompt([1, 2, 10], 1, 2, 3); // system prompt = blocks 1, 2
    const aBlocks = pool.allocate(4); // [0, 1, 2, 3]
    cache.insert(a, '', aBlocks);

    const b = prompt([1, 2, 20], 4, 5); // 50 tokens: 4 blocks
    const hit = cache.match(b, '');
    expect(hit).toEqual([0, 1]);
    expect(cache.freeAmong(hit)).toBe(0); // both held by A: sharing costs no free block
    cache.acquire(hit);
    expect([pool.refCount(0), pool.refCount(1)]).toEqual([2, 2]);
    const bBlocks = [...hit, ...pool.allocate(2)];
    expect(bBlocks).toEqual([0, 1, 4, 5]);
    expect(cache.insert(b, '', bBlocks)).toEqual({ added: 1, present: 2, ignored: [] });
    expect(pool.freeQueue()).toEqual([6, 7]);

    pool.free([...aBlocks].reverse()); // A ends
    expect([pool.refCount(0), pool.refCount(1), pool.refCount(2), pool.refCount(3)]).toEqual([1, 1, 0, 0]);
    expect(pool.freeQueue()).toEqual([6, 7, 3, 2]);
    expect(cache.match(a, '')).toEqual([0, 1, 2]); // A's own block 2 is free but still cached
    expect(cache.freeAmong([0, 1, 2])).toBe(1);

    pool.free([...bBlocks].reverse()); // B ends
    expect(pool.freeQueue()).toEqual([6, 7, 3, 2, 5, 4, 1, 0]);
    expect(cache.stats().cachedBlocks).toBe(4); // 0, 1, 2 (A) and 4 (B)

    const c = prompt([1, 2, 30], 9);
    const cHit = cache.match(c, '');
    expect(cHit).toEqual([0, 1]);
    expect(cache.freeAmong(cHit)).toBe(2);
    cache.acquire(cHit); // revived from the free queue
    expect(pool.freeQueue()).toEqual([6, 7, 3, 2, 5, 4]);
    expect([pool.refCount(0), pool.refCount(1)]).toEqual([1, 1]);
  });

  it('evicts in LRU order: free blocks are reused head-first and stop matching in exactly that order', () => {
    const { pool, cache } = setup(6);
    const a = prompt([1, 2, 3], 1); // blocks [0, 1, 2] full, 3 partial
    const b = prompt([4, 5], 1); // blocks [4, 5] full
    cache.insert(a, '', pool.allocate(4));
    cache.insert(b, '', pool.allocate(2));
    pool.free([3, 2, 1, 0]); // A ends first
    pool.free([5, 4]); // then B
    expect(pool.freeQueue()).toEqual([3, 2, 1, 0, 5, 4]);

    const trace: [number[], number[], number[], number][] = [];
    for (let i = 0; i < 6; i++) {
      const [got] = pool.allocate(1);
      trace.push([[got], cache.match(a, ''), cache.match(b, ''), cache.stats().evictions]);
    }
    expect(trace).toEqual([
      [[3], [0, 1, 2], [4, 5], 0], // the partial block was never cached
      [[2], [0, 1], [4, 5], 1],
      [[1], [0], [4, 5], 2],
      [[0], [], [4, 5], 3],
      [[5], [], [4], 4],
      [[4], [], [], 5],
    ]);
    expect(cache.stats().cachedBlocks).toBe(0);
  });

  it('does not evict a block revived by a hit', () => {
    const { pool, cache } = setup(6);
    const a = prompt([1, 2, 3], 1);
    const aBlocks = pool.allocate(4); // [0, 1, 2, 3]
    cache.insert(a, '', aBlocks);
    pool.free([...aBlocks].reverse());
    expect(pool.freeQueue()).toEqual([4, 5, 3, 2, 1, 0]);

    const hit = cache.match(prompt([1, 2, 7], 1), '');
    expect(hit).toEqual([0, 1]);
    cache.acquire(hit);
    expect(pool.freeQueue()).toEqual([4, 5, 3, 2]);
    expect(pool.allocate(4)).toEqual([4, 5, 3, 2]);
    expect(cache.stats().evictions).toBe(1); // block 2 only
    expect([cache.isCached(0), cache.isCached(1), cache.isCached(2)]).toEqual([true, true, false]);
    expect(() => pool.allocate(1)).toThrow(OutOfBlocksError);
    expect(cache.match(a, '')).toEqual([0, 1]);
  });

  it('keeps adapters apart: the same tokens under another adapter key do not match', () => {
    const { pool, cache } = setup(8);
    const t = prompt([1, 2], 1);
    cache.insert(t, '', pool.allocate(3)); // [0, 1, 2]
    expect(cache.match(t, 'lora@1')).toEqual([]);
    expect(cache.insert(t, 'lora@1', pool.allocate(3))).toEqual({ added: 2, present: 0, ignored: [] }); // [3, 4, 5]
    expect(cache.match(t, '')).toEqual([0, 1]);
    expect(cache.match(t, 'lora@1')).toEqual([3, 4]);
    expect(cache.match(t, 'lora@2')).toEqual([]);
    expect(cache.match(t, 'lora')).toEqual([]);
  });

  it('invalidates one adapter and keeps the others; the pool is untouched', () => {
    const { pool, cache } = setup(8);
    const t = prompt([1, 2]);
    const q = [...t, 1];
    cache.insert(t, '', pool.allocate(2)); // [0, 1]
    cache.insert(t, 'a@1', pool.allocate(2)); // [2, 3]
    cache.insert(t, 'b@1', pool.allocate(2)); // [4, 5]
    expect(cache.invalidate('a@1')).toBe(2);
    expect(cache.invalidate('a@1')).toBe(0);
    expect(cache.invalidate('never-seen')).toBe(0);
    expect(cache.match(q, 'a@1')).toEqual([]);
    expect(cache.match(q, '')).toEqual([0, 1]);
    expect(cache.match(q, 'b@1')).toEqual([4, 5]);
    expect([cache.isCached(2), cache.isCached(3), pool.refCount(2), pool.refCount(3)]).toEqual([false, false, 1, 1]);
    expect(cache.stats()).toMatchObject({ cachedBlocks: 4, invalidated: 2 });

    cache.insert(t, 'a@2', pool.allocate(2)); // the new version computes its own: [6, 7]
    expect(cache.match(q, 'a@2')).toEqual([6, 7]);
    pool.free([3, 2]); // the old version's sequence ends; reusing its blocks is no eviction
    expect(pool.allocate(2)).toEqual([3, 2]);
    expect(cache.stats().evictions).toBe(0);
  });

  it('first writer wins: a second physical copy of a cached block is ignored and reported', () => {
    const { pool, cache } = setup(8);
    const t = prompt([1, 2, 3], 1); // 49 tokens
    cache.insert(t.slice(0, 33), '', pool.allocate(3)); // A: [0, 1] full, 2 partial
    const bBlocks = pool.allocate(4); // B computed t cold, concurrently: [3, 4, 5, 6]
    expect(cache.insert(t, '', bBlocks)).toEqual({ added: 1, present: 0, ignored: [3, 4] });
    expect(cache.match(t, '')).toEqual([0, 1, 5]); // B's third block extends A's chain
    expect([cache.isCached(3), cache.isCached(4), cache.isCached(5)]).toEqual([false, false, true]);
    expect(cache.insert(t, '', bBlocks)).toEqual({ added: 0, present: 1, ignored: [3, 4] });
    expect(cache.stats().cachedBlocks).toBe(3);
  });

  it('stops a match at a chain broken by an evicted middle block, and takes the re-computed block back', () => {
    const { pool, cache } = setup(8);
    const a = prompt([1, 2, 3], 1);
    const aBlocks = pool.allocate(4); // [0, 1, 2, 3]
    cache.insert(a, '', aBlocks);
    const b = prompt([1, 9], 7); // shares block 0 only
    const bHit = cache.match(b, '');
    expect(bHit).toEqual([0]);
    cache.acquire(bHit);
    const bBlocks = [...bHit, ...pool.allocate(2)]; // [0, 4, 5]
    expect(bBlocks).toEqual([0, 4, 5]);
    pool.free(aBlocks); // forward order: the middle block 1 is now older than 2
    expect(pool.freeQueue()).toEqual([6, 7, 1, 2, 3]);
    expect(pool.allocate(2)).toEqual([6, 7]);
    expect(cache.stats().evictions).toBe(0);

    const [reused] = pool.allocate(1);
    expect(reused).toBe(1);
    expect(cache.stats()).toMatchObject({ cachedBlocks: 1, evictions: 2 }); // node 1 and its now unreachable child 2
    expect(cache.match(a, '')).toEqual([0]);
    expect(cache.isCached(2)).toBe(false);
    expect(pool.freeQueue()).toEqual([2, 3]);

    // A sequence re-computes A's prompt into block 1 (just taken) and 2, 3 (free, uncached):
    cache.acquire([0]);
    const c = [0, 1, ...pool.allocate(2)];
    expect(c).toEqual([0, 1, 2, 3]);
    expect(cache.insert(a, '', c)).toEqual({ added: 2, present: 1, ignored: [] });
    expect(cache.match(a, '')).toEqual([0, 1, 2]);
  });

  it('clears everything; reusing formerly cached blocks is then no eviction', () => {
    const { pool, cache } = setup(4);
    const blocks = pool.allocate(3);
    cache.insert(prompt([1, 2, 3]), '', blocks);
    cache.insert(prompt([5]), 'x@1', [pool.allocate(1)[0]]);
    cache.clear();
    expect(cache.stats()).toMatchObject({ cachedBlocks: 0, invalidated: 4, evictions: 0 });
    expect(cache.match(prompt([1, 2, 3]), '')).toEqual([]);
    pool.free([...blocks].reverse());
    expect(pool.allocate(3)).toEqual([2, 1, 0]);
    expect(cache.stats().evictions).toBe(0);
  });

  it('records only the matches asked to, and resets its counters', () => {
    const { pool, cache } = setup(4);
    cache.insert(prompt([1, 2]), '', pool.allocate(2));
    expect(cache.match(prompt([1, 2], 0), '', { record: false })).toEqual([0, 1]);
    expect(cache.stats()).toMatchObject({ hits: 0, queries: 0, hitRate: 0 });
    cache.match(prompt([1, 3], 0), '');
    expect(cache.stats()).toMatchObject({ hits: 1, queries: 2, hitRate: 0.5 });
    cache.resetStats();
    expect(cache.stats()).toEqual({ cachedBlocks: 2, hits: 0, queries: 0, evictions: 0, invalidated: 0, hitRate: 0 });
  });

  it('rejects bad inserts and stale acquires with typed errors, changing nothing', () => {
    const { pool, cache } = setup(6);
    const t = prompt([1, 2], 1);
    cache.insert(t, '', pool.allocate(3)); // [0, 1] cached, 2 partial
    const before = cache.stats();
    const [d, e] = pool.allocate(2); // 3, 4

    expect(reason(() => cache.insert(prompt([7, 8]), '', [d]))).toBe('bad-input'); // 2 full blocks, 1 given
    expect(reason(() => cache.insert(prompt([7, 8]), '', [d, d]))).toBe('block-conflict');
    expect(reason(() => cache.insert(prompt([7, 8]), '', [d, 0]))).toBe('block-conflict'); // 0 backs blk(1)
    expect(reason(() => cache.insert(prompt([1, 2]), '', [1, 0]))).toBe('block-conflict'); // swapped: each backs the other node
    expect(reason(() => cache.insert(prompt([7, 8]), '', [d, 6]))).toBe('bad-input'); // outside the pool
    expect(reason(() => cache.insert(prompt([7, 8]), '', [d, 5]))).toBe('stale-block'); // 5 is free: nobody holds it
    expect(reason(() => cache.insert([...blk(7).slice(0, 15), 1.5], '', [d]))).toBe('bad-input');
    expect(reason(() => cache.insert(prompt([7, 8]).map((x, i) => (i === 20 ? -1 : x)), '', [d, e]))).toBe('bad-input'); // found in pass 1
    expect(reason(() => cache.match(t, undefined as unknown as string))).toBe('bad-input');
    expect(cache.stats()).toEqual(before);
    expect(cache.match(prompt([7, 8], 1), '')).toEqual([]); // no half-done insert left a node
    expect([cache.isCached(d), cache.isCached(e)]).toEqual([false, false]);

    expect(reason(() => cache.acquire([0, d]))).toBe('stale-block'); // d was never cached
    expect(pool.refCount(0)).toBe(1); // all or nothing
    cache.acquire([0, 1]);
    expect([pool.refCount(0), pool.refCount(1)]).toEqual([2, 2]);
  });

  it('is the only reuse listener of its pool until detached', () => {
    const pool = new BlockPool(2);
    const cache = new PrefixCache(pool);
    expect(() => new PrefixCache(pool)).toThrow(BlockPoolError);
    cache.insert(prompt([1]), '', pool.allocate(1));
    cache.detach();
    expect(cache.isCached(0)).toBe(false);
    const next = new PrefixCache(pool);
    next.insert(prompt([2]), '', pool.allocate(1)); // block 1
    pool.free([1]);
    expect(pool.allocate(1)).toEqual([1]);
    expect(next.stats().evictions).toBe(1);
    expect(cache.stats().evictions).toBe(0);
  });

  it('agrees with a naive whole-prefix model over a random trace of requests', () => {
    // The model keys every cached block by adapter + ALL ids up to its end (quadratic, obviously
    // right); eviction drops a block and every longer prefix through it, as the tree drops a subtree.
    const model = new Map<string, number>();
    let modelEvictions = 0;
    const keyOf = (tokens: number[], adapter: string, i: number): string => `${adapter.length}:${adapter}|${tokens.slice(0, (i + 1) * BLOCK_SIZE).join(',')}`;
    const modelMatch = (tokens: number[], adapter: string): number[] => {
      const out: number[] = [];
      for (let i = 0; i < Math.floor((tokens.length - 1) / BLOCK_SIZE); i++) {
        const b = model.get(keyOf(tokens, adapter, i));
        if (b === undefined) break;
        out.push(b);
      }
      return out;
    };
    const dropWhere = (pred: (k: string) => boolean): number => {
      let n = 0;
      for (const k of [...model.keys()]) {
        if (pred(k)) {
          model.delete(k);
          n++;
        }
      }
      return n;
    };
    const modelEvict = (b: number): void => {
      const top = [...model].find(([, v]) => v === b)?.[0];
      if (top !== undefined) modelEvictions += dropWhere((k) => k === top || k.startsWith(`${top},`));
    };

    let seed = 12345;
    const rand = (n: number): number => {
      // mulberry32: deterministic, well mixed, exact in 32-bit integer maths
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), seed | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return Math.floor((((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * n);
    };
    const { pool, cache } = setup(24);
    const running: { tokens: number[]; adapter: string; blocks: number[] }[] = [];
    let hits = 0;
    let ignored = 0;
    for (let op = 0; op < 3000; op++) {
      const r = rand(100);
      if (r < 55) {
        const adapter = ['', 'a@1', 'a@2'][rand(3)];
        // Full blocks from a 3-block vocabulary (so prefixes are shared), then either one more such
        // block (a prompt of whole blocks: its last block is not matched but may be cached, so the
        // insert meets first-writer-wins) or 1..15 loose tokens.
        const full = Array.from({ length: rand(5) }, () => 1 + rand(3));
        const tokens = rand(4) === 0 ? prompt([...full, 1 + rand(3)]) : prompt(full, ...Array.from({ length: 1 + rand(15) }, () => rand(4)));
        const hit = cache.match(tokens, adapter);
        expect(hit).toEqual(modelMatch(tokens, adapter));
        const need = Math.ceil(tokens.length / BLOCK_SIZE) - hit.length;
        if (need + cache.freeAmong(hit) > pool.numFree) continue; // does not fit now
        hits += hit.length;
        cache.acquire(hit);
        const own = pool.allocate(need);
        own.forEach(modelEvict);
        const blocks = [...hit, ...own];
        const expected = { added: 0, present: 0, ignored: [] as number[] };
        for (let i = 0; i < Math.floor(tokens.length / BLOCK_SIZE); i++) {
          const k = keyOf(tokens, adapter, i);
          const b = model.get(k);
          if (b === blocks[i]) expected.present++;
          else if (b !== undefined) expected.ignored.push(blocks[i]);
          else {
            model.set(k, blocks[i]);
            expected.added++;
          }
        }
        expect(cache.insert(tokens, adapter, blocks)).toEqual(expected);
        ignored += expected.ignored.length;
        running.push({ tokens, adapter, blocks });
      } else if (r < 97 && running.length > 0) {
        const [done] = running.splice(rand(running.length), 1);
        pool.free([...done.blocks].reverse());
      } else if (r >= 97) {
        const adapter = ['a@1', 'a@2'][rand(2)];
        expect(cache.invalidate(adapter)).toBe(dropWhere((k) => k.startsWith(`${adapter.length}:${adapter}|`)));
      }
      expect(cache.stats()).toMatchObject({ cachedBlocks: model.size, evictions: modelEvictions });
      const held = new Array<number>(pool.numBlocks).fill(0);
      for (const s of running) for (const b of s.blocks) held[b]++;
      expect(held.map((_, b) => pool.refCount(b))).toEqual(held);
      const cachedBlocks = new Set(model.values());
      expect(held.map((_, b) => cache.isCached(b))).toEqual(held.map((_, b) => cachedBlocks.has(b)));
    }
    // The trace must exercise what it is meant to: hits, evictions and first-writer-wins.
    expect(hits).toBeGreaterThan(100);
    expect(modelEvictions).toBeGreaterThan(50);
    expect(ignored).toBeGreaterThan(10);
  });
});
