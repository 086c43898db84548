/**
 * The page side of the frame budget (src/scheduler/frame-budget.ts): watches this page's frames and
 * sends a FrameReport about every REPORT_MS, which the client forwards to the engine worker.
 *
 * - Frame interval: requestAnimationFrame deltas; each window's median, and the interval is the
 *   smallest median of the last INTERVAL_WINDOWS windows (~1 s), so a stretch of janky frames does
 *   not read as a slower display, while a display that really changes rate is followed within 1 s.
 * - Drops: a delta over DROP_FACTOR × the interval skipped round(delta / interval) − 1 frames (at
 *   least one). long-animation-frame entries (PerformanceObserver, where supported) are counted too.
 * - Visibility: on 'hidden' one hidden report (the engine may then take long submissions); on
 *   'visible' a report at once with the last known interval, so the budget shrinks before the first
 *   visible window ends. Frames seen while hidden are not measured.
 * The browser pieces come in through a FrameClock, so tests drive a simulated frame stream; stop()
 * cancels the pending frame, the observer and the listener.
 */
import type { FrameReport } from '../scheduler/frame-budget.ts';

/** The browser functions the monitor needs (browserFrameClock() binds the real ones). */
export interface FrameClock {
  requestAnimationFrame(callback: (timestamp: number) => void): number;
  cancelAnimationFrame(handle: number): void;
  hidden(): boolean;
  /** Subscribe to visibility changes; returns the unsubscribe. */
  onVisibilityChange(listener: () => void): () => void;
  /** Count long-animation-frame entries as they come; returns the disconnect. null: not supported. */
  observeLongFrames: ((onEntries: (count: number) => void) => () => void) | null;
}

export interface FrameMonitorOptions {
  /** Window of one report (ms, default REPORT_MS). */
  reportMs?: number;
}

/** One report per this many ms of frames. */
export const REPORT_MS = 250;
/** A delta this many intervals long (or more) dropped frames. */
export const DROP_FACTOR = 1.5;
/** Windows whose medians the interval estimate takes the smallest of. */
const INTERVAL_WINDOWS = 4;

/** This window's real functions, or null where there is no rAF or no document (Node, a worker). */
export function browserFrameClock(): FrameClock | null {
  if (typeof requestAnimationFrame !== 'function' || typeof cancelAnimationFrame !== 'function' || typeof document === 'undefined') return null;
  const supported = typeof PerformanceObserver === 'function' && (PerformanceObserver.supportedEntryTypes ?? []).includes('long-animation-frame');
  return {
    requestAnimationFrame: (cb) => requestAnimationFrame(cb),
    cancelAnimationFrame: (h) => cancelAnimationFrame(h),
    hidden: () => document.visibilityState === 'hidden',
    onVisibilityChange(listener) {
      document.addEventListener('visibilitychange', listener);
      return () => document.removeEventListener('visibilitychange', listener);
    },
    observeLongFrames: supported
      ? (onEntries) => {
          const observer = new PerformanceObserver((list) => onEntries(list.getEntries().length));
          observer.observe({ type: 'long-animation-frame' });
          return () => observer.disconnect();
        }
      : null,
  };
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export class FrameMonitor {
  readonly reportMs: number;
  private handle: number | null = null;
  private running = false;
  private cleanups: (() => void)[] = [];
  private deltas: number[] = [];
  private lastTs: number | null = null;
  private windowStart: number | null = null;
  private longFrames = 0;
  /** Medians of the last windows (newest last). */
  private medians: number[] = [];
  private hidden = false;
  /** Reports sent (tests, diagnostics). */
  sent = 0;

  constructor(
    private readonly clock: FrameClock,
    private readonly send: (report: FrameReport) => void,
    options: FrameMonitorOptions = {},
  ) {
    const reportMs = options.reportMs ?? REPORT_MS;
    if (!(Number.isFinite(reportMs) && reportMs > 0)) throw new RangeError(`frame monitor: reportMs must be a finite number > 0, got ${reportMs}`);
    this.reportMs = reportMs;
  }

  /** The current interval estimate (ms), or null before a full window. */
  get intervalMs(): number | null {
    return this.medians.length ? Math.min(...this.medians) : null;
  }

  get started(): boolean {
    return this.running;
  }

  /** Start watching (idempotent). A page hidden now reports so at once. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.cleanups.push(this.clock.onVisibilityChange(() => this.visibilityChanged()));
    const observe = this.clock.observeLongFrames;
    if (observe) this.cleanups.push(observe((n) => (this.longFrames += this.hidden ? 0 : n)));
    this.hidden = this.clock.hidden();
    if (this.hidden) this.emit({ intervalMs: null, frames: 0, dropped: 0, longFrames: 0, hidden: true });
    this.handle = this.clock.requestAnimationFrame((ts) => this.frame(ts));
  }

  /** Stop: the pending frame is cancelled, the observer and the listener removed (idempotent). */
  stop(): void {
    if (!this.running) return;
    this.running = false;
    if (this.handle !== null) this.clock.cancelAnimationFrame(this.handle);
    this.handle = null;
    for (const c of this.cleanups.splice(0)) c();
    this.resetWindow();
  }

  private frame(ts: number): void {
    this.handle = null;
    if (!this.running) return;
    if (!this.hidden) {
      if (this.lastTs !== null && ts > this.lastTs) this.deltas.push(ts - this.lastTs);
      this.lastTs = ts;
      this.windowStart ??= ts;
      if (ts - this.windowStart >= this.reportMs && this.deltas.length > 0) this.flush(ts);
    }
    this.handle = this.clock.requestAnimationFrame((t) => this.frame(t));
  }

  private flush(ts: number): void {
    this.medians.push(median(this.deltas));
    if (this.medians.length > INTERVAL_WINDOWS) this.medians.shift();
    const interval = this.intervalMs!;
    let dropped = 0;
    for (const d of this.deltas) if (d > DROP_FACTOR * interval) dropped += Math.max(1, Math.round(d / interval) - 1);
    this.emit({ intervalMs: interval, frames: this.deltas.length, dropped, longFrames: this.longFrames, hidden: false });
    this.deltas = [];
    this.longFrames = 0;
    this.windowStart = ts;
  }

  private visibilityChanged(): void {
    if (!this.running) return;
    const hidden = this.clock.hidden();
    if (hidden === this.hidden) return;
    this.hidden = hidden;
    // The gap across a hidden stretch is not a drop: measuring starts again with the next frame.
    this.resetWindow();
    this.emit({ intervalMs: hidden ? null : this.intervalMs, frames: 0, dropped: 0, longFrames: 0, hidden });
  }

  private resetWindow(): void {
    this.deltas = [];
    this.lastTs = null;
    this.windowStart = null;
    this.longFrames = 0;
  }

  private emit(report: FrameReport): void {
    this.sent++;
    try {
      this.send(report);
    } catch {
      // a failing sink (a worker that went away) never breaks the page's frame loop
    }
  }
}
