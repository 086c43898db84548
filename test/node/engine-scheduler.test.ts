import { describe, expect, it } from 'vitest';
import { candidatesFor } from '../../src/engine/sampler.ts';
import { CostModel } from '../../src/scheduler/cost-model.ts';
import { planIteration as plan } from '../../src/scheduler/planner.ts';
import type { IterationPlan as FullPlan } from '../../src/scheduler/types.ts';
import { defaultSchedulerConfig, type RequestView, type SchedulerState } from '../../src/scheduler/types.ts';

// The token-budget and KV-block rules of the MACE planner, with no time budget and no fine-tuning:
// what continuous batching alone does (the planner's time and fine-tune rules: scheduler-plan.test.ts).
type QueueState = Omit<SchedulerState, 'now' | 'finetune' | 'finetuneAllowed' | 'finetuneArenaBytes'>;
const s = (id: number, length: number, computed = 0, blocks = 0): RequestView => ({ id, length, computed, blocks, arrivedAt: id });
const q = (over: Partial<QueueState>): QueueState => ({ running: [], waiting: [], freeBlocks: 100, maxTokens: 64, maxSeqs: 8, ...over });

function planIteration(state: QueueState): Pick<FullPlan, 'preempted' | 'admitted'> & { entries: { id: number; count: number; sample: boolean }[] } {
  const p = plan({ ...state, now: 1000, finetune: [], finetuneAllowed: false, finetuneArenaBytes: 0 }, defaultSchedulerConfig('mace', Infinity), new CostModel());
  return { entries: p.entries.map(({ id, count, sample }) => ({ id, count, sample })), preempted: p.preempted, admitted: p.admitted };
}

describe('planIteration', () => {
  it('runs decodes first, then a prefill chunk of the first waiting prompt within the token budget', () => {
    const plan = planIteration(q({ running: [s(1, 10, 9, 1), s(2, 20, 19, 2)], waiting: [s(3, 50), s(4, 5)], freeBlocks: 10, maxTokens: 32 }));
    expect(plan).toEqual({
      entries: [
        { id: 1, count: 1, sample: true },
        { id: 2, count: 1, sample: true },
        { id: 3, count: 30, sample: false },
      ],
      preempted: [],
      admitted: [3],
    });
  });

  it('continues a chunked prefill to the end of the prompt, then admits the next', () => {
    const plan = planIteration(q({ running: [s(3, 50, 30, 2)], waiting: [s(4, 5)], maxTokens: 32 }));
    expect(plan.entries).toEqual([
      { id: 3, count: 20, sample: true },
      { id: 4, count: 5, sample: true },
    ]);
    expect(plan.admitted).toEqual([4]);
  });

  it('admits several short prompts in FIFO order', () => {
    const plan = planIteration(q({ waiting: [s(1, 3), s(2, 4), s(3, 5)], maxTokens: 8 }));
    expect(plan.entries).toEqual([
      { id: 1, count: 3, sample: true },
      { id: 2, count: 4, sample: true },
      { id: 3, count: 1, sample: false },
    ]);
    expect(plan.admitted).toEqual([1, 2, 3]);
  });

  it('preempts the newest running sequence when blocks run out, and admits nobody that iteration', () => {
    // 1 crosses into a second block (position 16) with no free block: 3 (newest) is preempted, its 1 block frees room.
    const plan = planIteration(q({ running: [s(1, 17, 16, 1), s(2, 5, 4, 1), s(3, 6, 5, 1)], waiting: [s(4, 2)], freeBlocks: 0 }));
    expect(plan).toEqual({ entries: [{ id: 1, count: 1, sample: true }, { id: 2, count: 1, sample: true }], preempted: [3], admitted: [] });
  });

  it('preempts several, newest first, until the oldest fits', () => {
    const plan = planIteration(q({ running: [s(1, 40, 32, 2), s(2, 5, 4, 1), s(3, 6, 5, 1)], freeBlocks: 0 }));
    // 1 needs blocksFor(40) - 2 = 1 more: preempting 3 frees one.
    expect(plan.preempted).toEqual([3]);
    const plan2 = planIteration(q({ running: [s(1, 64, 16, 1), s(2, 5, 4, 1), s(3, 6, 5, 1)], freeBlocks: 0 }));
    // 1's next token needs 1 more block: preempting 3 frees it, and 1 runs the chunk that block holds.
    expect(plan2).toEqual({ entries: [{ id: 2, count: 1, sample: true }, { id: 1, count: 16, sample: false }], preempted: [3], admitted: [] });
    const plan3 = planIteration(q({ running: [s(1, 64, 16, 1), s(2, 17, 16, 1), s(3, 33, 32, 2)], freeBlocks: 0 }));
    // each needs a block for its next token: preempting 3 frees 2, one reserved for 1, one for 2's decode
    expect(plan3).toEqual({ entries: [{ id: 2, count: 1, sample: true }, { id: 1, count: 16, sample: false }], preempted: [3], admitted: [] });
    const plan4 = planIteration(q({ running: [s(1, 64, 16, 1), s(2, 17, 16, 1), s(3, 6, 5, 1)], freeBlocks: 0 }));
    // 3 frees one block (reserved for 1); 2 then needs one more and is the newest left: it goes,
    // and its block lets 1 run a 32-token chunk
    expect(plan4).toEqual({ entries: [{ id: 1, count: 32, sample: false }], preempted: [3, 2], admitted: [] });
  });

  it('never preempts a sequence already planned this iteration', () => {
    const plan = planIteration(q({ running: [s(1, 5, 4, 1), s(2, 17, 16, 1)], freeBlocks: 0 }));
    expect(plan).toEqual({ entries: [{ id: 1, count: 1, sample: true }], preempted: [2], admitted: [] });
  });

  it('does not let a short prompt overtake a long one that does not fit', () => {
    const plan = planIteration(q({ waiting: [s(1, 60), s(2, 3)], freeBlocks: 2, maxTokens: 64 }));
    expect(plan).toEqual({ entries: [], preempted: [], admitted: [] });
  });

  it('respects the sequence cap and the token budget', () => {
    const capped = planIteration(q({ running: [s(1, 3, 2, 1), s(2, 3, 2, 1)], waiting: [s(3, 2), s(4, 2)], maxSeqs: 3 }));
    expect(capped.admitted).toEqual([3]);
    const tight = planIteration(q({ running: [s(1, 3, 2, 1), s(2, 3, 2, 1), s(3, 3, 2, 1)], waiting: [s(4, 2)], maxTokens: 2 }));
    expect(tight.entries.map((e) => e.id)).toEqual([1, 2]);
    expect(tight.admitted).toEqual([]);
  });

  it('readmits a preempted sequence with all its tokens as a prefill (recompute)', () => {
    const plan = planIteration(q({ waiting: [s(7, 23)], maxTokens: 16 }));
    expect(plan.entries).toEqual([{ id: 7, count: 16, sample: false }]);
  });
});

