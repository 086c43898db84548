/**
 * The rollback guard-rail (the engine's learner with `guard` on, and `mace bench drift`): a new adapter version is served only if it has not
 * become notably worse on ANCHORS, held-out pairs the user agreed with (feedback pairs kept out of
 * training). After each new version the runner measures its anchor reward accuracy
 * (metrics.ts rewardAccuracy, `accuracy`: ties half) and asks decide():
 *
 * THE RULE. On anchor set S, the reference is the best anchor accuracy of any promoted version
 * measured on S, where "measured on S" means decided on S (with enough anchors) or rebased on S;
 * while the base model serves (nothing promoted yet) its exact 0.5 counts on every set (adapter =
 * base: every pair a tie). A version is
 *   - promoted when fewer than minAnchors (default 8) anchors were evaluated, or none (accuracy
 *     null) ('too-few-anchors': one pair more or less moves a small set's accuracy by more than the
 *     threshold); such an accuracy never becomes a reference;
 *   - promoted when S has no reference ('no-reference': the version that a rollback would restore
 *     was never measured on S);
 *   - ROLLED BACK when accuracy < reference − threshold (default 0.1; compared with 1e-9 slack, so
 *     0.7 against 0.8 − 0.1 is not a drop): the promoted version stays in service, the candidate is
 *     recorded and dropped ('below-reference');
 *   - promoted otherwise ('within-threshold').
 *
 * WHY RELATIVE TO ONE ANCHOR SET, AND NO ABSOLUTE FLOOR. The preference drifts: right after a drift
 * the anchors gathered under the new rule are ones the served adapter (trained on the old rule) gets
 * wrong, so every version is below 0.5 for a while and an absolute floor would roll back every step
 * of the adaptation. Accuracies on different anchor sets are not comparable either (the best one on
 * the old anchors would block the new preference forever). So comparisons stay within one set:
 * when the runner changes the anchor set (it should, as new agreed pairs arrive: e.g. the last N),
 * it measures the promoted version on the new set and calls rebase(); a set without a reference
 * does not guard. Known limit: a slide of less than `threshold` per set refresh is not caught.
 */
import { LearnError } from './errors.ts';

/** Bad input to the guard: names the field. */
export class AnchorGuardError extends LearnError {
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super('bad-anchor-guard', `${field} ${detail}`);
  }
}

/** A number in [0, 1], else an AnchorGuardError naming `field`. */
function unitInterval(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new AnchorGuardError(field, `= ${String(v)}; it must be a finite number`);
  if (v < 0 || v > 1) throw new AnchorGuardError(field, `= ${v}; it must be in [0, 1]`);
  return v;
}

export type GuardDecision = 'promote' | 'rollback';
export type GuardReason = 'too-few-anchors' | 'no-reference' | 'within-threshold' | 'below-reference';

export interface AnchorGuardOptions {
  /** Largest tolerated drop below the reference, in [0, 1]. Default 0.1. */
  threshold?: number;
  /** Anchors needed to judge (integer >= 1). Default 8. */
  minAnchors?: number;
}

/** The anchor set an accuracy was measured on. */
export interface AnchorSetInfo {
  /** Anchor pairs evaluated. */
  pairs: number;
  /** Id of the anchor set (same id: same pairs). Default 'anchors'. */
  set?: string;
}

export interface GuardDecisionRecord {
  kind: 'decision';
  version: number;
  /** null: not measured (no anchors). */
  accuracy: number | null;
  pairs: number;
  set: string;
  /** The reference it was compared with (null: none). */
  reference: number | null;
  decision: GuardDecision;
  reason: GuardReason;
  /** The version in service after the decision (null: the base model). */
  serving: number | null;
}

export interface GuardRebaseRecord {
  kind: 'rebase';
  /** The promoted version measured on the new set (null: the base model). */
  version: number | null;
  accuracy: number;
  pairs: number;
  set: string;
}

export type GuardRecord = GuardDecisionRecord | GuardRebaseRecord;

/** Accuracies are multiples of 1/(2·pairs): this slack only absorbs rounding (0.8 − 0.1). */
const SLACK = 1e-9;
const DEFAULT_SET = 'anchors';

function anchorInfo(a: AnchorSetInfo): { pairs: number; set: string } {
  if (typeof a !== 'object' || a === null) throw new AnchorGuardError('anchors', 'must be { pairs, set? }');
  if (!Number.isInteger(a.pairs) || a.pairs < 0) throw new AnchorGuardError('anchors.pairs', `= ${String(a.pairs)}; it must be an integer >= 0`);
  const set = a.set ?? DEFAULT_SET;
  if (typeof set !== 'string' || set === '') throw new AnchorGuardError('anchors.set', 'must be a non-empty string');
  return { pairs: a.pairs, set };
}

