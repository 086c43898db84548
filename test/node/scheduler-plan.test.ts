import { describe, expect, it } from 'vitest';
import { CostModel, zeroFeatures } from '../../src/scheduler/cost-model.ts';
import { planIteration } from '../../src/scheduler/planner.ts';
import { pickJob } from '../../src/scheduler/priority.ts';
import { defaultSchedulerConfig, type FinetuneJobView, type IterationPlan, type RequestView, type SchedulerConfig, type SchedulerState, type UnitView } from '../../src/scheduler/types.ts';
import { mulberry32 } from '../../src/util/prng.ts';

// Fixed costs (ms): intercept 1; per token 0.1; per row 0.5; attention 0; ft forward 0.05/token;
// ft backward 0.1/token; ft head 0.2/token; optimizer 1; per unit 0.1.
// So a chunk of n tokens costs 0.1n + 0.5, a decode 0.6; units at 16 tokens: embed 0.1,
// forward 0.9, backward 1.7, head 3.3, optimizer 1.1.
const cost = () => new CostModel({ initial: [1, 0.1, 0.5, 0, 0, 0.05, 0.1, 0.2, 1, 0.1, 0, 0] });
// A unit's compute is its tokens (mmacs = tokens) and it is one dispatch, so the costs above hold.
const unit = (kind: UnitView['kind'], tokens: number, o: Partial<UnitView> = {}): UnitView => ({ kind, tokens, mmacs: kind === 'optimizer' ? 1 : tokens, dispatches: 1, bytes: 0, ...o });
const fwd = unit('forward', 16);
const embed = unit('embed', 16);
const head = unit('head', 16);

const req = (id: number, length: number, computed: number, blocks: number, arrivedAt = 0): RequestView => ({ id, length, computed, blocks, arrivedAt });
const job = (id: number, ready: UnitView[], o: Partial<FinetuneJobView> = {}): FinetuneJobView => ({ id, queuedAt: 0, lastLoss: null, ready, started: false, ...o });

function state(o: Partial<SchedulerState>): SchedulerState {
  return { now: 1000, running: [], waiting: [], finetune: [], freeBlocks: 10, maxTokens: 64, maxSeqs: 4, finetuneAllowed: true, finetuneArenaBytes: 0, ...o };
}

// minPrefillTokens 0 unless a test is about it: the packing rules alone.
// Fine-tuning may take all the time left beside inference unless a test sets finetuneShare or decodeStretch.
const plan = (s: Partial<SchedulerState>, c: Partial<SchedulerConfig> = {}) => planIteration(state(s), { ...defaultSchedulerConfig('mace', 8), minPrefillTokens: 0, minFinetuneSamples: 0, finetuneShare: 1, decodeStretch: Infinity, ...c }, cost());
const total = (p: IterationPlan) => p.predictedMs.decode + p.predictedMs.prefill + p.predictedMs.finetune;

