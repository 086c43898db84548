/**
 * The prefix cache: which physical KV blocks already hold the K/V of a prompt prefix, so a request
 * that starts with a cached prefix (its own earlier turns, a shared system prompt) prefills only the
 * rest. Pure bookkeeping over a `BlockPool` (no GPU calls).
 *
 * Granularity is the full 16-token block (BLOCK_SIZE): a partial block is never cached, because the
 * next token written to it would change what it holds.
 *
 * Structure: a tree per adapter key. A block's K/V depend on every token before it and on the
 * weights (a LoRA adapter changes K/V), so a node's identity is (parent node, its 16 token ids), and
 * the parent chain ends in the root of one adapter key ('' for the base model, `${name}@${version}`
 * for an adapter). Nodes are found through one Map keyed by `parent node id + the 16 ids`, written
 * out in decimal: exact, so unlike a hash chain (vLLM v1 hashes parent hash + ids + extra keys) two
 * different prefixes can never collide. Each node names exactly one physical block and each block
 * backs at most one node.
 *
 * Ownership: the cache holds no references. BlockPool's ref counts are the truth: a sequence that
 * uses a cached block holds a reference (`acquire` = `pool.take`, release = `pool.free`). A cached
 * block whose count drops to 0 sits in the pool's free queue, which is in LRU order (freed longest
 * ago is reused first), and stays matchable until `allocate` hands it out again; the pool's reuse
 * listener then drops its node here (an eviction). A hit on a free cached block revives it with
 * `take`, which removes it from the free queue, so it cannot be evicted while in use.
 *
 * When a node is evicted (or invalidated), its whole subtree goes with it: the descendants could no
 * longer be reached from a root, and leaving them mapped would make a later re-insert of the same
 * blocks look like a conflict. Their blocks stay wherever the pool has them (in use, or free in the
 * queue as plain free blocks).
 *
 * Cost: match and insert are O(prefix blocks) map operations plus one key string per block.
 */
import { BLOCK_SIZE } from './layout.ts';
import type { BlockPool } from './pool.ts';

export type PrefixCacheErrorReason =
  /** Malformed arguments: token ids, adapter key, block list too short. */
  | 'bad-input'
  /** A block would back two different nodes, or appears twice in one sequence. */
  | 'block-conflict'
  /** A block passed to acquire is not cached (evicted since the match) or insert got a block nobody holds. */
  | 'stale-block';

export class PrefixCacheError extends Error {
  readonly code = 'prefix-cache';
  constructor(
    readonly reason: PrefixCacheErrorReason,
    message: string,
  ) {
    super(`prefix cache: ${message}`);
    this.name = 'PrefixCacheError';
  }
}

export interface PrefixCacheStats {
  /** Blocks currently matchable (in use or free in the pool's queue). */
  cachedBlocks: number;
  /** Blocks returned by recorded matches. */
  hits: number;
  /** Blocks recorded matches asked for: floor((tokens.length - 1) / 16) per call. */
  queries: number;
  /** Nodes dropped because the pool reused their block (including the subtrees that went with them). */
  evictions: number;
  /** Nodes dropped by invalidate() and clear(). */
  invalidated: number;
  /** hits / queries; 0 before any query. */
  hitRate: number;
}

export interface InsertResult {
  /** New nodes registered. */
  added: number;
  /** Blocks that were already cached under their node (the insert repeated earlier work). */
  present: number;
  /**
   * The caller's blocks not cached because another physical block already holds that node (first
   * writer wins: two sequences computed the same prefix concurrently). Nothing will match them; they
   * are freed as usual when their sequence ends.
   */
  ignored: number[];
}

export interface MatchOptions {
  /** Count this call in the stats (default true). A scheduler re-checking a waiting request passes false. */
  record?: boolean;
}

interface Node {
  /** Unique for the cache's lifetime, so keys of a dropped node's children are never reused. */
  readonly id: number;
  /** This node's key in `nodes` (roots: none). */
  readonly key: string;
  /** null for a root. */
  readonly parent: Node | null;
  readonly adapterKey: string;
  /** Physical block; NO_NODE_BLOCK for a root. */
  readonly block: number;
  readonly children: Set<Node>;
}

const NO_NODE_BLOCK = -1;

export class PrefixCache {
  /** Every block node, by `parent id + ids`. */
  private readonly nodes = new Map<string, Node>();
  /** One root per adapter key that has nodes; deleted when its last child goes. */
  private readonly roots = new Map<string, Node>();
  /** The node a physical block backs, if any. */
  private readonly nodeOfBlock: (Node | undefined)[];
  private nextId = 0;
  private hits = 0;
  private queries = 0;
  private evictions = 0;
  private invalidated = 0;
  private readonly onReuse = (block: number): void => this.evict(block);

