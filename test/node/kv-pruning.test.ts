/**
 * KV pruning (issue 13): the positional rule of attention sinks + window and the blocks it frees,
 * H2O's eviction bookkeeping with exact expectations, and the CPU pruning experiment's decoder
 * against the reference forward on the real stories260K weights (no pruning = the full cache exactly;
 * H2O with only recent positions = the sinks-window mask with no sinks).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { heavyHitterLogits, sinksWindowLogits } from '../../bench/prune.ts';
import { UNBOUNDED_WINDOW } from '../../src/kernels/attention.ts';
import { attends, checkSinksWindow, deadBlocks, HeavyHitters, PruningError } from '../../src/kv/pruning.ts';
import { parseModelConfig } from '../../src/model/config.ts';
import { hostWeightsFromSafetensors } from '../../src/model/reference.ts';

describe('sinks + window', () => {
  it('a query sees the sinks, then the window ending at itself', () => {
    const w = { sinks: 2, window: 3 };
    expect(Array.from({ length: 11 }, (_, p) => attends(p, 10, w))).toEqual([true, true, false, false, false, false, false, false, true, true, true]);
    expect(attends(11, 10, w)).toBe(false); // causal
  });

  it('frees a block once no later query can reach any position of it, never a sink block', () => {
    // window 20, sinks 4: at the next query 60, positions <= 40 are out of reach: blocks 1 (16..31) only, block 0 holds sinks.
    expect(deadBlocks(60, { sinks: 4, window: 20 })).toEqual([1]);
    // One query later position 41..: still block 1 (block 2 = 32..47 holds 41..47).
    expect(deadBlocks(61, { sinks: 4, window: 20 })).toEqual([1]);
    expect(deadBlocks(68, { sinks: 4, window: 20 })).toEqual([1, 2]);
    // No sinks: block 0 goes too; `from` skips blocks already freed.
    expect(deadBlocks(68, { sinks: 0, window: 20 })).toEqual([0, 1, 2]);
    expect(deadBlocks(68, { sinks: 0, window: 20 }, 2)).toEqual([2]);
    // Sinks spanning two blocks keep both; a window longer than the sequence frees nothing.
    expect(deadBlocks(100, { sinks: 17, window: 20 })).toEqual([2, 3, 4]); // positions <= 80 are out of reach: block 4 = 64..79 too
    expect(deadBlocks(30, { sinks: 0, window: 64 })).toEqual([]);
  });

  it('refuses malformed settings naming the field', () => {
    expect(() => checkSinksWindow({ sinks: -1, window: 4 }, 'kv_window')).toThrow(PruningError);
    expect(() => checkSinksWindow({ sinks: 0, window: 0 }, 'kv_window')).toThrow('kv_window.window = 0');
    expect(() => checkSinksWindow({ sinks: 1.5, window: 4 }, 'kv_window')).toThrow('kv_window.sinks');
  });
});

describe('HeavyHitters', () => {
  it('keeps the recent positions and evicts the older one with the least accumulated attention', () => {
    const hh = new HeavyHitters(1, 3, 1);
    for (const [q, weights] of [
      [0, [1]],
      [1, [0.7, 0.3]],
      [2, [0.5, 0.1, 0.4]],
    ] as const) {
      hh.add(q);
      hh.accumulate(0, weights);
      hh.evict(q);
    }
    expect(hh.positions(0)).toEqual([0, 1, 2]); // within the budget
    hh.add(3);
    hh.accumulate(0, [0.2, 0.1, 0.3, 0.4]); // totals: 0 -> 2.4, 1 -> 0.5, 2 -> 0.7, 3 -> 0.4 (recent)
    hh.evict(3);
    expect(hh.positions(0)).toEqual([0, 2, 3]);
    hh.add(4);
    hh.accumulate(0, [0.1, 0.1, 0.1, 0.7]); // 0 -> 2.5, 2 -> 0.8, 3 -> 0.5, 4 -> 0.7 (recent): 3 goes, though newer
    hh.evict(4);
    expect(hh.positions(0)).toEqual([0, 2, 4]);
  });

  it('refuses a budget or recent count that cannot work', () => {
    expect(() => new HeavyHitters(1, 0, 1)).toThrow(PruningError);
    expect(() => new HeavyHitters(1, 4, 5)).toThrow('recent = 5');
  });
});

describe('the pruning experiment decoder on stories260K', () => {
  const dir = new URL('../../public/models/stories260K/', import.meta.url);
  const config = parseModelConfig(readFileSync(new URL('config.json', dir), 'utf8'));
  const w = hostWeightsFromSafetensors(config, new Uint8Array(readFileSync(new URL('model.safetensors', dir))));
  const tokens = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 300, 290, 310, 320, 330, 340, 350, 360, 370, 380, 390, 400];
  const worst = (a: Float32Array, b: Float32Array) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

  it('with a budget past the sequence it is the full-cache forward', () => {
    const full = sinksWindowLogits(config, w, tokens, 0, UNBOUNDED_WINDOW);
    expect(worst(heavyHitterLogits(config, w, tokens, 64, 32), full)).toBeLessThan(1e-4);
  });

  it('keeping only recent positions is the sinks-window mask with no sinks, and both differ from the full cache', () => {
    const recentOnly = heavyHitterLogits(config, w, tokens, 7, 7);
    const masked = sinksWindowLogits(config, w, tokens, 0, 8);
    expect(worst(recentOnly, masked)).toBeLessThan(1e-4);
    expect(worst(masked, sinksWindowLogits(config, w, tokens, 0, UNBOUNDED_WINDOW))).toBeGreaterThan(1e-2);
  });
});
