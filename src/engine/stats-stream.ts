/**
 * The engine's stats stream: listeners of plain-data records (src/scheduler/stats.ts), a failing
 * listener never stops serving; and the throttled records — GPU memory by owner and the prefix
 * cache's counts, each at most once a second and only when they changed.
 */
import type { GpuTally } from '../gpu/tally.ts';
import type { MemoryStats, RequestStats, StatsRecord } from '../scheduler/stats.ts';
import type { PrefixReuse } from './prefix.ts';
import type { Request } from './request.ts';

/** Memory and prefix records are sent at most this often (ms). */
const THROTTLE_MS = 1000;

export class StatsStream {
  private readonly listeners = new Set<(r: StatsRecord) => void>();
  private memoryAt = -Infinity;
  private memoryLast: { buffers: number; bytes: number } | null = null;
  private prefixAt = -Infinity;
  private prefixLast = '';

  /** Receive the records; returns the unsubscribe. */
  on(listener: (r: StatsRecord) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Anyone listening (records are not even built otherwise). */
  get active(): boolean {
    return this.listeners.size > 0;
  }

  emit(r: StatsRecord): void {
    for (const l of this.listeners) {
      try {
        l(r);
      } catch {
        // a failing listener never stops serving
      }
    }
  }

  /** GPU memory by owner (the tally's snapshot walks every live buffer: throttled). */
  memory(t: number, tally: GpuTally): void {
    if (!this.active || t - this.memoryAt < THROTTLE_MS) return;
    this.memoryAt = t;
    const s = tally.snapshot();
    if (this.memoryLast && this.memoryLast.buffers === s.buffers && this.memoryLast.bytes === s.bytes) return;
    this.memoryLast = { buffers: s.buffers, bytes: s.bytes };
    this.emit({ type: 'memory', t, buffers: s.buffers, bytes: s.bytes, querySets: s.querySets, byOwner: s.byOwner } satisfies MemoryStats);
  }

  /** The prefix cache's counts. */
  prefix(t: number, prefix: PrefixReuse | null): void {
    if (!prefix || !this.active || t - this.prefixAt < THROTTLE_MS) return;
    const rec = prefix.record(t);
    const sig = `${rec.queries},${rec.cachedBlocks},${rec.evictions},${rec.invalidated}`;
    if (sig === this.prefixLast) return;
    this.prefixAt = t;
    this.prefixLast = sig;
    this.emit(rec);
  }

  /** A finished request's record. */
  request(r: Request, t: number): void {
    if (!this.active) return;
    const times = r.tokenTimes;
    const rec: RequestStats = {
      type: 'request', id: `req-${r.id}`, t, arrivedAt: r.createdAt, promptTokens: r.promptIds.length, completionTokens: r.output.length,
      ttftMs: times.length ? times[0] - r.createdAt : null, tbtMs: times.slice(1).map((x, i) => x - times[i]),
      finishReason: r.finishReason ?? 'error', adapter: r.settings.adapter, cachedTokens: r.cachedTokens,
    };
    this.emit(rec);
  }
}