export class AnchorGuard {
  readonly threshold: number;
  readonly minAnchors: number;
  private serving: number | null = null;
  private lastVersion: number | null = null;
  private readonly records: GuardRecord[] = [];
  /** Per anchor set: the anchor accuracies of promoted versions measured on it. */
  private readonly measured = new Map<string, number[]>();

  constructor(o: AnchorGuardOptions = {}) {
    if (typeof o !== 'object' || o === null) throw new AnchorGuardError('options', 'must be an object { threshold?, minAnchors? }');
    this.threshold = unitInterval(o.threshold ?? 0.1, 'threshold');
    const m = o.minAnchors ?? 8;
    if (!Number.isInteger(m) || m < 1) throw new AnchorGuardError('minAnchors', `= ${String(m)}; it must be an integer >= 1`);
    this.minAnchors = m;
  }

  /** The version in service (null: the base model, nothing promoted yet). */
  get current(): number | null {
    return this.serving;
  }

  /** Every decision and rebase, in call order. */
  get history(): readonly GuardRecord[] {
    return this.records;
  }

  /** Promoted versions, oldest first. */
  get promoted(): number[] {
    return this.records.flatMap((r) => (r.kind === 'decision' && r.decision === 'promote' ? [r.version] : []));
  }

  /** The reference on `set` (see the file comment), or null. */
  reference(set = DEFAULT_SET): number | null {
    const known = [...(this.measured.get(set) ?? []), ...(this.serving === null ? [0.5] : [])];
    return known.length === 0 ? null : Math.max(...known);
  }

  /**
   * Promote or roll back adapter `version` given its anchor accuracy. Versions are integers >= 1,
   * never decreasing (deciding a rolled-back version again, e.g. on more anchors, is allowed).
   * anchorAccuracy null: not measured (no anchors yet), promoted as 'too-few-anchors'. `anchors`
   * omitted: the caller vouches for enough pairs (minAnchors) on one fixed set ('anchors'); pass the
   * count and a set id whenever the anchor set can change.
   */
  decide(version: number, anchorAccuracy: number | null, anchors?: AnchorSetInfo): GuardDecision {
    if (!Number.isInteger(version) || version < 1) throw new AnchorGuardError('version', `= ${String(version)}; it must be an integer >= 1`);
    if (this.lastVersion !== null && version < this.lastVersion) throw new AnchorGuardError('version', `= ${version}; versions must not decrease (last decided: ${this.lastVersion})`);
    const accuracy = anchorAccuracy === null ? null : unitInterval(anchorAccuracy, 'anchorAccuracy');
    const info = anchorInfo(anchors ?? { pairs: this.minAnchors });
    const set = info.set;
    const pairs = accuracy === null ? 0 : info.pairs;
    const judged = accuracy !== null && pairs >= this.minAnchors ? accuracy : null;
    const reference = judged === null ? null : this.reference(set);
    let reason: GuardReason;
    if (judged === null) reason = 'too-few-anchors';
    else if (reference === null) reason = 'no-reference';
    else reason = judged < reference - this.threshold - SLACK ? 'below-reference' : 'within-threshold';
    const decision: GuardDecision = reason === 'below-reference' ? 'rollback' : 'promote';
    if (decision === 'promote') {
      this.serving = version;
      // Only a judged accuracy becomes a reference: one of too few anchors is noise.
      if (judged !== null) this.remember(set, judged);
    }
    this.lastVersion = version;
    this.records.push({ kind: 'decision', version, accuracy, pairs, set, reference, decision, reason, serving: this.serving });
    return decision;
  }

  /**
   * The version in service, measured on a new anchor set: its accuracy becomes that set's reference
   * (not with fewer than minAnchors pairs: too few to compare with).
   */
  rebase(anchorAccuracy: number, anchors: AnchorSetInfo): void {
    const accuracy = unitInterval(anchorAccuracy, 'anchorAccuracy');
    const { pairs, set } = anchorInfo(anchors);
    if (pairs >= this.minAnchors) this.remember(set, accuracy);
    this.records.push({ kind: 'rebase', version: this.serving, accuracy, pairs, set });
  }

  private remember(set: string, accuracy: number): void {
    const list = this.measured.get(set) ?? [];
    list.push(accuracy);
    this.measured.set(set, list);
  }
}