// With the prefix cache, a waiting request shows the prefix it would reuse as computed tokens and
// held blocks; `cachedFree` of those blocks are free in the pool (admission takes them), the rest
// are shared with running sequences. A running sequence frees only its `exclusiveBlocks` when preempted.
describe('planIteration with cached prefixes', () => {
  const cached = (id: number, length: number, blocks: number, cachedFree: number): RequestView => ({ ...s(id, length, blocks * 16, blocks), cachedFree });

  it('prefills only the uncached rest of a prompt, and samples it', () => {
    const plan = planIteration(q({ waiting: [cached(1, 40, 2, 0)], freeBlocks: 1 }));
    expect(plan).toEqual({ entries: [{ id: 1, count: 8, sample: true }], preempted: [], admitted: [1] });
  });

  it('runs a prompt cached up to its last token as one decode row', () => {
    const p = plan({ ...q({ waiting: [cached(1, 33, 2, 2)], freeBlocks: 3 }), now: 1000, finetune: [], finetuneAllowed: false, finetuneArenaBytes: 0 }, defaultSchedulerConfig('mace', Infinity), new CostModel());
    expect(p.entries).toEqual([{ id: 1, count: 1, sample: true, kind: 'decode' }]);
    // Its third block (position 32) is new; the two cached ones were free and are revived, not allocated.
    expect(p.blocks).toEqual(1);
  });

  it('counts free cached blocks against the free pool, shared ones not at all', () => {
    // 3 cached blocks, all free, + 1 new block for tokens 48..49: needs 4 free, only 3.
    expect(planIteration(q({ waiting: [cached(1, 50, 3, 3)], freeBlocks: 3 })).admitted).toEqual([]);
    // The same prompt with its cached blocks shared by a running sequence: only the new block counts.
    expect(planIteration(q({ waiting: [cached(1, 50, 3, 0)], freeBlocks: 1 }))).toEqual({ entries: [{ id: 1, count: 2, sample: true }], preempted: [], admitted: [1] });
  });

  it('sizes a chunk by the blocks left after reviving the free cached ones', () => {
    // 1 cached free block revived leaves 1 free block: 16 more tokens (16..31) of the 100.
    expect(planIteration(q({ waiting: [cached(1, 100, 1, 1)], freeBlocks: 2, maxTokens: 16 })).entries).toEqual([{ id: 1, count: 16, sample: false }]);
    // Two waiting prompts: the second must also fit what the first took.
    const plan = planIteration(q({ waiting: [cached(1, 20, 1, 1), cached(2, 20, 1, 1)], freeBlocks: 3 }));
    expect(plan.admitted).toEqual([1]);
  });

  it('preempts until enough EXCLUSIVE blocks free up (shared blocks stay in use)', () => {
    // 1 needs a block; 3 holds 2 blocks but both are shared (0 exclusive): preempting it frees none, so 2 goes too.
    const running = [s(1, 33, 32, 2), { ...s(2, 20, 19, 2), exclusiveBlocks: 1 }, { ...s(3, 20, 19, 2), exclusiveBlocks: 0 }];
    expect(planIteration(q({ running, freeBlocks: 0 }))).toEqual({ entries: [{ id: 1, count: 1, sample: true }], preempted: [3, 2], admitted: [] });
  });
});

describe('candidatesFor', () => {
  const limits = { candidates: 64, topLogprobs: 20 };
  const row = (temperature: number, topK = 0) => ({ settings: { temperature, topP: 1, minP: 0, topK } });
  it('takes 1 candidate for greedy batches, the rounded-up top_k, or all candidates', () => {
    expect(candidatesFor([row(0), row(0)], false, limits)).toBe(1);
    expect(candidatesFor([row(0), row(0.7, 5)], false, limits)).toBe(8);
    expect(candidatesFor([row(0.7, 5), row(1)], false, limits)).toBe(64);
    expect(candidatesFor([row(0)], true, limits)).toBe(32);
    expect(candidatesFor([row(1, 40)], false, { candidates: 48, topLogprobs: 20 })).toBe(48);
  });
});