  /** Attaches to `pool` as its reuse listener (one cache per pool; `detach` undoes it). */
  constructor(readonly pool: BlockPool) {
    this.nodeOfBlock = new Array<Node | undefined>(pool.numBlocks).fill(undefined);
    pool.setReuseListener(this.onReuse);
  }

  /** Stop listening to the pool and forget every node (the pool's blocks are untouched). */
  detach(): void {
    this.pool.setReuseListener(null);
    this.clear();
  }

  /**
   * Physical blocks of the longest cached full-block prefix of `tokens` under `adapterKey`, in
   * position order. At most floor((tokens.length - 1) / 16) blocks, so at least one token is left to
   * run: the model needs the last prompt token's logits. Does not take references: call `acquire`
   * right after (before anything allocates, which could evict what was matched).
   */
  match(tokens: ArrayLike<number>, adapterKey: string, options: MatchOptions = {}): number[] {
    checkAdapterKey(adapterKey);
    const asked = Math.max(0, Math.floor((tokens.length - 1) / BLOCK_SIZE));
    const out: number[] = [];
    let node = this.roots.get(adapterKey);
    for (let i = 0; i < asked && node !== undefined; i++) {
      node = this.nodes.get(childKey(node.id, tokens, i));
      if (node !== undefined) out.push(node.block);
    }
    if (options.record ?? true) {
      this.queries += asked;
      this.hits += out.length;
    }
    return out;
  }

  /**
   * Take one reference on each matched block through the pool (reviving free ones from the queue).
   * All or nothing: every block must still be cached, else nothing is taken.
   */
  acquire(blocks: readonly number[]): void {
    for (const b of blocks) {
      if (!Number.isInteger(b) || b < 0 || b >= this.nodeOfBlock.length || this.nodeOfBlock[b] === undefined) {
        throw new PrefixCacheError('stale-block', `acquire: block ${b} is not cached (evicted since the match?)`);
      }
    }
    for (const b of blocks) this.pool.take(b);
  }

  /** How many of `blocks` are free in the pool: what acquiring them costs a memory fit (the others are shared). */
  freeAmong(blocks: readonly number[]): number {
    let n = 0;
    for (const b of blocks) if (this.pool.refCount(b) === 0) n++;
    return n;
  }

  /**
   * Register the full blocks of a sequence: blocks[i] holds tokens[16i .. 16i + 15]. Pass only
   * tokens whose K/V are written (not a just-sampled token). Only the floor(tokens.length / 16) full
   * blocks are registered; `blocks` may be longer (a partial last block). Every registered block must
   * be held (ref count ≥ 1). Idempotent. Validated before anything changes.
   *
   * Where a node already exists with another physical block, the existing one wins and the caller's
   * block is reported in `ignored`; the caller's later blocks still extend the existing chain (their
   * K/V equal what the cached chain would have produced: same tokens, positions and weights).
   */
  insert(tokens: ArrayLike<number>, adapterKey: string, blocks: readonly number[]): InsertResult {
    checkAdapterKey(adapterKey);
    const full = Math.floor(tokens.length / BLOCK_SIZE);
    if (blocks.length < full) throw new PrefixCacheError('bad-input', `insert: ${tokens.length} tokens fill ${full} blocks, only ${blocks.length} given`);

    // Pass 1 (no changes): walk the existing chain, then check the blocks that would become new nodes.
    const result: InsertResult = { added: 0, present: 0, ignored: [] };
    const seen = new Set<number>();
    let parent: Node | undefined = this.roots.get(adapterKey);
    let firstNew = 0;
    for (; firstNew < full && parent !== undefined; firstNew++) {
      const node = this.nodes.get(childKey(parent.id, tokens, firstNew));
      if (node === undefined) break;
      const b = this.checkBlock(blocks[firstNew], seen);
      const owner = this.nodeOfBlock[b];
      if (node.block === b) result.present++;
      else if (owner !== undefined) throw conflict(b, firstNew);
      else result.ignored.push(b);
      parent = node;
    }
    for (let i = firstNew; i < full; i++) {
      const b = this.checkBlock(blocks[i], seen);
      if (this.nodeOfBlock[b] !== undefined) throw conflict(b, i);
      checkTokens(tokens, i); // the keys are built in pass 2, once the parents' ids exist
    }

    // Pass 2: create the new nodes below the last existing one.
    if (firstNew < full) {
      parent ??= this.root(adapterKey);
      for (let i = firstNew; i < full; i++) {
        const node: Node = {
          id: this.nextId++,
          key: childKey(parent.id, tokens, i),
          parent,
          adapterKey,
          block: blocks[i],
          children: new Set(),
        };
        this.nodes.set(node.key, node);
        parent.children.add(node);
        this.nodeOfBlock[node.block] = node;
        parent = node;
        result.added++;
      }
    }
    return result;
  }

