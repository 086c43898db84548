/** The panel's "Prefix cache" line: prefix records are validated, kept (latest wins) and written as one sentence. */
import { describe, expect, it } from 'vitest';
import type { PrefixStats } from '../../src/scheduler/stats.ts';
import { StatsAggregator } from '../../src/ui/devtools/aggregate.ts';
import { StatsInputError } from '../../src/ui/devtools/errors.ts';
import { prefixLine } from '../../src/ui/devtools/summary.ts';
import { validateStatsBatch } from '../../src/ui/devtools/validate.ts';

const prefix = (over: Partial<PrefixStats> = {}): PrefixStats => ({ type: 'prefix', t: 5, hits: 30, queries: 40, hitRate: 0.75, cachedBlocks: 12, evictions: 3, invalidated: 2, cachedTokens: 480, promptTokens: 1000, ...over });

describe('prefix records', () => {
  it('are validated field by field', () => {
    expect(() => validateStatsBatch({ timeOrigin: 0, records: [prefix()] })).not.toThrow();
    const field = (r: unknown) => {
      try {
        validateStatsBatch({ timeOrigin: 0, records: [r] });
      } catch (e) {
        expect(e).toBeInstanceOf(StatsInputError);
        return (e as StatsInputError).field;
      }
      return null;
    };
    expect(field(prefix({ hits: -1 }))).toBe('records[0].hits');
    expect(field(prefix({ hitRate: 1.5 }))).toBe('records[0].hitRate');
    expect(field(prefix({ cachedTokens: Number.NaN }))).toBe('records[0].cachedTokens');
    expect(field({ ...prefix(), evictions: '3' })).toBe('records[0].evictions');
  });

  it('request records may carry cachedTokens, checked when present', () => {
    const req = { type: 'request', id: 'req-1', t: 1, arrivedAt: 0, promptTokens: 40, completionTokens: 2, ttftMs: 3, tbtMs: [1], finishReason: 'stop', adapter: null };
    expect(() => validateStatsBatch({ timeOrigin: 0, records: [req, { ...req, cachedTokens: 32 }] })).not.toThrow();
    expect(() => validateStatsBatch({ timeOrigin: 0, records: [{ ...req, cachedTokens: -2 }] })).toThrow('records[0].cachedTokens');
  });

  it('the latest one is the line; none before the first or after clear()', () => {
    const a = new StatsAggregator({ pageTimeOrigin: 0 });
    expect(prefixLine(a)).toBeNull();
    a.ingest({ timeOrigin: 0, records: [prefix({ t: 1, hits: 1 }), prefix()] });
    expect(prefixLine(a)).toBe('Prefix cache: hit rate 75% of 40 prompt blocks · 480 tokens reused (48% of prompt tokens) · 12 blocks cached · 3 evicted · 2 invalidated');
    a.clear();
    expect(prefixLine(a)).toBeNull();
  });
});