describe('planIteration (mace)', () => {
  it('runs decodes first, then the prefill (higher priority), then fine-tune units in what is left', () => {
    const p = plan({ running: [req(1, 20, 19, 2), req(2, 33, 32, 2)], waiting: [req(3, 30, 0, 0)], finetune: [job(7, [embed, fwd, fwd])] });
    expect(p.entries).toEqual([
      { id: 1, count: 1, sample: true, kind: 'decode' },
      { id: 2, count: 1, sample: true, kind: 'decode' },
      { id: 3, count: 30, sample: true, kind: 'prefill' },
    ]);
    expect(p.admitted).toEqual([3]);
    expect(p.preempted).toEqual([]);
    expect(p.finetune).toEqual({ job: 7, units: 3 });
    expect(p.blocks).toBe(3); // request 2 crosses into a 3rd block; request 3 takes 2
    expect(p.predictedMs.decode).toBeCloseTo(2.2, 10);
    expect(p.predictedMs.prefill).toBeCloseTo(3.5, 10);
    expect(p.predictedMs.finetune).toBeCloseTo(1.9, 10);
    expect(p.slices).toBe(1);
  });

  it('gives fine-tuning only the budget inference leaves', () => {
    const p = plan({ running: [req(1, 20, 19, 2), req(2, 33, 32, 2)], waiting: [req(3, 45, 0, 0)], finetune: [job(7, [embed, fwd, fwd])] });
    expect(p.entries.map((e) => [e.id, e.count])).toEqual([[1, 1], [2, 1], [3, 45]]);
    expect(p.finetune).toEqual({ job: 7, units: 1 }); // 0.8 ms left: the embed unit (0.1) only
    expect(total(p)).toBeCloseTo(7.3, 10);
  });

  it('chunks a prefill to the time left', () => {
    const p = plan({ running: [req(1, 20, 19, 2)], waiting: [req(3, 200, 0, 0)] });
    // 8 - 1 - 0.6 = 6.4 ms left: 0.1n + 0.5 <= 6.4 -> 59 tokens
    expect(p.entries[1]).toEqual({ id: 3, count: 59, sample: false, kind: 'prefill' });
    expect(p.blocks).toBe(4);
  });

  it('ages a waiting pair past a fresh prefill', () => {
    const s = { waiting: [req(3, 20, 0, 0, 29_000)], finetune: [job(7, [fwd, fwd, fwd])] };
    // at 30 s the pair (0.5·30 + 2·1 = 17) outranks the prompt (10 + 1) and takes the budget
    const late = plan({ ...s, now: 30_000 }, { budgetMs: 4 });
    expect(late.finetune).toEqual({ job: 7, units: 3 });
    expect(late.entries).toEqual([]);
    // queued recently (priority 2.5 at 1 s... 29.5 s ago it is still 2.5 + aging) the prompt goes first
    const early = plan({ ...s, now: 30_000, finetune: [job(7, [fwd, fwd, fwd], { queuedAt: 29_000 })] }, { budgetMs: 4 });
    expect(early.entries.map((e) => [e.id, e.count])).toEqual([[3, 20]]);
    expect(early.finetune).toBeNull(); // 0.5 ms left < one forward unit (0.9)
  });

  it('orders pairs by γ·loss, fresh pairs high, and keeps a started step going', () => {
    const now = 1000;
    const c = defaultSchedulerConfig('mace');
    const P = job(1, [fwd], { lastLoss: 0.2 });
    const Q = job(2, [fwd], { lastLoss: 0.9 });
    const R = job(3, [fwd], { lastLoss: null, queuedAt: 500 });
    expect(pickJob([P, Q, R], now, c, false)?.id).toBe(2); // 2.3 > 2.25 (R: fresh 1.0, younger) > 0.9
    expect(pickJob([P, Q, { ...R, queuedAt: 0 }], now, c, false)?.id).toBe(3); // 2.5
    expect(pickJob([P, Q, R], now, c, true)?.id).toBe(1); // periodic: queue order
    expect(pickJob([P, { ...Q, started: true, ready: [] }, R], now, c, false)).toBeNull(); // started, waiting on its read-back
    expect(pickJob([{ ...P, started: true }, Q, R], now, c, false)?.id).toBe(1);
    expect(plan({ finetune: [P, Q, R] }).finetune).toEqual({ job: 2, units: 1 });
  });

  it('packs by best fit among equal priorities', () => {
    const c = { baseFinetune: 10, basePrefill: 10, agingPrefill: 0, agingFinetune: 0, gamma: 0, budgetMs: 5 };
    // prompt: 10 tokens, 1.5 ms of 4 left (score 10 + 0.5·0.156 + 0.5·0.375); head unit 3.3 ms (10 + 0.5·0.825)
    const p = plan({ waiting: [req(1, 10, 0, 0)], finetune: [job(7, [head])] }, c);
    expect(p.finetune).toEqual({ job: 7, units: 1 });
    expect(p.entries).toEqual([{ id: 1, count: 2, sample: false, kind: 'prefill' }]); // 0.7 ms left: 2 tokens
    // a running chunked prefill goes first whatever the fit: it holds blocks
    const q = plan({ running: [req(1, 42, 32, 2)], finetune: [job(7, [head])] }, c);
    expect(q.entries).toEqual([{ id: 1, count: 10, sample: true, kind: 'prefill' }]);
    expect(q.finetune).toBeNull(); // 4 - 1.5 = 2.5 ms left < 3.3
  });

  it('never exceeds the budget with optional work; only mandatory decodes or one forced item go over', () => {
    const rnd = mulberry32(5);
    const int = (n: number) => Math.floor(rnd() * n);
    for (let trial = 0; trial < 300; trial++) {
      const running = Array.from({ length: int(5) }, (_, i) => {
        const len = 2 + int(80);
        const computed = rnd() < 0.7 ? len - 1 : int(len - 1);
        return req(i + 1, len, computed, Math.ceil(computed / 16));
      });
      const waiting = Array.from({ length: int(4) }, (_, i) => req(10 + i, 1 + int(120), 0, 0, int(1000)));
      const kinds: UnitView[] = [embed, fwd, head, unit('backward', 32), unit('optimizer', 0)];
      const finetune = rnd() < 0.6 ? [job(50, Array.from({ length: 1 + int(8) }, () => kinds[int(kinds.length)]), { lastLoss: rnd() })] : [];
      const budgetMs = 1 + rnd() * 10;
      const p = plan({ running, waiting, finetune, freeBlocks: int(20) }, { budgetMs });
      const optional = p.entries.filter((e) => e.kind === 'prefill').length + (p.finetune ? 1 : 0);
      const decodes = p.entries.filter((e) => e.kind === 'decode').length;
      if (total(p) > budgetMs + 1e-9) {
        expect(optional === 0 || (optional === 1 && decodes === 0)).toBe(true);
        expect(p.slices).toBe(Math.ceil(total(p) / budgetMs));
      } else expect(p.slices).toBe(1);
      for (const r of running) if (r.computed === r.length - 1 && r.computed > 0 && p.preempted.length === 0) expect(p.entries.some((e) => e.id === r.id)).toBe(true);
      expect(p.blocks).toBeLessThanOrEqual(p.preempted.reduce((a, id) => a + running.find((r) => r.id === id)!.blocks, 0) + (p.blocks > 0 ? 20 : 0));
    }
  });

  it('gives the first prompt its minimum chunk even when decodes fill the budget (no prefill starvation)', () => {
    const running = [req(1, 20, 19, 2), req(2, 9, 8, 1), req(3, 30, 29, 2)];
    const s = { running, waiting: [req(4, 40, 0, 0), req(5, 8, 0, 0)], finetune: [job(7, [embed])] };
    const p = plan(s, { budgetMs: 2.5, minPrefillTokens: 16 }); // decodes: 1 + 3·0.6 = 2.8 ms > 2.5
    expect(p.entries.map((e) => [e.id, e.count])).toEqual([[1, 1], [2, 1], [3, 1], [4, 16]]);
    expect(p.finetune).toBeNull();
    expect(p.slices).toBe(2); // 2.8 + 2.1 = 4.9 ms in 2.5 ms slices
    expect(plan(s, { budgetMs: 2.5 }).entries.length).toBe(3); // without the floor the prompt waits
  });

  it('keeps fine-tuning away from inference rows until its cost has been measured', () => {
    const s = { running: [req(1, 20, 19, 2)], finetune: [job(7, [embed, fwd])] };
    expect(plan(s, { minFinetuneSamples: 3 }).finetune).toBeNull(); // no fine-tune measurement yet
    expect(plan({ finetune: s.finetune }, { minFinetuneSamples: 3 }).finetune).toEqual({ job: 7, units: 2 }); // alone it runs
    const measured = cost();
    for (let i = 0; i < 3; i++) measured.observe({ ...zeroFeatures(), ftDispatches: 1, ftForward: 16 }, 0.1 + 0.8 + 1);
    expect(measured.finetuneSamples).toBe(3);
    const p = planIteration(state(s), { ...defaultSchedulerConfig('mace', 8), minPrefillTokens: 0, decodeStretch: Infinity }, measured);
    expect(p.finetune).toEqual({ job: 7, units: 2 });
  });

  it('never starves decodes for fine-tuning', () => {
    const units = Array.from({ length: 60 }, () => fwd);
    const p = plan({ running: [req(1, 20, 19, 2), req(2, 9, 8, 1)], finetune: [job(7, units, { lastLoss: 50, queuedAt: -1e9 })] }, { budgetMs: 3 });
    expect(p.entries.map((e) => e.id)).toEqual([1, 2]);
    expect(p.finetune).toBeNull(); // 3 - 2.2 = 0.8 ms left: less than one forward unit (0.9), however urgent the pair
    const roomy = plan({ running: [req(1, 20, 19, 2), req(2, 9, 8, 1)], finetune: [job(7, units)] }, { budgetMs: 5 });
    expect(roomy.entries.map((e) => e.id)).toEqual([1, 2]);
    expect(roomy.finetune).toEqual({ job: 7, units: 3 }); // 2.8 ms left
  });

  it('never starves fine-tuning when inference is idle, even with a unit over the budget', () => {
    const p = plan({ finetune: [job(7, [head, fwd])] }, { budgetMs: 2 });
    expect(p.finetune).toEqual({ job: 7, units: 1 });
    expect(p.slices).toBe(3); // 1 + 3.3 = 4.3 ms over 2 ms slices
  });

  it('preempts the newest running sequence when the pool runs out, and admits nobody then', () => {
    const p = plan({ running: [req(1, 17, 16, 1), req(2, 40, 39, 3)], waiting: [req(3, 5, 0, 0)], freeBlocks: 0 });
    expect(p.preempted).toEqual([2]);
    expect(p.entries).toEqual([{ id: 1, count: 1, sample: true, kind: 'decode' }]);
    expect(p.admitted).toEqual([]);
  });

  it('does not admit past the sequence cap or the free blocks (no overtaking)', () => {
    const p = plan({ waiting: [req(3, 40, 0, 0), req(4, 3, 0, 0)], freeBlocks: 2 }, { budgetMs: Infinity });
    expect(p.entries).toEqual([]); // its 40-token chunk needs 3 blocks; 4 waits behind 3
    const q = plan({ running: [req(1, 20, 19, 2)], waiting: [req(3, 4, 0, 0)], maxSeqs: 1 }, { budgetMs: Infinity });
    expect(q.admitted).toEqual([]);
  });
});

