/**
 * The frame-budget rule (src/scheduler/frame-budget.ts) on simulated frame streams, and the page-side
 * FrameMonitor (src/engine/frame-monitor.ts) driven by a fake requestAnimationFrame. Every expected
 * value is computed from the rule; the clock is an argument, so nothing here depends on real time.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_FRAME_BUDGET, FrameBudget, FrameBudgetOptionError, FrameReportError, validateFrameReport, type FrameReport } from '../../src/scheduler/frame-budget.ts';
import { FrameMonitor } from '../../src/engine/frame-monitor.ts';
import { FakeFrames } from './fake-frames.ts';
import { frameBudgetFor } from '../../src/engine/budget-source.ts';
import { EngineOptionsError } from '../../src/engine/errors.ts';

const HZ60 = 1000 / 60;
const HZ120 = 1000 / 120;
const { fraction, minMs, decrease, increaseMs, hiddenMs, staleMs } = DEFAULT_FRAME_BUDGET;
const FALLBACK = 8;

/** One ~250 ms window of a visible page. */
const visible = (intervalMs: number | null, dropped = 0, longFrames = 0): FrameReport => ({ intervalMs, frames: 15, dropped, longFrames, hidden: false });
const hiddenReport: FrameReport = { intervalMs: null, frames: 0, dropped: 0, longFrames: 0, hidden: true };

/** Feed reports 250 ms apart from t = 0; returns the budget after each. */
function stream(b: FrameBudget, reports: FrameReport[], start = 0): number[] {
  return reports.map((r, i) => {
    const t = start + i * 250;
    b.report(r, t);
    return b.budgetMs(t);
  });
}

