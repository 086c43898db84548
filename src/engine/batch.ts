/**
 * From sequences to one iteration's flattened inputs (pure bookkeeping, no GPU). Each entry says
 * "run the next `count` tokens of this sequence"; count 1 on a sequence whose prompt is done is a
 * decode step, more is a prefill chunk. KV blocks are taken from the pool as sequences grow,
 * all-or-nothing per batch, so a batch that does not fit leaves every sequence as it was.
 */
import { NO_ADAPTER } from '../kernels/lora.ts';
import { BLOCK_SIZE, blocksForLength, NO_BLOCK } from '../kv/layout.ts';
import type { BlockPool } from '../kv/pool.ts';
import { OutOfBlocksError } from '../kv/pool.ts';
import type { BatchStep, U32 } from '../model/forward.ts';
import { UNBOUNDED_WINDOW } from '../kernels/attention.ts';
import { deadBlocks, type SinksWindow } from '../kv/pruning.ts';

export interface SequenceState {
  /** Prompt and generated tokens so far. */
  tokens: number[];
  /** Tokens whose K/V are already in the cache (positions 0..computed-1). */
  computed: number;
  /** Physical KV blocks, in position order. */
  blocks: number[];
  /** Adapter-bank slot whose LoRA this sequence runs with; absent (or NO_ADAPTER): the base model. */
  adapterSlot?: number;
  /**
   * Its key window (attention sinks + recent window, src/kv/pruning.ts); absent: the model's
   * default. Blocks out of reach are NO_BLOCK holes in `blocks` (freed early).
   */
  keyWindow?: SinksWindow;
}

export interface BatchEntry {
  seq: SequenceState;
  /** Tokens of seq.tokens to run, from seq.computed on. */
  count: number;
}

export class BatchError extends Error {
  readonly code = 'bad-batch';
  constructor(detail: string) {
    super(`batch: ${detail}`);
    this.name = 'BatchError';
  }
}

/** Blocks each entry still needs for its new length. */
function blocksNeeded(entries: readonly BatchEntry[]): number[] {
  return entries.map(({ seq, count }) => Math.max(0, blocksForLength(seq.computed + count) - seq.blocks.length));
}

/**
 * Build the step for `entries` and grow their block lists from `pool`. Does NOT advance
 * `computed`: call `commitBatch` once the GPU work is submitted.
 */
export function buildBatchStep(entries: readonly BatchEntry[], pool: BlockPool, maxBlocksPerSeq: number, defaultWindow = UNBOUNDED_WINDOW): BatchStep {
  if (entries.length === 0) throw new BatchError('has no entries');
  const seen = new Set<SequenceState>();
  for (const [i, { seq, count }] of entries.entries()) {
    if (seen.has(seq)) throw new BatchError(`entry ${i} repeats a sequence`);
    seen.add(seq);
    if (!Number.isInteger(count) || count < 1) throw new BatchError(`entry ${i} has count ${count}`);
    if (seq.computed + count > seq.tokens.length) throw new BatchError(`entry ${i} runs ${count} tokens from ${seq.computed}, the sequence has ${seq.tokens.length}`);
    if (blocksForLength(seq.computed + count) > maxBlocksPerSeq) throw new BatchError(`entry ${i} reaches length ${seq.computed + count}, past the context limit ${maxBlocksPerSeq * BLOCK_SIZE}`);
  }
  const need = blocksNeeded(entries);
  const total = need.reduce((a, b) => a + b, 0);
  if (total > pool.numFree) throw new OutOfBlocksError(total, pool.numFree);
  entries.forEach(({ seq }, i) => seq.blocks.push(...pool.allocate(need[i])));

  const T = entries.reduce((a, e) => a + e.count, 0);
  const nSeqs = entries.length;
  const adapterSlots = new Uint32Array(T) as U32;
  const step: BatchStep = {
    mode: entries.every((e) => e.count === 1) ? 'decode' : 'mixed',
    tokens: new Uint32Array(T) as U32,
    tokenSeq: new Uint32Array(T) as U32,
    tokenPos: new Uint32Array(T) as U32,
    blockTables: new Uint32Array(nSeqs * maxBlocksPerSeq).fill(NO_BLOCK) as U32,
    seqLens: new Uint32Array(nSeqs) as U32,
    lastRows: new Uint32Array(nSeqs) as U32,
    adapterSlots,
  };
  let t = 0;
  entries.forEach(({ seq, count }, s) => {
    for (let j = 0; j < count; j++, t++) {
      step.tokens[t] = seq.tokens[seq.computed + j];
      step.tokenSeq[t] = s;
      step.tokenPos[t] = seq.computed + j;
      adapterSlots[t] = seq.adapterSlot ?? NO_ADAPTER;
    }
    step.blockTables.set(seq.blocks, s * maxBlocksPerSeq);
    step.seqLens[s] = seq.computed + count;
    step.lastRows[s] = t - 1;
  });
  if (entries.some((e) => e.seq.keyWindow)) {
    step.seqSinks = Uint32Array.from(entries, (e) => e.seq.keyWindow?.sinks ?? 0) as U32;
    step.seqWindows = Uint32Array.from(entries, (e) => e.seq.keyWindow?.window ?? defaultWindow) as U32;
  }
  return step;
}

/** After the step ran: the entries' tokens are now in the cache. */
export function commitBatch(entries: readonly BatchEntry[]): void {
  for (const e of entries) e.seq.computed += e.count;
}

/**
 * Free the blocks of `seq` that no later query can attend to under its key window (holes left as
 * NO_BLOCK; the attention kernels never read a masked position). Returns how many were freed.
 */
export function pruneSequence(seq: SequenceState, pool: BlockPool): number {
  const w = seq.keyWindow;
  if (!w || w.window === UNBOUNDED_WINDOW) return 0;
  const dead = deadBlocks(seq.computed, w).filter((b) => b < seq.blocks.length && seq.blocks[b] !== NO_BLOCK);
  if (dead.length === 0) return 0;
  pool.free(dead.map((b) => seq.blocks[b]));
  for (const b of dead) seq.blocks[b] = NO_BLOCK;
  return dead.length;
}

/** Give a finished or cancelled sequence's blocks back (tail blocks first: evicted first). */
export function releaseSequence(seq: SequenceState, pool: BlockPool): void {
  pool.free(seq.blocks.filter((b) => b !== NO_BLOCK).reverse());
  seq.blocks = [];
  seq.computed = 0;
}
