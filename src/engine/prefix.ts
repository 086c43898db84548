/**
 * Prefix reuse in the engine: the glue between its requests and the prefix cache
 * (src/kv/prefix-cache.ts, pure bookkeeping over the KV block pool).
 *
 * - Before planning, each waiting request that could be admitted is matched against the cache:
 *   the planner sees its cached tokens as `computed` and its matched blocks as held, and counts
 *   only the matched blocks that sit free in the pool against its memory fit (`cachedFree`): the
 *   others are shared with running sequences and cost nothing.
 * - At admission the same blocks are acquired (a reference each; free ones leave the pool's free
 *   queue, so allocation can no longer evict them) and the request prefills only the rest.
 * - After each step, sequences whose K/V filled another 16-token block register their full blocks,
 *   so the next turn of the same chat, or another request with the same system prompt, finds them.
 *
 * K/V depend on the weights, so entries are keyed by what a sequence runs with: 'base', or the
 * adapter-bank slot and its epoch (`lora:<slot>@<epoch>`), plus its key window when that is not the
 * model's own (`~s<sinks>w<window>`: past the window, attention and so every later layer's K/V differ).
 * A sequence that freed blocks out of its window (holes in its block list) registers nothing more. The registry bumps a slot's epoch when
 * its weights change (load, replace, unload, a learner's published step); the old key's entries are
 * invalidated then. A sequence admitted under an epoch that has since changed holds K/V from two
 * weight versions, so it registers nothing more.
 *
 * Nothing here allocates per token: a match or insert is a walk of the prefix's blocks (a key string
 * of 16 ids each), done once per waiting request per iteration and once per filled block.
 */
import { BLOCK_SIZE } from '../kv/layout.ts';
import type { BlockPool } from '../kv/pool.ts';
import { PrefixCache, type PrefixCacheStats } from '../kv/prefix-cache.ts';
import type { PrefixStats } from '../scheduler/stats.ts';
import type { SequenceState } from './batch.ts';

/** Cache key of the base model's K/V. */
export const BASE_KEY = 'base';

/** What a waiting request would reuse if admitted now. */
export interface PrefixMatch {
  /** Matched physical blocks, in position order. */
  blocks: number[];
  /** Of those, how many are free in the pool (acquiring takes them from the free count). */
  free: number;
}

/** The per-sequence state of prefix reuse (kept on the request). */
export interface SequenceReuse {
  /** Key the sequence's K/V are computed under (null: registers nothing, see the file comment). */
  key: string | null;
  /** Full blocks already registered. */
  registered: number;
}

export class PrefixReuse {
  readonly cache: PrefixCache;
  /** Prompt tokens requests got from the cache at first admission, and prompt tokens they computed. */
  private cachedTokens = 0;
  private promptTokens = 0;

  constructor(
    private readonly pool: BlockPool,
    /** Current epoch of an adapter-bank slot (src/engine/adapters.ts). */
    private readonly epochOf: (slot: number) => number,
    /** The model's own key window (config.slidingWindow, or UNBOUNDED_WINDOW). */
    private readonly modelWindow: number,
  ) {
    this.cache = new PrefixCache(pool);
  }

  /** The key `seq` computes its K/V under now (its adapter's epoch, its key window). */
  keyFor(seq: Pick<SequenceState, 'adapterSlot' | 'keyWindow'>): string {
    const weights = seq.adapterSlot === undefined ? BASE_KEY : `lora:${seq.adapterSlot}@${this.epochOf(seq.adapterSlot)}`;
    const w = seq.keyWindow;
    return w && (w.sinks !== 0 || w.window !== this.modelWindow) ? `${weights}~s${w.sinks}w${w.window}` : weights;
  }

  /** What `seq` (waiting, holding no blocks) would reuse now; not counted in the stats. */
  peek(seq: SequenceState): PrefixMatch {
    const blocks = this.cache.match(seq.tokens, this.keyFor(seq), { record: false });
    return { blocks, free: this.cache.freeAmong(blocks) };
  }

  /**
   * Admit `seq` (holding no blocks): take its cached prefix and mark those tokens computed.
   * `firstAdmission`: count its prompt in the hit statistics (a preempted request's re-admission
   * is not a new prompt). Returns the tokens reused.
   */
  admit(seq: SequenceState, reuse: SequenceReuse, promptLength: number, firstAdmission: boolean): number {
    if (seq.blocks.length !== 0 || seq.computed !== 0) throw new Error(`prefix reuse: admitting a sequence that holds ${seq.blocks.length} blocks`);
    const key = this.keyFor(seq);
    const blocks = this.cache.match(seq.tokens, key, { record: firstAdmission });
    this.cache.acquire(blocks);
    seq.blocks = blocks;
    seq.computed = blocks.length * BLOCK_SIZE;
    reuse.key = key;
    reuse.registered = blocks.length;
    if (firstAdmission) {
      const reused = Math.min(seq.computed, promptLength);
      this.cachedTokens += reused;
      this.promptTokens += promptLength;
    }
    return seq.computed;
  }

  /** After a step: register the blocks `seq` filled (its K/V are written up to `computed`). */
  register(seq: SequenceState, reuse: SequenceReuse): void {
    if (reuse.key === null) return;
    if (reuse.key !== this.keyFor(seq)) {
      reuse.key = null; // the weights changed under it: its K/V mix two versions
      return;
    }
    const full = Math.floor(seq.computed / BLOCK_SIZE);
    if (full <= reuse.registered) return;
    this.cache.insert(seq.tokens.slice(0, full * BLOCK_SIZE), reuse.key, seq.blocks);
    reuse.registered = full;
  }

  /** A slot's weights changed (its epoch moved on from `oldEpoch`): its entries are stale (every key window's). */
  invalidateSlot(slot: number, oldEpoch: number): void {
    const stale = `lora:${slot}@${oldEpoch}`;
    for (const key of this.cache.adapterKeys()) if (key === stale || key.startsWith(`${stale}~`)) this.cache.invalidate(key);
  }

  /** `seq` freed blocks out of its window: its block list has holes from now on, so it registers nothing more. */
  stopRegistering(reuse: SequenceReuse): void {
    reuse.key = null;
  }

  stats(): PrefixCacheStats & { cachedTokens: number; promptTokens: number } {
    return { ...this.cache.stats(), cachedTokens: this.cachedTokens, promptTokens: this.promptTokens };
  }

  /** The stats stream's record. */
  record(t: number): PrefixStats {
    const s = this.stats();
    return { type: 'prefix', t, hits: s.hits, queries: s.queries, hitRate: s.hitRate, cachedBlocks: s.cachedBlocks, evictions: s.evictions, invalidated: s.invalidated, cachedTokens: s.cachedTokens, promptTokens: s.promptTokens };
  }

  destroy(): void {
    this.cache.detach();
  }
}
