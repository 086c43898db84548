/** A simulated frame source for FrameMonitor tests (node and browser): the test says when each frame happens. */
import type { FrameClock } from '../../src/engine/frame-monitor.ts';

/** A fake rAF + visibility + long-animation-frame source: the test says when each frame happens. */
export class FakeFrames implements FrameClock {
  private callbacks = new Map<number, (ts: number) => void>();
  private nextHandle = 1;
  private listeners = new Set<() => void>();
  private longFrameSink: ((n: number) => void) | null = null;
  isHidden = false;
  observeLongFrames: FrameClock['observeLongFrames'];

  constructor(longFrames = true) {
    this.observeLongFrames = longFrames
      ? (sink) => {
          this.longFrameSink = sink;
          return () => (this.longFrameSink = null);
        }
      : null;
  }

  requestAnimationFrame(cb: (ts: number) => void): number {
    const h = this.nextHandle++;
    this.callbacks.set(h, cb);
    return h;
  }
  cancelAnimationFrame(h: number): void {
    this.callbacks.delete(h);
  }
  hidden(): boolean {
    return this.isHidden;
  }
  onVisibilityChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Run the frame at `ts` (the callbacks requested before it). */
  frame(ts: number): void {
    const due = [...this.callbacks.values()];
    this.callbacks.clear();
    for (const cb of due) cb(ts);
  }
  /** Frames every `interval` ms over [from, to]. */
  frames(from: number, to: number, interval: number): void {
    for (let t = from; t <= to; t += interval) this.frame(t);
  }
  setHidden(h: boolean): void {
    this.isHidden = h;
    for (const l of this.listeners) l();
  }
  longFrame(n = 1): void {
    this.longFrameSink?.(n);
  }
  get pending(): number {
    return this.callbacks.size;
  }
  get observing(): boolean {
    return this.longFrameSink !== null;
  }
  get listening(): number {
    return this.listeners.size;
  }
}