  /** Adapter keys that have cached nodes. */
  adapterKeys(): string[] {
    return [...this.roots.keys()];
  }

  /** Whether `block` backs a cached node. */
  isCached(block: number): boolean {
    return this.nodeOfBlock[block] !== undefined;
  }

  /** Drop every node of `adapterKey` (a new adapter version makes its K/V stale). Returns the count. */
  invalidate(adapterKey: string): number {
    checkAdapterKey(adapterKey);
    const root = this.roots.get(adapterKey);
    if (root === undefined) return 0;
    let n = 0;
    for (const child of [...root.children]) n += this.dropSubtree(child);
    this.invalidated += n;
    return n;
  }

  /** Drop every node (the pool's blocks and ref counts are untouched). Stats other than cachedBlocks are kept. */
  clear(): void {
    this.invalidated += this.nodes.size;
    this.nodes.clear();
    this.roots.clear();
    this.nodeOfBlock.fill(undefined);
  }

  stats(): PrefixCacheStats {
    return {
      cachedBlocks: this.nodes.size,
      hits: this.hits,
      queries: this.queries,
      evictions: this.evictions,
      invalidated: this.invalidated,
      hitRate: this.queries === 0 ? 0 : this.hits / this.queries,
    };
  }

  resetStats(): void {
    this.hits = this.queries = this.evictions = this.invalidated = 0;
  }

  /** The pool's reuse listener: the block is about to be overwritten, so its node (and subtree) goes. */
  private evict(block: number): void {
    const node = this.nodeOfBlock[block];
    if (node !== undefined) this.evictions += this.dropSubtree(node);
  }

  private root(adapterKey: string): Node {
    let r = this.roots.get(adapterKey);
    if (r === undefined) {
      r = { id: this.nextId++, key: '', parent: null, adapterKey, block: NO_NODE_BLOCK, children: new Set() };
      this.roots.set(adapterKey, r);
    }
    return r;
  }

  /** Remove `top` and its descendants; returns how many nodes went. Iterative: chains can be thousands deep. */
  private dropSubtree(top: Node): number {
    const parent = top.parent!;
    parent.children.delete(top);
    if (parent.parent === null && parent.children.size === 0) this.roots.delete(parent.adapterKey);
    let n = 0;
    const stack: Node[] = [top];
    for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
      this.nodes.delete(node.key);
      this.nodeOfBlock[node.block] = undefined;
      for (const c of node.children) stack.push(c);
      n++;
    }
    return n;
  }

  private checkBlock(b: number, seen: Set<number>): number {
    if (!Number.isInteger(b) || b < 0 || b >= this.nodeOfBlock.length) throw new PrefixCacheError('bad-input', `insert: block id ${b} is outside [0, ${this.nodeOfBlock.length})`);
    if (seen.has(b)) throw new PrefixCacheError('block-conflict', `insert: block ${b} appears twice in one sequence`);
    seen.add(b);
    if (this.pool.refCount(b) === 0) throw new PrefixCacheError('stale-block', `insert: block ${b} is free; only blocks a sequence holds can be cached`);
    return b;
  }
}

function conflict(block: number, index: number): PrefixCacheError {
  return new PrefixCacheError('block-conflict', `insert: block ${block} (logical block ${index}) already backs another cached prefix`);
}

function checkAdapterKey(adapterKey: string): void {
  if (typeof adapterKey !== 'string') throw new PrefixCacheError('bad-input', `adapter key must be a string, got ${typeof adapterKey}`);
}

function checkTokens(tokens: ArrayLike<number>, block: number): void {
  for (let j = block * BLOCK_SIZE; j < (block + 1) * BLOCK_SIZE; j++) {
    const t = tokens[j];
    if (!Number.isInteger(t) || t < 0) throw new PrefixCacheError('bad-input', `token ${j} = ${t} is not a non-negative integer id`);
  }
}

/**
 * Key of the node holding block `block` of `tokens` under the node `parentId`: the parent's id and
 * the 16 ids in decimal, comma-separated. Validating here keeps the key unambiguous (no '1.5', '-1').
 */
function childKey(parentId: number, tokens: ArrayLike<number>, block: number): string {
  checkTokens(tokens, block);
  let key = `${parentId}:`;
  for (let j = block * BLOCK_SIZE; j < (block + 1) * BLOCK_SIZE; j++) key += `${tokens[j]},`;
  return key;
}
