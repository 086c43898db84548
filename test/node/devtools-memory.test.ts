/** The panel's "GPU memory by owner": memory records are validated, kept (latest wins) and turned into table rows. */
import { describe, expect, it } from 'vitest';
import { StatsAggregator } from '../../src/ui/devtools/aggregate.ts';
import { StatsInputError } from '../../src/ui/devtools/errors.ts';
import { formatBytes, memoryRows } from '../../src/ui/devtools/summary.ts';
import { validateStatsBatch } from '../../src/ui/devtools/validate.ts';
import { memory } from './devtools-fixtures.ts';

describe('memory records', () => {
  it('are validated field by field', () => {
    expect(() => validateStatsBatch({ timeOrigin: 0, records: [memory()] })).not.toThrow();
    const field = (r: unknown) => {
      try {
        validateStatsBatch({ timeOrigin: 0, records: [r] });
      } catch (e) {
        expect(e).toBeInstanceOf(StatsInputError);
        return (e as StatsInputError).field;
      }
      return null;
    };
    expect(field(memory({ bytes: -1 }))).toBe('records[0].bytes');
    expect(field(memory({ byOwner: { kv: { buffers: 1, bytes: Number.NaN } } }))).toBe('records[0].byOwner.kv.bytes');
    expect(field({ ...memory(), byOwner: { kv: 3 } })).toBe('records[0].byOwner.kv');
    expect(field({ type: 'nope', t: 0 })).toBe('records[0].type');
  });

  it('the latest one is the table: owners by bytes, largest first, then the total', () => {
    const a = new StatsAggregator({ pageTimeOrigin: 0 });
    expect(memoryRows(a)).toEqual([]);
    a.ingest({ timeOrigin: 0, records: [memory({ t: 1 }), memory({ t: 2, buffers: 5, bytes: 5000, byOwner: { engine: { buffers: 2, bytes: 1000 }, 'kv-cache': { buffers: 3, bytes: 4000 } } })] });
    expect(memoryRows(a)).toEqual([
      { owner: 'kv-cache', buffers: 3, bytes: 4000 },
      { owner: 'engine', buffers: 2, bytes: 1000 },
      { owner: 'total', buffers: 5, bytes: 5000 },
    ]);
    a.clear();
    expect(memoryRows(a)).toEqual([]);
  });

  it('bytes read as B, KiB, MiB, GiB', () => {
    expect([formatBytes(0), formatBytes(1023), formatBytes(1536), formatBytes(5 * 2 ** 20), formatBytes(3.25 * 2 ** 30)]).toEqual(['0 B', '1023 B', '1.5 KiB', '5 MiB', '3.25 GiB']);
  });
});
