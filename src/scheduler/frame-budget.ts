/**
 * The per-submission GPU budget from the page's frames. The page (src/engine/frame-monitor.ts)
 * measures its display's frame interval and the frames it dropped and sends a FrameReport every
 * ~250 ms; the engine asks `current(now)` before each plan. Pure: no DOM, no timers; every call
 * takes the engine's clock as an argument, so a simulated frame stream tests it exactly.
 *
 * The rule (defaults in DEFAULT_FRAME_BUDGET; docs/ARCHITECTURE.md §5):
 * - base = clamp(fraction × frame interval, minMs, hiddenMs): a submission may hold the GPU for
 *   half a frame (8.3 ms at 60 Hz, 4.2 ms at 120 Hz), leaving the page the rest of it.
 * - A visible report with dropped frames or long animation frames: budget × decrease (0.7), floored
 *   at minMs (2 ms): back off fast when the page stutters (AIMD, as TCP does on loss).
 * - A visible report with none: budget + increaseMs (0.5 ms), up to base: recover gradually, so
 *   one good window after a stutter does not jump straight back to the size that caused it.
 * - A visible report never leaves the budget above base (coming back from hidden starts at base).
 * - Hidden page (nothing is drawn): hiddenMs (50 ms). A hidden report does not go stale: a hidden
 *   page draws no frames, hence sends few reports, and the page reports at once when it is shown.
 * - No report for staleMs (2 s) while visible (a headless run, a page whose main thread is stuck,
 *   a page that turned reporting off), or no frame interval known yet: the constant fallback (the
 *   engine's scheduler.budgetMs). The AIMD state is kept and used again when reports resume.
 * Reports are plain data from another thread: a malformed one throws FrameReportError naming the
 * field and changes nothing.
 */

/** What the page measured over one window (about 250 ms of frames), as plain data. */
export interface FrameReport {
  /** The display's frame interval (ms): robust estimate from requestAnimationFrame deltas; null when no frame was seen (hidden, just shown). */
  intervalMs: number | null;
  /** Frames (rAF callbacks) measured in the window. */
  frames: number;
  /** Frames missed: deltas over 1.5 × the interval, each counting the frames it skipped. */
  dropped: number;
  /** long-animation-frame entries in the window (0 where the browser has none). */
  longFrames: number;
  /** document.visibilityState was 'hidden': nothing is drawn. */
  hidden: boolean;
}

export interface FrameBudgetOptions {
  /** Share of the frame interval one submission may take. */
  fraction: number;
  /** Floor of the budget (ms): below it a submission cannot hold one decode step. */
  minMs: number;
  /** Multiplier per report with drops (0 < decrease < 1). */
  decrease: number;
  /** Added per report without drops (ms), up to the base. */
  increaseMs: number;
  /** Budget while the page is hidden (ms); also the cap of the base. */
  hiddenMs: number;
  /** A visible report older than this (ms) no longer counts: the constant fallback applies. */
  staleMs: number;
}

export const DEFAULT_FRAME_BUDGET: Readonly<FrameBudgetOptions> = { fraction: 0.5, minMs: 2, decrease: 0.7, increaseMs: 0.5, hiddenMs: 50, staleMs: 2000 };

/** Where an iteration's budget came from, and what the page last said. */
export interface BudgetNow {
  budgetMs: number;
  source: 'frames' | 'constant';
  /** Dropped frames in the report in use (0 when none is). */
  frameDrops: number;
  /** Frame interval in use (ms); null while the constant applies or the page is hidden. */
  frameIntervalMs: number | null;
}

/** A FrameReport field is missing or not a sensible number. */
export class FrameReportError extends Error {
  readonly code = 'bad-frame-report';
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super(`frame report: ${field} ${detail}`);
    this.name = 'FrameReportError';
  }
}