describe('planIteration: a batch in mixed mode', () => {
  it('prices the decode rows a prefill chunk switches into the prefill kernels (mixedTokens)', () => {
    // As `cost` above, plus 0.1 ms per token of a batch in mixed mode.
    const mixedCost = new CostModel({ initial: [1, 0.1, 0.5, 0, 0.1, 0.05, 0.1, 0.2, 1, 0.1, 0, 0] });
    const s = state({ running: [req(1, 20, 19, 2), req(2, 9, 8, 1)], waiting: [req(3, 10, 0, 0)] });
    const p = planIteration(s, { ...defaultSchedulerConfig('mace', Infinity), minPrefillTokens: 0 }, mixedCost);
    expect(p.entries.map((e) => [e.id, e.count])).toEqual([[1, 1], [2, 1], [3, 10]]);
    expect(p.predictedMs.decode).toBeCloseTo(2.2, 10); // 1 + 2 × 0.6
    expect(p.predictedMs.prefill).toBeCloseTo(0.1 * 10 + 0.5 + 0.1 * (10 + 2), 10); // the chunk brings the 2 decode rows along
    // One-token rows only (here two decodes) keep the batch in decode mode: no switch.
    const last = planIteration(state({ running: [req(1, 20, 19, 2), req(4, 12, 11, 1)] }), { ...defaultSchedulerConfig('mace', Infinity), minPrefillTokens: 0 }, mixedCost);
    expect(last.predictedMs.decode + last.predictedMs.prefill).toBeCloseTo(1 + 2 * 0.6, 10);
  });
});

