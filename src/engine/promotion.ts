/**
 * Poisoning guard of on-device learning: a trained adapter version is served only if it has not
 * become notably worse on ANCHORS — pairs the user formed earlier, held back from training — by the
 * rule of src/learn/anchor-guard.ts (promote unless its anchor reward accuracy is more than
 * `threshold` below the best promoted version's on the same anchor set).
 *
 * - Anchors: every `anchorEvery`-th pair the learner is given is held out (kept, not trained). The
 *   first `setSize` form the anchor set; later ones fill the next set, which replaces it once whole
 *   AND the current set has been the reference for `refreshAfterMs` (after the serving version is
 *   measured on it: `rebase`). So the reference follows the user over time — a preference that
 *   really changed — but not over a burst: however many ratings arrive in a few minutes, they are
 *   judged against the anchors the user formed before.
 * - After each applied optimizer step the trained adapter (the candidate) is measured on the anchor
 *   set: reward accuracy = share of anchors whose chosen answer gains more log-probability over the
 *   base model than the rejected one (ties half). Promote: its weights go to the served bank slot.
 *   Roll back: the trained adapter is set back to the promoted weights (the candidate is dropped), and
 *   the served slot never saw it.
 * - Cost: the measurement is two forward passes per anchor (the base model's once per anchor,
 *   cached), run between steps, outside the scheduler's work units: with the default 8 anchors it
 *   delays serving by about 16 short forwards per applied step — the price of the guard, off by
 *   default (anchorEvery 0).
 */
import type { HostAdapter } from '../learn/adapter.ts';
import { AnchorGuard, type GuardDecisionRecord } from '../learn/anchor-guard.ts';
import type { TokenPair } from '../learn/reference.ts';
import type { DpoTrainer, PairLogprobs } from '../learn/trainer.ts';
import type { GuardStatus } from '../scheduler/stats.ts';
import { EngineOptionsError } from './errors.ts';

export interface GuardOptions {
  /** Hold out every N-th pair as an anchor (0: no guard). Default 0. */
  anchorEvery?: number;
  /** Anchors in one set (also the fewest the guard judges on). Default 8. */
  setSize?: number;
  /** Largest tolerated drop of anchor accuracy below the reference. Default 0.1. */
  threshold?: number;
  /** Least time an anchor set stays the reference before a newer whole set may replace it (ms). Default 10 minutes. */
  refreshAfterMs?: number;
}


interface Anchor {
  pair: TokenPair;
  /** The base model's log-probs, once measured. */
  base: PairLogprobs | null;
}

export class Promotion {
  guard: AnchorGuard;
  private readonly threshold: number;
  private readonly every: number;
  private readonly setSize: number;
  private formed = 0;
  private current: Anchor[] = [];
  private next: Anchor[] = [];
  private setId = 0;
  private rolledBack = 0;
  private readonly refreshAfterMs: number;
  /** When the current set became the reference (its first judged use); null: not yet. */
  private setSince: number | null = null;

  constructor(
    o: GuardOptions,
    /** The adapter served while nothing is promoted (the trained adapter's start). */
    public promoted: HostAdapter,
    private readonly now: () => number,
  ) {
    const every = o.anchorEvery ?? 0;
    if (!Number.isInteger(every) || every < 0) throw new EngineOptionsError('learning.guard.anchorEvery', `= ${every} must be an integer >= 0 (0: no guard)`);
    const size = o.setSize ?? 8;
    if (!Number.isInteger(size) || size < 1) throw new EngineOptionsError('learning.guard.setSize', `= ${size} must be a positive integer`);
    this.every = every;
    this.setSize = size;
    this.threshold = o.threshold ?? 0.1;
    this.refreshAfterMs = o.refreshAfterMs ?? 10 * 60_000;
    if (!(this.refreshAfterMs >= 0)) throw new EngineOptionsError('learning.guard.refreshAfterMs', `= ${this.refreshAfterMs} must be a number of ms >= 0`);
    try {
      this.guard = new AnchorGuard({ threshold: this.threshold, minAnchors: size });
    } catch (e) {
      throw new EngineOptionsError('learning.guard.threshold', e instanceof Error ? e.message : String(e));
    }
  }

  /** A pair given to the learner: true when it is held out as an anchor (then it is not trained). */
  holdOut(pair: TokenPair): boolean {
    this.formed++;
    if (this.every === 0 || this.formed % this.every !== 0) return false;
    (this.current.length < this.setSize ? this.current : this.next).push({ pair, base: null });
    return true;
  }

  /**
   * Judge the trained adapter as version `version` (call between steps: it runs forwards on the
   * trainer's arenas). Returns whether it is promoted; on a rollback the caller restores `promoted`.
   */
  async judge(version: number, trainer: DpoTrainer, readTrained: () => Promise<HostAdapter>): Promise<boolean> {
    const measured = this.current.length > 0 ? await accuracy(trainer, this.current) : null;
    const decision = this.guard.decide(version, measured, { pairs: this.current.length, set: `anchors-${this.setId}` });
    if (this.current.length === this.setSize) this.setSince ??= this.now();
    if (decision === 'promote') this.promoted = await readTrained();
    else this.rolledBack++;
    return decision === 'promote';
  }

  /**
   * The next anchor set is whole: measure the serving version on it (the trained adapter must hold
   * the promoted weights, as right after judge) and make it the set. Returns true when it switched.
   */
  async refresh(trainer: DpoTrainer): Promise<boolean> {
    if (this.next.length < this.setSize || this.setSince === null || this.now() - this.setSince < this.refreshAfterMs) return false;
    const set = this.next.splice(0, this.setSize);
    this.guard.rebase(await accuracy(trainer, set), { pairs: set.length, set: `anchors-${this.setId + 1}` });
    this.current = set;
    this.setId++;
    this.setSince = this.now();
    return true;
  }

  /**
   * The adapter was replaced from outside (a saved version, a rollback, an import, a reset): it is
   * the promoted one now, and the guard's references start over (the anchors stay).
   */
  replaced(host: HostAdapter): void {
    this.promoted = host;
    this.guard = new AnchorGuard({ threshold: this.threshold, minAnchors: this.setSize });
  }

  get enabled(): boolean {
    return this.every > 0;
  }

  status(): GuardStatus {
    const h = this.guard.history;
    const last = [...h].reverse().find((r): r is GuardDecisionRecord => r.kind === 'decision') ?? null;
    return {
      anchors: this.current.length, serving: this.guard.current, rolledBack: this.rolledBack,
      last: last && { version: last.version, accuracy: last.accuracy, reference: last.reference, decision: last.decision, reason: last.reason },
    };
  }
}

/** Reward accuracy of the trained adapter on `anchors` (ties half), the base log-probs cached. */
async function accuracy(trainer: DpoTrainer, anchors: Anchor[]): Promise<number> {
  let score = 0;
  for (const a of anchors) {
    a.base ??= await trainer.logprobs(a.pair, false);
    const p = await trainer.logprobs(a.pair, true);
    const chosen = p.chosen - a.base.chosen;
    const rejected = p.rejected - a.base.rejected;
    score += chosen > rejected ? 1 : chosen === rejected ? 0.5 : 0;
  }
  return score / anchors.length;
}
