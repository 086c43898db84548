/**
 * The anchor guard (bench/drift/guard.ts): promote or roll back each adapter version by its anchor
 * accuracy against the best promoted version measured on the same anchor set; every step stated.
 */
import { describe, expect, it } from 'vitest';
import { AnchorGuard } from '../../bench/drift/guard.ts';

const A = { pairs: 10, set: 'A' };

describe('AnchorGuard', () => {
  it('defaults: threshold 0.1, minAnchors 8; the base serves, exactly 0.5 on any set', () => {
    const g = new AnchorGuard();
    expect([g.threshold, g.minAnchors, g.current, g.reference('A'), g.reference('anything')]).toEqual([0.1, 8, null, 0.5, 0.5]);
    expect(g.history).toEqual([]);
  });

  it('rolls back a version more than threshold below the best promoted one on the set, step by step', () => {
    const g = new AnchorGuard();
    expect(g.decide(1, 0.35, A)).toBe('rollback'); // 0.35 < 0.5 (base) − 0.1: the base keeps serving
    expect(g.current).toBeNull();
    expect(g.decide(2, 0.6, A)).toBe('promote'); //    0.6 >= 0.4
    expect(g.reference('A')).toBe(0.6);
    expect(g.decide(3, 0.8, A)).toBe('promote');
    expect(g.decide(4, 0.7, A)).toBe('promote'); //    exactly 0.8 − 0.1: tolerated (not a float artefact)
    expect(g.reference('A')).toBe(0.8); //             the best, not the last
    expect(g.decide(5, 0.65, A)).toBe('rollback'); //  0.65 < 0.7: version 4 keeps serving
    expect(g.current).toBe(4);
    expect(g.decide(5, 0.75, A)).toBe('promote'); //   the same version again (more training or anchors) may be decided
    expect(g.promoted).toEqual([2, 3, 4, 5]);
    expect(g.history).toEqual([
      { kind: 'decision', version: 1, accuracy: 0.35, pairs: 10, set: 'A', reference: 0.5, decision: 'rollback', reason: 'below-reference', serving: null },
      { kind: 'decision', version: 2, accuracy: 0.6, pairs: 10, set: 'A', reference: 0.5, decision: 'promote', reason: 'within-threshold', serving: 2 },
      { kind: 'decision', version: 3, accuracy: 0.8, pairs: 10, set: 'A', reference: 0.6, decision: 'promote', reason: 'within-threshold', serving: 3 },
      { kind: 'decision', version: 4, accuracy: 0.7, pairs: 10, set: 'A', reference: 0.8, decision: 'promote', reason: 'within-threshold', serving: 4 },
      { kind: 'decision', version: 5, accuracy: 0.65, pairs: 10, set: 'A', reference: 0.8, decision: 'rollback', reason: 'below-reference', serving: 4 },
      { kind: 'decision', version: 5, accuracy: 0.75, pairs: 10, set: 'A', reference: 0.8, decision: 'promote', reason: 'within-threshold', serving: 5 },
    ]);
  });

  it('too few anchors (or none measured) promotes without becoming a reference', () => {
    const g = new AnchorGuard({ threshold: 0.1, minAnchors: 8 });
    g.decide(1, 0.9, A);
    expect(g.decide(2, 0.1, { pairs: 7, set: 'A' })).toBe('promote');
    expect(g.decide(3, null)).toBe('promote');
    expect(g.reference('A')).toBe(0.9);
    expect(g.history.slice(1)).toEqual([
      { kind: 'decision', version: 2, accuracy: 0.1, pairs: 7, set: 'A', reference: null, decision: 'promote', reason: 'too-few-anchors', serving: 2 },
      { kind: 'decision', version: 3, accuracy: null, pairs: 0, set: 'anchors', reference: null, decision: 'promote', reason: 'too-few-anchors', serving: 3 },
    ]);
    expect(g.decide(4, 0.75, A)).toBe('rollback'); // 0.75 < 0.9 − 0.1
    expect(g.current).toBe(3);
  });

  it('a new anchor set: no reference until the serving version is measured on it (rebase); then guarded', () => {
    const g = new AnchorGuard();
    g.decide(1, 0.9, A); // phase 1: the adapter learnt the old preference
    const B = { pairs: 12, set: 'B' }; // after the drift: anchors of the new preference
    expect(g.reference('B')).toBeNull(); // version 1 was never measured on B
    g.rebase(0.2, B); // version 1 gets most new anchors wrong
    expect(g.reference('B')).toBe(0.2);
    expect(g.decide(2, 0.25, B)).toBe('promote'); // adapting: well below the old 0.9 on A, and that is fine
    expect(g.decide(3, 0.1, B)).toBe('rollback'); // 0.1 < 0.25 − 0.1
    expect(g.current).toBe(2);
    expect(g.decide(4, 0.45, { pairs: 9, set: 'C' })).toBe('promote'); // no rebase on C: the guard cannot judge
    expect(g.history.at(-1)).toMatchObject({ reason: 'no-reference', reference: null, set: 'C' });
    expect(g.history[1]).toEqual({ kind: 'rebase', version: 1, accuracy: 0.2, pairs: 12, set: 'B' });
    g.rebase(0.99, { pairs: 3, set: 'D' }); // too few anchors to be a reference
    expect(g.reference('D')).toBeNull();
  });

  it('anchors omitted: one fixed set with enough pairs; threshold 0 rolls back any drop', () => {
    const g = new AnchorGuard({ threshold: 0 });
    expect([g.decide(1, 0.5), g.decide(2, 0.5625), g.decide(3, 0.5), g.decide(4, 0.5625)]).toEqual(['promote', 'promote', 'rollback', 'promote']);
    expect(g.history.map((r) => (r.kind === 'decision' ? [r.set, r.pairs, r.reference] : null))).toEqual([['anchors', 8, 0.5], ['anchors', 8, 0.5], ['anchors', 8, 0.5625], ['anchors', 8, 0.5625]]);
  });

  it('bad options and inputs are typed errors (AnchorGuardError) naming the field', () => {
    expect(() => new AnchorGuard({ threshold: 1.5 })).toThrow(expect.objectContaining({ field: 'threshold' }));
    expect(() => new AnchorGuard({ minAnchors: 0 })).toThrow(expect.objectContaining({ field: 'minAnchors' }));
    const g = new AnchorGuard();
    expect(() => g.decide(0, 0.5)).toThrow(expect.objectContaining({ field: 'version' }));
    expect(() => g.decide(1, 1.2)).toThrow(expect.objectContaining({ field: 'anchorAccuracy' }));
    expect(() => g.decide(1, NaN)).toThrow(expect.objectContaining({ field: 'anchorAccuracy' }));
    expect(() => g.decide(1, 0.5, { pairs: -1 })).toThrow(expect.objectContaining({ field: 'anchors.pairs' }));
    expect(() => g.decide(1, 0.5, { pairs: 9, set: '' })).toThrow(expect.objectContaining({ field: 'anchors.set' }));
    g.decide(3, 0.5);
    expect(() => g.decide(2, 0.5)).toThrow(expect.objectContaining({ field: 'version', message: 'version = 2; versions must not decrease (last decided: 3)' }));
    expect(g.history).toHaveLength(1); // a rejected call changes nothing
  });
});
