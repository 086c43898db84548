/**
 * The KV block pool: pure bookkeeping of physical 16-token blocks (no GPU calls).
 *
 * Blocks are ref-counted so sequences can share a prefix (a fork increments, a free decrements).
 * A block whose count drops to zero goes to the TAIL of the free queue and allocation takes from the
 * HEAD, so the queue is in eviction order: the block freed longest ago is reused first, and a block
 * freed recently (whose contents a later prefix-cache hit may still want) is reused last, as in vLLM
 * v1's free block queue. The queue is a doubly linked list over arrays so `take` (a prefix hit that
 * revives a free block) is O(1).
 *
 * A prefix cache (src/kv/prefix-cache.ts) keeps the contents of free blocks matchable until they are
 * reused; it learns of reuse through the one reuse listener (`setReuseListener`), which `allocate`
 * calls for every block it hands out. `take` does not call it: a hit keeps the contents.
 */
export class OutOfBlocksError extends Error {
  readonly code = 'out-of-kv-blocks';
  constructor(
    readonly requested: number,
    readonly free: number,
  ) {
    super(`KV cache: ${requested} blocks requested, ${free} free`);
    this.name = 'OutOfBlocksError';
  }
}

export class BlockPoolError extends Error {
  readonly code = 'block-pool';
  constructor(message: string) {
    super(message);
    this.name = 'BlockPoolError';
  }
}

const NIL = -1;

/** Called by `allocate` for each block it takes from the free queue (its old contents are about to be overwritten). */
export type ReuseListener = (block: number) => void;

export class BlockPool {
  /** Reference count per block; 0 means the block is in the free queue. */
  private readonly refs: Uint32Array;
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private head = NIL;
  private tail = NIL;
  private freeCount = 0;
  private reuseListener: ReuseListener | null = null;

  constructor(readonly numBlocks: number) {
    if (!Number.isInteger(numBlocks) || numBlocks <= 0) throw new BlockPoolError(`numBlocks must be a positive integer, got ${numBlocks}`);
    this.refs = new Uint32Array(numBlocks);
    this.prev = new Int32Array(numBlocks).fill(NIL);
    this.next = new Int32Array(numBlocks).fill(NIL);
    for (let b = 0; b < numBlocks; b++) this.pushTail(b);
  }

  get numFree(): number {
    return this.freeCount;
  }

  get numUsed(): number {
    return this.numBlocks - this.freeCount;
  }

  refCount(block: number): number {
    this.check(block);
    return this.refs[block];
  }

  /** The free queue from head (next to be reused) to tail; for tests and stats. */
  freeQueue(): number[] {
    const out: number[] = [];
    for (let b = this.head; b !== NIL; b = this.next[b]) out.push(b);
    return out;
  }

  /**
   * Set (or with null, remove) the listener told of every block `allocate` reuses. One per pool:
   * a second listener would silently replace the first cache's eviction hook, so that throws.
   */
  setReuseListener(listener: ReuseListener | null): void {
    if (listener !== null && this.reuseListener !== null && this.reuseListener !== listener) {
      throw new BlockPoolError('setReuseListener: this pool already has a reuse listener (one prefix cache per pool)');
    }
    this.reuseListener = listener;
  }

  /**
   * Take `n` blocks from the head of the free queue, each with ref count 1. All or nothing. The reuse
   * listener hears of each block in allocation order, after the pool's state is final, so what it
   * reads of the pool is consistent.
   */
  allocate(n: number): number[] {
    if (!Number.isInteger(n) || n < 0) throw new BlockPoolError(`allocate: n must be a non-negative integer, got ${n}`);
    if (n > this.freeCount) throw new OutOfBlocksError(n, this.freeCount);
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const b = this.head;
      this.unlink(b);
      this.refs[b] = 1;
      out.push(b);
    }
    const listener = this.reuseListener;
    if (listener !== null) for (const b of out) listener(b);
    return out;
  }

  /** Revive a specific free block (a prefix-cache hit), or add a reference to a used one. */
  take(block: number): void {
    this.check(block);
    if (this.refs[block] === 0) this.unlink(block);
    this.refs[block]++;
  }

  /** Share blocks with another sequence (fork): one more reference each. */
  share(blocks: readonly number[]): void {
    for (const b of blocks) {
      this.check(b);
      if (this.refs[b] === 0) throw new BlockPoolError(`share: block ${b} is free`);
    }
    for (const b of blocks) this.refs[b]++;
  }

  /**
   * Drop one reference from each block. Blocks reaching zero join the free queue's tail in the
   * given order; callers pass a sequence's blocks in REVERSE so its tail blocks (least likely to be
   * shared as a prefix) are evicted first. Validated before anything changes.
   */
  free(blocks: readonly number[]): void {
    const seen = new Map<number, number>();
    for (const b of blocks) {
      this.check(b);
      seen.set(b, (seen.get(b) ?? 0) + 1);
    }
    for (const [b, k] of seen) if (this.refs[b] < k) throw new BlockPoolError(`free: block ${b} has ${this.refs[b]} references, ${k} released`);
    for (const b of blocks) {
      this.refs[b]--;
      if (this.refs[b] === 0) this.pushTail(b);
    }
  }

  private check(block: number): void {
    if (!Number.isInteger(block) || block < 0 || block >= this.numBlocks) throw new BlockPoolError(`block id ${block} is outside [0, ${this.numBlocks})`);
  }

  private pushTail(b: number): void {
    this.prev[b] = this.tail;
    this.next[b] = NIL;
    if (this.tail !== NIL) this.next[this.tail] = b;
    else this.head = b;
    this.tail = b;
    this.freeCount++;
  }

  private unlink(b: number): void {
    const p = this.prev[b];
    const n = this.next[b];
    if (p !== NIL) this.next[p] = n;
    else this.head = n;
    if (n !== NIL) this.prev[n] = p;
    else this.tail = p;
    this.prev[b] = NIL;
    this.next[b] = NIL;
    this.freeCount--;
  }
}
