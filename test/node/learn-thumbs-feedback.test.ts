/**
 * The mixing rule of feedback → training data: a rated answer that no pair of its context uses is an
 * unpaired thumb (KTO's example); once its context has an answer rated the other way, the two
 * answers form a DPO pair and the thumbs are withdrawn; a re-rating is a new thumb.
 */
import { describe, expect, it } from 'vitest';
import { FeedbackLog } from '../../src/learn/feedback.ts';

const cat = [{ role: 'user', content: 'Tell me a story about a cat.' }];
const dog = [{ role: 'user', content: 'Tell me a story about a dog.' }];

function clock(start = 1_000_000): () => number {
  let t = start;
  return () => (t += 1000);
}

describe('unpaired thumbs', () => {
  it('single ratings on different contexts are thumbs with their label; none is a pair', () => {
    const log = new FeedbackLog(clock());
    log.recordCompletion({ completionId: 'a', messages: cat, answer: 'The cat played.' });
    log.recordCompletion({ completionId: 'b', messages: dog, answer: 'The dog slept.' });
    const ra = log.rate('a', 'up');
    expect(ra.added).toEqual([]);
    expect(ra.thumbsAdded.map((t) => [t.id, t.label, t.completion])).toEqual([['th-a-up', true, 'The cat played.']]);
    expect(ra.thumbsRemoved).toEqual([]);
    const rb = log.rate('b', 'down');
    expect(rb.thumbsAdded.map((t) => [t.id, t.label])).toEqual([['th-b-down', false]]);
    expect(log.thumbs().map((t) => t.id)).toEqual(['th-a-up', 'th-b-down']);
    expect(log.thumbs()[0].messages).toEqual(cat);
    expect(log.pairs()).toEqual([]);
  });

  it('an opposite rating in the same context turns both thumbs into one pair; undoing it brings them back', () => {
    const log = new FeedbackLog(clock());
    log.recordCompletion({ completionId: 'a', prompt: 'Once upon a time', answer: ' a dog ran.' });
    log.recordCompletion({ completionId: 'b', prompt: 'Once upon a time', answer: ' a girl played.' });
    log.rate('a', 'down');
    const r = log.rate('b', 'up');
    expect(r.added).toHaveLength(1);
    expect(r.thumbsAdded).toEqual([]);
    expect(r.thumbsRemoved.map((t) => t.id)).toEqual(['th-a-down']);
    expect(log.thumbs()).toEqual([]);
    // b rated down too: no opposite rating is left, both are thumbs-down again, the pair goes.
    const back = log.rate('b', 'down');
    expect(back.removed).toHaveLength(1);
    expect(back.thumbsAdded.map((t) => t.id).sort()).toEqual(['th-a-down', 'th-b-down']);
    expect(log.thumbs().map((t) => t.id).sort()).toEqual(['th-a-down', 'th-b-down']);
  });

  it('a re-rating replaces the thumb by a new id; same-text answers rated both ways stay thumbs (they never pair)', () => {
    const log = new FeedbackLog(clock());
    log.recordCompletion({ completionId: 'a', messages: cat, answer: 'Same.' });
    log.recordCompletion({ completionId: 'b', messages: cat, answer: 'Same. ' });
    log.rate('a', 'up');
    const re = log.rate('a', 'down');
    expect(re.thumbsRemoved.map((t) => t.id)).toEqual(['th-a-up']);
    expect(re.thumbsAdded.map((t) => t.id)).toEqual(['th-a-down']);
    log.rate('b', 'up');
    expect(log.pairs()).toEqual([]);
    expect(log.thumbs().map((t) => t.id).sort()).toEqual(['th-a-down', 'th-b-up']);
  });

  it('thumbs are recomputed from stored ratings on restore', () => {
    const log = new FeedbackLog(clock());
    log.recordCompletion({ completionId: 'a', messages: cat, answer: 'The cat played.' });
    log.recordCompletion({ completionId: 'b', messages: dog, answer: 'The dog slept.' });
    log.rate('a', 'up');
    log.rate('b', 'down');
    const { log: again, skipped } = FeedbackLog.restore(JSON.parse(JSON.stringify(log.snapshot())));
    expect(skipped).toEqual([]);
    expect(again.thumbs()).toEqual(log.thumbs());
  });
});
