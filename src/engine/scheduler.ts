/**
 * The per-iteration plan of continuous batching, as a pure function of the queue state (plain
 * data in, plain data out) so a later scheduler (MACE) can replace it without touching the loop.
 *
 * Policy (vLLM v1's, simplified):
 * 1. Running sequences first, oldest first: each gets its remaining tokens (1 for a decode, the
 *    rest of its prompt for a chunked prefill) within the token budget.
 * 2. When the KV pool cannot hold a running sequence's next tokens, the NEWEST running sequence
 *    is preempted (its blocks freed; it is recomputed later from its tokens) until it fits; that
 *    may be the sequence itself. Sequences already planned this iteration are never preempted.
 * 3. Only if nothing was preempted, waiting sequences are admitted in FIFO order while the token
 *    budget, the sequence cap and the free blocks allow; the first that does not fit stops the
 *    admission (no overtaking, so a long prompt is never starved by short ones). A waiting prompt
 *    longer than the remaining budget is admitted with a chunk of it (chunked prefill).
 */
import { blocksForLength } from '../kv/layout.ts';

/** What the planner needs to know about one sequence. */
export interface SeqView {
  id: number;
  /** Tokens it has (prompt + generated). */
  length: number;
  /** Tokens whose K/V are in the cache. */
  computed: number;
  /** KV blocks it holds. */
  blocks: number;
}

export interface QueueState {
  /** Sequences holding KV blocks, oldest admission first. */
  running: readonly SeqView[];
  /** Sequences waiting for admission, in admission order (preempted ones first). */
  waiting: readonly SeqView[];
  freeBlocks: number;
  /** Token budget of one iteration. */
  maxTokens: number;
  /** Most sequences running at once (= most rows of one iteration). */
  maxSeqs: number;
}

export interface PlannedEntry {
  id: number;
  /** Tokens to run from `computed` on. */
  count: number;
  /** The chunk reaches the sequence's last token: its logits are sampled. */
  sample: boolean;
}

export interface IterationPlan {
  /** Batch rows in order: running sequences first, then admitted ones. */
  entries: PlannedEntry[];
  /** Running sequences to free and requeue at the front of the waiting queue, newest first. */
  preempted: number[];
  /** Waiting sequences that start running this iteration (in entries too). */
  admitted: number[];
}

function entryFor(s: SeqView, budget: number): PlannedEntry {
  const count = Math.min(s.length - s.computed, budget);
  return { id: s.id, count, sample: s.computed + count === s.length };
}

function extraBlocks(s: SeqView, count: number): number {
  return Math.max(0, blocksForLength(s.computed + count) - s.blocks);
}

export function planIteration(q: QueueState): IterationPlan {
  const entries: PlannedEntry[] = [];
  const preempted: number[] = [];
  const admitted: number[] = [];
  const running = [...q.running];
  let budget = q.maxTokens;
  let free = q.freeBlocks;

  for (let i = 0; i < running.length && budget > 0; i++) {
    const s = running[i];
    if (s.length <= s.computed) continue; // nothing to run (cannot happen in the engine: defensive)
    const e = entryFor(s, budget);
    const need = extraBlocks(s, e.count);
    while (need > free && running.length > i) {
      const victim = running.pop()!;
      preempted.push(victim.id);
      free += victim.blocks;
    }
    if (running.length === i) break; // s itself was preempted
    entries.push(e);
    free -= need;
    budget -= e.count;
  }

  if (preempted.length === 0) {
    let slots = q.maxSeqs - running.length;
    for (const w of q.waiting) {
      if (budget === 0 || slots === 0) break;
      const e = entryFor(w, budget);
      const need = extraBlocks(w, e.count);
      if (need > free) break;
      entries.push(e);
      admitted.push(w.id);
      free -= need;
      budget -= e.count;
      slots--;
    }
  }
  return { entries, preempted, admitted };
}