describe('planIteration with sub-layer fine-tune units', () => {
  // One layer's forward cut per matmul: [part, mmacs, dispatches]; costs 0.05 ms/mmac + 0.1 ms/dispatch.
  const layer: [string, number, number][] = [['q', 4, 3], ['k', 2, 3], ['v', 2, 3], ['attn', 1, 2], ['o', 4, 4], ['gate', 8, 4], ['up', 8, 3], ['down', 8, 5]];
  const units = layer.map(([, mmacs, dispatches]) => unit('forward', 16, { mmacs, dispatches, bytes: 1024 }));
  const whole = unit('forward', 16, { mmacs: layer.reduce((a, l) => a + l[1], 0), dispatches: layer.reduce((a, l) => a + l[2], 0), bytes: 8 * 1024 });
  const decodes = [req(1, 20, 19, 2), req(2, 9, 8, 1)]; // 1 + 2 × 0.6 = 2.2 ms

  it('packs as many of a layer\'s matmul units beside the decodes as the budget leaves', () => {
    const p = plan({ running: decodes, finetune: [job(7, units, { started: true })] }, { budgetMs: 5 });
    expect(p.entries.map((e) => [e.id, e.kind])).toEqual([[1, 'decode'], [2, 'decode']]);
    // 2.8 ms left: q 0.5 + k 0.4 + v 0.4 + attn 0.25 + o 0.6 = 2.15; + gate 0.8 = 2.95 > 2.8
    expect(p.finetune).toEqual({ job: 7, units: 5 });
    expect(p.predictedMs.finetune).toBeCloseTo(2.15, 10);
    expect(p.slices).toBe(1);
    // The same layer as one unit (5.05 ms) never fits beside the decodes.
    expect(plan({ running: decodes, finetune: [job(7, [whole], { started: true })] }, { budgetMs: 5 }).finetune).toBeNull();
  });

  it('beside decodes fine-tuning takes at most its share of the time left; alone it takes the whole budget', () => {
    // 2.8 ms left after the decodes; share 0.5 → 1.4 ms: q 0.5 + k 0.4 + v 0.4 = 1.3, + attn 0.25 = 1.55 > 1.4.
    const half = plan({ running: decodes, finetune: [job(7, units, { started: true })] }, { budgetMs: 5, finetuneShare: 0.5 });
    expect(half.finetune).toEqual({ job: 7, units: 3 });
    expect(half.predictedMs.finetune).toBeCloseTo(1.3, 10);
    expect(plan({ running: decodes, finetune: [job(7, units, { started: true })] }, { budgetMs: 5, finetuneShare: 0 }).finetune).toBeNull();
    // No inference: the share does not apply (5 ms: all eight units, 4.9 ms... as many as fit the budget).
    const alone = plan({ finetune: [job(7, units, { started: true })] }, { budgetMs: 5, finetuneShare: 0.5 });
    expect(alone.finetune!.units).toBeGreaterThan(3);
    expect(alone.finetune).toEqual(plan({ finetune: [job(7, units, { started: true })] }, { budgetMs: 5, finetuneShare: 1 }).finetune);
  });

  it('beside decodes fine-tuning adds at most decodeStretch of the decodes\' own time; beside a prompt alone only the share applies', () => {
    // The two decodes: intercept 1 + 2 · 0.6 = 2.2 ms. Stretch 0.5 → 1.1 ms: q 0.5 + k 0.4 = 0.9, + v 0.4 = 1.3 > 1.1.
    const stretched = plan({ running: decodes, finetune: [job(7, units, { started: true })] }, { budgetMs: 5, decodeStretch: 0.5 });
    expect(stretched.entries.map((e) => e.kind)).toEqual(['decode', 'decode']);
    expect(stretched.finetune).toEqual({ job: 7, units: 2 });
    expect(stretched.predictedMs.finetune).toBeCloseTo(0.9, 10);
    // The smaller of the two caps wins: share 0.25 of the 2.8 ms left = 0.7 ms → q alone.
    expect(plan({ running: decodes, finetune: [job(7, units, { started: true })] }, { budgetMs: 5, decodeStretch: 0.5, finetuneShare: 0.25 }).finetune).toEqual({ job: 7, units: 1 });
    // Stretch 0.2 → 0.44 ms: not even q (0.5 ms) fits; the units wait for an iteration without decodes.
    expect(plan({ running: decodes, finetune: [job(7, units, { started: true })] }, { budgetMs: 5, decodeStretch: 0.2 }).finetune).toBeNull();
    // Work that has run no unit for finetuneStarveMs is no longer held to the stretch (the share still bounds it).
    const starved = plan({ running: decodes, finetune: [job(7, units, { started: true })], finetuneWaitMs: 2000 }, { budgetMs: 5, decodeStretch: 0.2, finetuneStarveMs: 2000, finetuneShare: 0.5 });
    expect(starved.finetune).toEqual({ job: 7, units: 3 }); // 1.4 ms: q + k + v = 1.3
    expect(plan({ running: decodes, finetune: [job(7, units, { started: true })], finetuneWaitMs: 1999 }, { budgetMs: 5, decodeStretch: 0.2, finetuneStarveMs: 2000 }).finetune).toBeNull();
    // A waiting prompt and no decodes: the stretch does not apply, fine-tuning takes what the chunk leaves.
    const prompt = plan({ waiting: [req(9, 10, 0, 0)], finetune: [job(7, units, { started: true })] }, { budgetMs: 5, decodeStretch: 0 });
    expect(prompt.entries.map((e) => [e.id, e.count])).toEqual([[9, 10]]);
    // 5 − 1 − 1.5 = 2.5 ms left: q 0.5 + k 0.4 + v 0.4 + attn 0.25 + o 0.6 = 2.15, + gate 0.8 > 2.5.
    expect(prompt.finetune).toEqual({ job: 7, units: 5 });
  });

  it('the memory term: fine-tune units that fill the training arena win a close call with a prompt', () => {
    // Prefill priority 10 (no wait); the pair's 2 · 4.85 = 9.7. Budget 4 ms: 3 ms after the intercept.
    // Prompt of 20 tokens: 2.5 ms, memory fit max(2/10 blocks, 20/64 tokens) = 0.3125 → 10 + 0.5·0.3125 + 0.5·2.5/3 = 10.57.
    // Three 0.9 ms units of 1000 bytes each over a 3000-byte arena: 9.7 + 0.5·1 + 0.5·2.7/3 = 10.65 → first;
    // without the memory term 9.7 + 0.45 = 10.15 → the prompt goes first and no unit fits after it.
    const ft = [job(7, [fwd, fwd, fwd].map((u) => ({ ...u, bytes: 1000 })), { lastLoss: 4.85, queuedAt: 1000 })];
    const s = { waiting: [req(3, 20, 0, 0, 1000)], finetune: ft };
    const withMemory = plan({ ...s, finetuneArenaBytes: 3000 }, { budgetMs: 4 });
    expect(withMemory.finetune).toEqual({ job: 7, units: 3 });
    expect(withMemory.entries).toEqual([]);
    const without = plan({ ...s, finetuneArenaBytes: 0 }, { budgetMs: 4 });
    expect(without.entries).toEqual([{ id: 3, count: 20, sample: true, kind: 'prefill' }]);
    expect(without.finetune).toBeNull();
  });
});

