import { describe, expect, it } from 'vitest';
import { parseArgs, UsageError } from '../../bin/args.mjs';

describe('mace bench serve arguments', () => {
  it('the bare command is a complete benchmark: every policy, a 30% retrain trace, the default model', () => {
    expect(parseArgs(['bench', 'serve'])).toEqual({
      command: 'bench-serve', policies: ['mace', 'inference-only', 'periodic', 'sync'], trace: undefined, rates: [0.3], model: 'stories260k', dtype: 'f32',
      duration: 60, load: 0.3, promptTokens: { min: 8, max: 24 }, answerTokens: { min: 8, max: 24 }, horizon: 2, seed: 1, budgetMultiple: 1.5, rank: 8, ablations: [], maxSeqs: 8, records: undefined, unloaded: undefined, json: false, out: undefined, runtime: 'browser',
    });
  });

  it('takes policies, rates, lengths and the runtime', () => {
    const o = parseArgs(['bench', 'serve', '--policy', 'mace,sync', '--rates', '0.1,0.5', '--answer-tokens', '16-32', '--node', '--json']);
    expect(o).toMatchObject({ policies: ['mace', 'sync'], rates: [0.1, 0.5], answerTokens: { min: 16, max: 32 }, runtime: 'node', json: true });
  });

  it('refuses bad values with a message naming the option', () => {
    expect(() => parseArgs(['bench', 'serve', '--policy', 'fifo'])).toThrow(UsageError);
    expect(() => parseArgs(['bench', 'serve', '--policy', 'fifo'])).toThrow(/--policy takes mace, inference-only, periodic, sync/);
    expect(() => parseArgs(['bench', 'serve', '--rates', '1.5'])).toThrow(/rates/);
    expect(() => parseArgs(['bench', 'serve', '--prompt-tokens', '9-3'])).toThrow(/--prompt-tokens takes MIN-MAX/);
    expect(() => parseArgs(['bench', 'serve', '--trace', 't.json', '--load', '2'])).toThrow(/--load shapes a generated trace/);
    expect(() => parseArgs(['bench', 'serve', '--model', 'gpt5'])).toThrow(/--model takes/);
  });
});
