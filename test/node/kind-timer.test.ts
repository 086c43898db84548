import { describe, expect, it } from 'vitest';
import { kindTimes } from '../../src/engine/kind-timer.ts';

describe('kindTimes (GPU time per kind from the marks of one iteration)', () => {
  it('gives each span to the kind that ran after its first mark; spans after an end mark count for nothing', () => {
    // Slice 1: inference 0→2 ms, fine-tune 2→2.5 ms, end at 2.5. Slice 2 starts at 10 ms: fine-tune 10→11, end.
    const marks = ['inference', 'finetune', null, 'finetune', null] as const;
    const ts = BigUint64Array.from([0n, 2_000_000n, 2_500_000n, 10_000_000n, 11_000_000n]);
    expect(kindTimes(marks, ts)).toEqual({ inference: 2, finetune: 1.5 });
  });

  it('counts timestamps that go backwards as 0', () => {
    expect(kindTimes(['inference', null], BigUint64Array.from([5n, 3n]))).toEqual({ inference: 0, finetune: 0 });
  });
});
