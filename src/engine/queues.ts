/**
 * The engine's request queues: running requests (holding KV blocks and a sequence slot) and waiting
 * ones (admission order, preempted first), their plain views for the planner, and the plan's
 * preemptions and admissions applied back to them. With the prefix cache, a waiting request that
 * could be admitted shows the prefix it would reuse, and admission takes it (src/engine/prefix.ts).
 */
import { BLOCK_SIZE, NO_BLOCK } from '../kv/layout.ts';
import type { BlockPool } from '../kv/pool.ts';
import type { IterationPlan, RequestView } from '../scheduler/types.ts';
import { releaseSequence, type SequenceState } from './batch.ts';
import type { PrefixReuse } from './prefix.ts';
import type { Request } from './request.ts';
import type { GpuSampler } from './sampler.ts';

export interface QueueDeps {
  maxSeqs: number;
  pool: BlockPool;
  prefix: PrefixReuse | null;
  /** Its seen-token table gets an admitted request's row. */
  sampler: GpuSampler;
  now: () => number;
  /** A running request that finished or was aborted left the batch (the stats record). */
  onRetired: (r: Request) => void;
}

export class RequestQueues {
  /** Holding blocks, oldest admission first. */
  running: Request[] = [];
  /** In admission order (preempted ones first). */
  waiting: Request[] = [];
  /** Requests preempted so far. */
  preemptions = 0;
  /** Free sequence slots (rows of the sampler's seen table), lowest last. */
  private freeSlots: number[];

  constructor(private readonly d: QueueDeps) {
    this.freeSlots = allSlots(d.maxSeqs);
  }

  get empty(): boolean {
    return this.running.length === 0 && this.waiting.length === 0;
  }

  /** The planner's views of both queues. */
  views(): { running: RequestView[]; waiting: RequestView[] } {
    return { running: this.running.map((r) => this.runningView(r)), waiting: this.waitingViews() };
  }

  /** A running request as the planner sees it, with the blocks preempting it would free. */
  private runningView(r: Request): RequestView {
    return { id: r.id, length: r.seq.tokens.length, computed: r.seq.computed, blocks: r.seq.blocks.length, arrivedAt: r.createdAt, exclusiveBlocks: this.exclusiveBlocks(r.seq) };
  }

  /** Blocks of `seq` that releasing it would return to the pool (shared ones and freed holes stay as they are). */
  private exclusiveBlocks(seq: SequenceState): number {
    let n = 0;
    for (const b of seq.blocks) if (b !== NO_BLOCK && this.d.pool.refCount(b) === 1) n++;
    return n;
  }

  /**
   * Waiting requests as the planner sees them: with the prefix cache, the first ones that could be
   * admitted now (free slots) show the prefix they would reuse as computed tokens and held blocks.
   */
  private waitingViews(): RequestView[] {
    const admissible = this.d.maxSeqs - this.running.length;
    const prefix = this.d.prefix;
    return this.waiting.map((r, i) => {
      const v: RequestView = { id: r.id, length: r.seq.tokens.length, computed: 0, blocks: 0, arrivedAt: r.createdAt };
      if (prefix && i < admissible) {
        const m = prefix.peek(r.seq);
        v.computed = m.blocks.length * BLOCK_SIZE;
        v.blocks = m.blocks.length;
        v.cachedFree = m.free;
      }
      return v;
    });
  }

  /** Drop a running request from the batch state: blocks and slot back. */
  private retire(r: Request): void {
    releaseSequence(r.seq, this.d.pool);
    if (r.slot >= 0) this.freeSlots.push(r.slot);
    r.slot = -1;
    this.running.splice(this.running.indexOf(r), 1);
  }

  /** Running requests that finished or were aborted leave the batch (blocks and slot back). */
  reapFinished(): void {
    for (const r of [...this.running]) {
      if (r.aborted || r.finished) {
        this.retire(r);
        r.finish('abort'); // no-op when it already finished
        this.d.onRetired(r);
      }
    }
  }

  /** Apply the plan's preemptions and admissions. */
  applyPlan(plan: IterationPlan): void {
    const byId = new Map(this.running.map((r) => [r.id, r]));
    const requeued = plan.preempted.map((id) => byId.get(id)!);
    for (const r of requeued) this.retire(r);
    this.preemptions += requeued.length;
    // Preempted newest first: put them back oldest first, ahead of everyone waiting.
    this.waiting.unshift(...requeued.reverse());
    for (const id of plan.admitted) {
      const r = this.waiting.find((w) => w.id === id)!;
      this.waiting.splice(this.waiting.indexOf(r), 1);
      // The prefix the planner saw (nothing allocated since the plan, so the match is the same).
      if (this.d.prefix) {
        const reused = this.d.prefix.admit(r.seq, r.reuse, r.promptIds.length, r.scheduledAt < 0);
        if (r.scheduledAt < 0) r.cachedTokens = Math.min(reused, r.promptIds.length);
      }
      this.running.push(r);
      r.slot = this.freeSlots.pop()!;
      if (r.seen) this.d.sampler.writeSeen(r.slot, r.seen.pack());
      if (r.scheduledAt < 0) r.scheduledAt = this.d.now();
    }
  }

  /** Fail every request (blocks back) and reset the slots. */
  failAll(e: unknown): void {
    for (const r of [...this.running, ...this.waiting]) {
      if (r.seq.blocks.length) releaseSequence(r.seq, this.d.pool);
      r.fail(e);
    }
    this.running = [];
    this.waiting = [];
    this.freeSlots = allSlots(this.d.maxSeqs);
  }
}

function allSlots(n: number): number[] {
  return Array.from({ length: n }, (_, i) => n - 1 - i);
}