describe('FrameBudget', () => {
  it('steady 60 Hz: half a frame, from the page’s frames', () => {
    const b = new FrameBudget(FALLBACK);
    expect(stream(b, Array(8).fill(visible(HZ60)))).toEqual(Array(8).fill(fraction * HZ60));
    expect(b.current(7 * 250)).toEqual({ budgetMs: fraction * HZ60, source: 'frames', frameDrops: 0, frameIntervalMs: HZ60 });
    expect(fraction * HZ60).toBeCloseTo(8.3333, 4);
  });

  it('a 120 Hz display gets a smaller budget than a 60 Hz one', () => {
    const b = new FrameBudget(FALLBACK);
    expect(stream(b, Array(4).fill(visible(HZ120)))).toEqual(Array(4).fill(fraction * HZ120));
    expect(b.budgetMs(750)).toBeLessThan(fraction * HZ60);
  });

  it('drops shrink the budget multiplicatively, monotone, down to the floor', () => {
    const b = new FrameBudget(FALLBACK);
    const got = stream(b, [visible(HZ60), ...Array(6).fill(visible(HZ60, 2))]);
    const want = [fraction * HZ60];
    for (let i = 0; i < 6; i++) want.push(Math.max(minMs, want[want.length - 1] * decrease));
    expect(got).toEqual(want);
    expect(want.slice(1, 5).map((v) => +v.toFixed(4))).toEqual([5.8333, 4.0833, 2.8583, 2.0008]);
    expect(got.slice(5)).toEqual([minMs, minMs]); // floored
    for (let i = 1; i < got.length; i++) expect(got[i]).toBeLessThanOrEqual(got[i - 1]);
    expect(b.current(6 * 250).frameDrops).toBe(2);
  });

  it('long animation frames count as drops too', () => {
    const b = new FrameBudget(FALLBACK);
    expect(stream(b, [visible(HZ60), visible(HZ60, 0, 1)])).toEqual([fraction * HZ60, fraction * HZ60 * decrease]);
  });

  it('recovers additively after the drops stop, never above the base', () => {
    const b = new FrameBudget(FALLBACK);
    const base = fraction * HZ60;
    const got = stream(b, [visible(HZ60), ...Array(5).fill(visible(HZ60, 1)), ...Array(16).fill(visible(HZ60))]);
    const want = [base];
    for (let i = 0; i < 5; i++) want.push(Math.max(minMs, want[want.length - 1] * decrease));
    for (let i = 0; i < 16; i++) want.push(Math.min(base, want[want.length - 1] + increaseMs));
    expect(got).toEqual(want);
    expect(got[6]).toBe(minMs + increaseMs);
    expect(got[got.length - 1]).toBe(base); // back to half a frame
    for (let i = 6; i < got.length; i++) expect(got[i]).toBeGreaterThanOrEqual(got[i - 1]);
  });

  it('hidden: grows to hiddenMs; shown again: back to the base at once', () => {
    const b = new FrameBudget(FALLBACK);
    const got = stream(b, [visible(HZ60), visible(HZ60, 3), hiddenReport, visible(HZ60)]);
    expect(got).toEqual([fraction * HZ60, fraction * HZ60 * decrease, hiddenMs, fraction * HZ60]);
    b.report(hiddenReport, 2000);
    expect(b.current(2000)).toEqual({ budgetMs: hiddenMs, source: 'frames', frameDrops: 0, frameIntervalMs: null });
  });

  it('a hidden report does not go stale (a hidden page draws no frames to report)', () => {
    const b = new FrameBudget(FALLBACK);
    b.report(hiddenReport, 0);
    expect(b.current(10 * staleMs)).toMatchObject({ budgetMs: hiddenMs, source: 'frames' });
  });

  it('no report, or none for staleMs: the constant; reports resuming continue from the kept state', () => {
    const b = new FrameBudget(FALLBACK);
    expect(b.current(0)).toEqual({ budgetMs: FALLBACK, source: 'constant', frameDrops: 0, frameIntervalMs: null });
    b.report(visible(HZ60), 0);
    b.report(visible(HZ60, 1), 250);
    const shrunk = fraction * HZ60 * decrease;
    expect(b.current(250 + staleMs)).toMatchObject({ budgetMs: shrunk, source: 'frames' });
    expect(b.current(250 + staleMs + 1)).toEqual({ budgetMs: FALLBACK, source: 'constant', frameDrops: 0, frameIntervalMs: null });
    b.report(visible(HZ60), 5000);
    expect(b.budgetMs(5000)).toBe(shrunk + increaseMs);
  });

  it('the fallback is the engine’s constant, Infinity included', () => {
    expect(new FrameBudget(Infinity).current(0)).toMatchObject({ budgetMs: Infinity, source: 'constant' });
  });

  it('shown with no frame measured yet: the constant until an interval arrives', () => {
    const b = new FrameBudget(FALLBACK);
    b.report(hiddenReport, 0);
    b.report(visible(null), 100);
    expect(b.current(100)).toMatchObject({ budgetMs: FALLBACK, source: 'constant' });
    b.report(visible(HZ60), 350);
    expect(b.current(350)).toMatchObject({ budgetMs: fraction * HZ60, source: 'frames' });
  });

  it('the base stays within [minMs, hiddenMs] (a very fast or very slow frame)', () => {
    const b = new FrameBudget(FALLBACK);
    expect(b.baseMs(1)).toBe(minMs);
    expect(b.baseMs(1000)).toBe(hiddenMs);
  });

  it('bad reports throw FrameReportError naming the field and change nothing', () => {
    const b = new FrameBudget(FALLBACK);
    b.report(visible(HZ60), 0);
    const before = b.current(0);
    const fieldOf = (r: unknown, now = 0): string => {
      try {
        b.report(r, now);
      } catch (e) {
        expect(e).toBeInstanceOf(FrameReportError);
        expect((e as FrameReportError).code).toBe('bad-frame-report');
        return (e as FrameReportError).field;
      }
      throw new Error('expected a FrameReportError');
    };
    expect(fieldOf(null)).toBe('report');
    expect(fieldOf([1])).toBe('report');
    expect(fieldOf({ ...visible(NaN) })).toBe('intervalMs');
    expect(fieldOf({ ...visible(-16) })).toBe('intervalMs');
    expect(fieldOf({ ...visible(0) })).toBe('intervalMs');
    expect(fieldOf({ ...visible(HZ60), intervalMs: '16' })).toBe('intervalMs');
    expect(fieldOf({ ...visible(HZ60), dropped: -1 })).toBe('dropped');
    expect(fieldOf({ ...visible(HZ60), dropped: 1.5 })).toBe('dropped');
    expect(fieldOf({ ...visible(HZ60), frames: undefined })).toBe('frames');
    expect(fieldOf({ ...visible(HZ60), longFrames: Infinity })).toBe('longFrames');
    expect(fieldOf({ ...visible(HZ60), hidden: 'no' })).toBe('hidden');
    expect(fieldOf(visible(HZ60, 5), NaN)).toBe('now');
    expect(b.current(0)).toEqual(before);
    expect(() => validateFrameReport({ ...visible(HZ60), dropped: -1 })).toThrow('frame report: dropped must be an integer >= 0, got -1');
  });

  it('options are checked, naming the option', () => {
    expect(() => new FrameBudget(8, { fraction: 0 })).toThrow(FrameBudgetOptionError);
    expect(() => new FrameBudget(8, { decrease: 1 })).toThrow(/decrease/);
    expect(() => new FrameBudget(8, { hiddenMs: 1 })).toThrow(/hiddenMs/);
    expect(() => new FrameBudget(8, { minMs: NaN })).toThrow(/minMs/);
    expect(new FrameBudget(8, { fraction: 0.25 }).baseMs(HZ60)).toBe(0.25 * HZ60);
  });
});

