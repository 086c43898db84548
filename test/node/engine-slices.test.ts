import { describe, expect, it } from 'vitest';
import { partitionSlices } from '../../src/engine/slices.ts';

describe('partitionSlices', () => {
  it('keeps one group when one slice is asked', () => {
    expect(partitionSlices([1, 2, 3], 1)).toEqual([[0, 1, 2]]);
  });
  it('balances equal parts', () => {
    expect(partitionSlices([1, 1, 1, 1, 1, 1], 3)).toEqual([[0, 1], [2, 3], [4, 5]]);
  });
  it('cuts at cumulative shares of the cost', () => {
    expect(partitionSlices([5, 1, 1, 1, 1, 1], 2)).toEqual([[0], [1, 2, 3, 4, 5]]);
    expect(partitionSlices([1, 1, 1, 1, 1, 5], 2)).toEqual([[0, 1, 2, 3, 4], [5]]);
  });
  it('never makes more groups than parts, nor empty groups', () => {
    expect(partitionSlices([1, 1], 5)).toEqual([[0], [1]]);
    expect(partitionSlices([], 3)).toEqual([]);
    const g = partitionSlices([0, 0, 0, 9, 0], 4);
    expect(g.flat()).toEqual([0, 1, 2, 3, 4]);
    expect(g.length).toBe(4);
    expect(g.every((x) => x.length > 0)).toBe(true);
  });
});