/** A FrameBudgetOptions value is out of range (`option` names it). */
export class FrameBudgetOptionError extends Error {
  readonly code = 'bad-frame-budget-option';
  constructor(
    readonly option: keyof FrameBudgetOptions,
    readonly detail: string,
  ) {
    super(`frame budget: ${option} ${detail}`);
    this.name = 'FrameBudgetOptionError';
  }
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/** The report as a fresh plain object, or FrameReportError naming the first bad field. */
export function validateFrameReport(r: unknown): FrameReport {
  if (typeof r !== 'object' || r === null || Array.isArray(r)) throw new FrameReportError('report', 'must be an object { intervalMs, frames, dropped, longFrames, hidden }');
  const o = r as Record<string, unknown>;
  const interval = o.intervalMs;
  if (interval !== null && !(typeof interval === 'number' && Number.isFinite(interval) && interval > 0)) throw new FrameReportError('intervalMs', `must be a finite number > 0 or null, got ${String(interval)}`);
  for (const k of ['frames', 'dropped', 'longFrames'] as const) if (!isCount(o[k])) throw new FrameReportError(k, `must be an integer >= 0, got ${String(o[k])}`);
  if (typeof o.hidden !== 'boolean') throw new FrameReportError('hidden', `must be a boolean, got ${typeof o.hidden}`);
  return { intervalMs: interval, frames: o.frames as number, dropped: o.dropped as number, longFrames: o.longFrames as number, hidden: o.hidden };
}

/** Defaults filled in and every value checked (FrameBudgetOptionError naming it). */
export function resolveFrameBudgetOptions(o: Partial<FrameBudgetOptions> = {}): FrameBudgetOptions {
  const r = { ...DEFAULT_FRAME_BUDGET, ...o };
  const check = (k: keyof FrameBudgetOptions, ok: (v: number) => boolean, want: string) => {
    const v = r[k];
    if (typeof v !== 'number' || !ok(v)) throw new FrameBudgetOptionError(k, `must be ${want}, got ${String(v)}`);
  };
  check('fraction', (v) => v > 0 && v <= 1, 'in (0, 1]');
  check('minMs', (v) => Number.isFinite(v) && v > 0, 'a finite number of ms > 0');
  check('decrease', (v) => v > 0 && v < 1, 'in (0, 1)');
  check('increaseMs', (v) => Number.isFinite(v) && v > 0, 'a finite number of ms > 0');
  check('hiddenMs', (v) => Number.isFinite(v) && v >= r.minMs, `a finite number of ms >= minMs (${r.minMs})`);
  check('staleMs', (v) => v > 0, 'a number of ms > 0 (Infinity: never stale)');
  return r;
}

export class FrameBudget {
  readonly options: FrameBudgetOptions;
  /** The AIMD budget (ms); null before the first report with a frame interval (or a hidden one). */
  private budget: number | null = null;
  /** Latest frame interval the page measured (ms). */
  private intervalMs: number | null = null;
  private hidden = false;
  private drops = 0;
  /** Engine time the latest report arrived. */
  private receivedAt = -Infinity;

  /** `fallbackMs`: the constant budget when no fresh report is in (Infinity: none). */
  constructor(
    readonly fallbackMs: number,
    options: Partial<FrameBudgetOptions> = {},
  ) {
    this.options = resolveFrameBudgetOptions(options);
  }

  /** Apply one report received at `now` (engine ms). Throws FrameReportError for a bad report and changes nothing. */
  report(report: unknown, now: number): void {
    const r = validateFrameReport(report);
    if (!Number.isFinite(now)) throw new FrameReportError('now', `must be a finite time, got ${now}`);
    const o = this.options;
    this.receivedAt = now;
    this.hidden = r.hidden;
    if (r.intervalMs !== null) this.intervalMs = r.intervalMs;
    if (r.hidden) {
      this.drops = 0; // nothing is drawn, nothing can drop
      this.budget = o.hiddenMs;
      return;
    }
    this.drops = r.dropped;
    if (this.intervalMs === null) return; // shown, but no frame measured yet: the constant until one is
    const base = this.baseMs(this.intervalMs);
    const from = Math.min(this.budget ?? base, base);
    this.budget = r.dropped + r.longFrames > 0 ? Math.max(o.minMs, from * o.decrease) : Math.min(base, from + o.increaseMs);
  }

  /** fraction × interval, kept within [minMs, hiddenMs]. */
  baseMs(intervalMs: number): number {
    const o = this.options;
    return Math.min(o.hiddenMs, Math.max(o.minMs, o.fraction * intervalMs));
  }

  /** The budget to plan under at `now`, and where it came from. */
  current(now: number): BudgetNow {
    const fresh = this.hidden || now - this.receivedAt <= this.options.staleMs;
    if (!fresh || this.budget === null || (!this.hidden && this.intervalMs === null)) return { budgetMs: this.fallbackMs, source: 'constant', frameDrops: 0, frameIntervalMs: null };
    return { budgetMs: this.budget, source: 'frames', frameDrops: this.drops, frameIntervalMs: this.hidden ? null : this.intervalMs };
  }

  budgetMs(now: number): number {
    return this.current(now).budgetMs;
  }
}

/** The budget of an engine without frame reports (scheduler.budget 'constant'). */
export function constantBudget(budgetMs: number): BudgetNow {
  return { budgetMs, source: 'constant', frameDrops: 0, frameIntervalMs: null };
}
