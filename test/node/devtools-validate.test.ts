/** StatsBatch validation: each kind of bad field is refused with its exact path. */
import { describe, expect, it } from 'vitest';
import { StatsInputError } from '../../src/ui/devtools/errors.ts';
import { validateStatsBatch } from '../../src/ui/devtools/validate.ts';
import { iteration, request, session, step } from './devtools-fixtures.ts';

function fieldOf(batch: unknown): string {
  try {
    validateStatsBatch(batch);
  } catch (e) {
    expect(e).toBeInstanceOf(StatsInputError);
    return (e as StatsInputError).field;
  }
  throw new Error('expected a StatsInputError');
}

const one = (r: unknown) => ({ timeOrigin: 0, records: [r] });

describe('validateStatsBatch', () => {
  it('accepts every well-formed record kind, including an unbounded budget and a skipped step’s NaN', () => {
    const batch = {
      timeOrigin: 1.5e12,
      records: [
        session({ budgetMs: Infinity }),
        iteration({ budgetMs: Infinity }),
        iteration({ budgetSource: 'frames', frameDrops: 2, frameIntervalMs: 16.7 }),
        iteration({ timing: 'timestamp', gpuMs: { inference: 3.2, finetune: null }, measuredMs: 3.2, wallMs: 4.1 }),
        iteration({ timing: 'timestamp', gpuMs: { inference: null, finetune: 0 } }),
        request({ ttftMs: null }),
        step({ loss: NaN, grad_norm: Infinity, skipped: true }),
      ],
    };
    expect(validateStatsBatch(batch)).toBe(batch);
  });

  it('names the field of the batch itself', () => {
    expect(fieldOf(null)).toBe('batch');
    expect(fieldOf([])).toBe('batch');
    expect(fieldOf({ timeOrigin: NaN, records: [] })).toBe('batch.timeOrigin');
    expect(fieldOf({ timeOrigin: 0 })).toBe('batch.records');
  });

  it('names the record and field', () => {
    expect(fieldOf({ timeOrigin: 0, records: [iteration(), 5] })).toBe('records[1]');
    expect(fieldOf(one({ ...iteration(), type: 'toString' }))).toBe('records[0].type');
    expect(fieldOf(one({ ...iteration(), type: 'frame' }))).toBe('records[0].type');
    expect(fieldOf(one({ ...iteration(), measuredMs: -1 }))).toBe('records[0].measuredMs');
    expect(fieldOf(one({ ...iteration(), measuredMs: Infinity }))).toBe('records[0].measuredMs');
    expect(fieldOf(one({ ...iteration(), plannedMs: { prefill: 0, decode: '1', finetune: 0 } }))).toBe('records[0].plannedMs.decode');
    expect(fieldOf(one({ ...iteration(), plannedMs: null }))).toBe('records[0].plannedMs');
    expect(fieldOf(one({ ...iteration(), timing: 'gpu' }))).toBe('records[0].timing');
    expect(fieldOf(one({ ...iteration(), budgetMs: NaN }))).toBe('records[0].budgetMs');
    expect(fieldOf(one({ ...iteration(), budgetSource: 'vsync' }))).toBe('records[0].budgetSource');
    expect(fieldOf(one({ ...iteration(), frameDrops: -1 }))).toBe('records[0].frameDrops');
    expect(fieldOf(one({ ...iteration(), frameIntervalMs: NaN }))).toBe('records[0].frameIntervalMs');
    expect(fieldOf(one({ ...iteration(), frameIntervalMs: undefined }))).toBe('records[0].frameIntervalMs');
    expect(fieldOf(one({ ...iteration(), wallMs: undefined }))).toBe('records[0].wallMs');
    expect(fieldOf(one({ ...iteration(), wallMs: -0.5 }))).toBe('records[0].wallMs');
    expect(fieldOf(one({ ...iteration(), gpuMs: undefined }))).toBe('records[0].gpuMs');
    expect(fieldOf(one({ ...iteration(), gpuMs: { inference: 1, finetune: null } }))).toBe('records[0].gpuMs'); // wall timing has none
    expect(fieldOf(one({ ...iteration(), timing: 'timestamp', gpuMs: null }))).toBe('records[0].gpuMs');
    expect(fieldOf(one({ ...iteration(), timing: 'timestamp', gpuMs: [1, 2] }))).toBe('records[0].gpuMs');
    expect(fieldOf(one({ ...iteration(), timing: 'timestamp', gpuMs: { inference: NaN, finetune: null } }))).toBe('records[0].gpuMs.inference');
    expect(fieldOf(one({ ...iteration(), timing: 'timestamp', gpuMs: { inference: 1, finetune: -1 } }))).toBe('records[0].gpuMs.finetune');
    expect(fieldOf(one({ ...iteration(), timing: 'timestamp', gpuMs: { inference: 1 } }))).toBe('records[0].gpuMs.finetune');
    expect(fieldOf(one({ ...request(), tbtMs: [1, 2, -3] }))).toBe('records[0].tbtMs[2]');
    expect(fieldOf(one({ ...request(), tbtMs: 'fast' }))).toBe('records[0].tbtMs');
    expect(fieldOf(one({ ...request(), ttftMs: undefined }))).toBe('records[0].ttftMs');
    expect(fieldOf(one({ ...request(), finishReason: 'done' }))).toBe('records[0].finishReason');
    expect(fieldOf(one({ ...request(), adapter: 3 }))).toBe('records[0].adapter');
    expect(fieldOf(one({ ...step(), skipped: 'no' }))).toBe('records[0].skipped');
    expect(fieldOf(one({ ...step(), 'rewards/accuracies': '1' }))).toBe('records[0].rewards/accuracies');
    expect(fieldOf(one({ ...session(), slo: { ttftMs: 500 } }))).toBe('records[0].slo.tbtMs');
    expect(fieldOf(one({ ...session(), policy: 'fastest' }))).toBe('records[0].policy');
  });

  it('the message says what was wrong', () => {
    expect(() => validateStatsBatch(one({ ...iteration(), kvBlocksUsed: -2 }))).toThrow('stats batch: records[0].kvBlocksUsed must be ≥ 0, got -2');
    expect(() => validateStatsBatch(one({ ...iteration(), gpuMs: { inference: 1, finetune: null } }))).toThrow('stats batch: records[0].gpuMs must be null with wall timing, got an object');
    expect(() => validateStatsBatch(one({ ...iteration(), timing: 'timestamp' }))).toThrow('stats batch: records[0].gpuMs must be an object { inference, finetune } with timestamp timing, got null');
    expect(() => validateStatsBatch(one({ ...iteration(), timing: 'timestamp', gpuMs: { inference: Infinity, finetune: null } }))).toThrow('stats batch: records[0].gpuMs.inference must be finite, got Infinity');
  });
});