describe('FrameMonitor (simulated frame stream)', () => {
  it('a steady 100 Hz stream: one report per 250 ms with the interval and no drops', () => {
    const clock = new FakeFrames();
    const reports: FrameReport[] = [];
    const m = new FrameMonitor(clock, (r) => reports.push(r));
    m.start();
    clock.frames(0, 500, 10);
    expect(reports).toEqual([
      { intervalMs: 10, frames: 25, dropped: 0, longFrames: 0, hidden: false },
      { intervalMs: 10, frames: 25, dropped: 0, longFrames: 0, hidden: false },
    ]);
  });

  it('gaps count the frames they skipped; long animation frames are counted', () => {
    const clock = new FakeFrames();
    const reports: FrameReport[] = [];
    const m = new FrameMonitor(clock, (r) => reports.push(r));
    m.start();
    clock.frames(0, 250, 10); // calibrates the interval: 10 ms
    // Frames 300-320 missing (a 40 ms delta: 3 dropped), then a 14 ms delta (under 1.5 x 10: not a drop), and one long animation frame.
    for (const t of [260, 270, 280, 290, 330, 344, 350]) clock.frame(t);
    clock.longFrame();
    clock.frames(360, 500, 10);
    expect(reports).toHaveLength(2);
    expect(reports[1]).toMatchObject({ intervalMs: 10, dropped: 3, longFrames: 1, hidden: false });
  });

  it('reports hidden at once, does not measure while hidden, reports visible at once on return', () => {
    const clock = new FakeFrames();
    const reports: FrameReport[] = [];
    const m = new FrameMonitor(clock, (r) => reports.push(r));
    m.start();
    clock.frames(0, 250, 10);
    clock.setHidden(true);
    clock.frames(1000, 3000, 1000); // a background tab's throttled frames: not measured
    clock.setHidden(false);
    clock.frames(5000, 5250, 10); // the 2 s gap across the hidden stretch is not a drop
    expect(reports).toEqual([
      { intervalMs: 10, frames: 25, dropped: 0, longFrames: 0, hidden: false },
      { intervalMs: null, frames: 0, dropped: 0, longFrames: 0, hidden: true },
      { intervalMs: 10, frames: 0, dropped: 0, longFrames: 0, hidden: false },
      { intervalMs: 10, frames: 25, dropped: 0, longFrames: 0, hidden: false },
    ]);
  });

  it('a page hidden at start reports so at once', () => {
    const clock = new FakeFrames(false);
    clock.isHidden = true;
    const reports: FrameReport[] = [];
    new FrameMonitor(clock, (r) => reports.push(r)).start();
    expect(reports).toEqual([hiddenReport]);
  });

  it('a window of janky frames does not read as a slower display (smallest recent median)', () => {
    const clock = new FakeFrames();
    const reports: FrameReport[] = [];
    new FrameMonitor(clock, (r) => reports.push(r)).start();
    clock.frames(0, 250, 10);
    clock.frames(270, 520, 20); // every other frame dropped for a whole window
    expect(reports[1]).toMatchObject({ intervalMs: 10, frames: 13, dropped: 13 }); // 13 deltas of 20 ms, one frame skipped each
  });

  it('stop() cancels the frame, disconnects the observer and removes the listener', () => {
    const clock = new FakeFrames();
    const reports: FrameReport[] = [];
    const m = new FrameMonitor(clock, (r) => reports.push(r));
    m.start();
    m.start(); // idempotent
    expect([clock.pending, clock.observing, clock.listening]).toEqual([1, true, 1]);
    clock.frames(0, 100, 10);
    m.stop();
    expect([clock.pending, clock.observing, clock.listening, m.started]).toEqual([0, false, 0, false]);
    clock.frames(110, 1000, 10);
    clock.setHidden(true);
    expect(reports).toEqual([]);
    m.stop(); // idempotent
  });

  it('a failing sink does not break the frame loop', () => {
    const clock = new FakeFrames();
    const m = new FrameMonitor(clock, () => {
      throw new Error('worker gone');
    });
    m.start();
    clock.frames(0, 600, 10);
    expect(m.sent).toBe(2);
    expect(clock.pending).toBe(1);
  });

  it('frames → monitor → rule: the budget shrinks on drops and grows when hidden', () => {
    const clock = new FakeFrames();
    const budget = new FrameBudget(FALLBACK);
    let now = 0;
    const m = new FrameMonitor(clock, (r) => budget.report(r, now));
    m.start();
    const run = (from: number, to: number, interval: number) => {
      for (let t = from; t <= to; t += interval) {
        now = t;
        clock.frame(t);
      }
    };
    expect(budget.current(0).source).toBe('constant'); // nothing reported yet
    run(0, 500, 10); // 100 Hz, smooth
    const base = fraction * 10;
    expect(budget.current(now)).toEqual({ budgetMs: base, source: 'frames', frameDrops: 0, frameIntervalMs: 10 });
    run(540, 1100, 40); // 3 of every 4 frames dropped: two windows with drops
    expect(budget.budgetMs(now)).toBe(Math.max(minMs, base * decrease * decrease));
    expect(budget.current(now).frameDrops).toBeGreaterThan(0);
    now = 1200;
    clock.setHidden(true);
    expect(budget.budgetMs(now)).toBe(hiddenMs);
    now = 9000;
    clock.setHidden(false);
    expect(budget.budgetMs(now)).toBe(base); // shown: back to the base at once
    m.stop();
  });
});