describe('planIteration (other policies)', () => {
  const busy = { running: [req(1, 20, 19, 2)], waiting: [req(3, 30, 0, 0)], finetune: [job(7, [embed, fwd, fwd])] };

  it('inference-only never plans fine-tuning', () => {
    expect(plan(busy, { policy: 'inference-only' }).finetune).toBeNull();
  });

  it('sync runs pending fine-tuning alone, stalling decodes', () => {
    const p = plan(busy, { policy: 'sync' });
    expect(p.entries).toEqual([]);
    expect(p.finetune).toEqual({ job: 7, units: 3 });
    expect(plan({ ...busy, finetune: [] }, { policy: 'sync' }).entries.length).toBe(2);
  });

  it('periodic gives fine-tuning only what inference leaves, and nothing outside its window', () => {
    const p = plan({ ...busy, waiting: [req(3, 60, 0, 0)] }, { policy: 'periodic' });
    expect(p.entries.map((e) => [e.id, e.count])).toEqual([[1, 1], [3, 59]]); // 8 - 1.6 = 6.4 ms: 59 tokens
    expect(p.finetune).toBeNull(); // 0.5 ms left, and the pair has no priority over what inference could use
    expect(plan(busy, { policy: 'periodic' }).finetune).toEqual({ job: 7, units: 3 });
    expect(plan({ ...busy, finetuneAllowed: false }, { policy: 'periodic' }).finetune).toBeNull();
  });
});