describe('frameBudgetFor (engine option precedence)', () => {
  it('frames by default; an explicit budgetMs keeps the constant unless budget says frames', () => {
    expect(frameBudgetFor(undefined, 8)).toBeInstanceOf(FrameBudget);
    expect(frameBudgetFor({}, 8)?.fallbackMs).toBe(8);
    expect(frameBudgetFor({ budgetMs: 16 }, 16)).toBeNull();
    expect(frameBudgetFor({ budgetMs: 16, budget: 'frames' }, 16)?.current(0)).toMatchObject({ budgetMs: 16, source: 'constant' });
    expect(frameBudgetFor({ budget: 'constant' }, 8)).toBeNull();
    expect(frameBudgetFor({ frames: { fraction: 0.25 } }, 8)?.options.fraction).toBe(0.25);
  });

  it('bad options are EngineOptionsError naming the field', () => {
    const optionOf = (o: unknown): string => {
      try {
        frameBudgetFor(o as Parameters<typeof frameBudgetFor>[0], 8);
      } catch (e) {
        expect(e).toBeInstanceOf(EngineOptionsError);
        return (e as EngineOptionsError).option;
      }
      throw new Error('expected an EngineOptionsError');
    };
    expect(optionOf({ budget: 'vsync' })).toBe('scheduler.budget');
    expect(optionOf({ frames: 3 })).toBe('scheduler.frames');
    expect(optionOf({ frames: { fraction: 2 } })).toBe('scheduler.frames.fraction');
    expect(optionOf({ frames: { staleMs: -1 } })).toBe('scheduler.frames.staleMs');
  });
});
