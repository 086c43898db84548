/**
 * GPU profiler. With 'timestamp-query' each labelled compute pass gets begin/end timestamps and
 * `collect()` returns per-pass GPU times; without it, the profiler falls back to wall-clock:
 * the whole submission is timed from `begin()` to queue completion and reported as one entry.
 * `mode` says which one produced the numbers, so nobody mistakes wall time for GPU time.
 */
import type { GpuContext } from './device.ts';

export interface ProfileEntry {
  label: string;
  ms: number;
}

export type ProfilerMode = 'timestamp' | 'wall-clock';

export class GpuProfiler {
  readonly mode: ProfilerMode;
  private readonly querySet?: GPUQuerySet;
  private readonly resolveBuf?: GPUBuffer;
  private readonly readBuf?: GPUBuffer;
  private labels: string[] = [];
  private t0 = 0;

  constructor(
    private readonly ctx: GpuContext,
    /** Most passes timed per submission. */
    readonly capacity = 256,
    forceWallClock = false,
  ) {
    this.mode = ctx.features.timestampQuery && !forceWallClock ? 'timestamp' : 'wall-clock';
    if (this.mode === 'timestamp') {
      const d = ctx.device;
      this.querySet = d.createQuerySet({ label: 'profiler', type: 'timestamp', count: capacity * 2 });
      // [capacity, 2] u64 timestamps, begin and end of each pass
      this.resolveBuf = d.createBuffer({ label: 'profiler-resolve', size: capacity * 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
      this.readBuf = d.createBuffer({ label: 'profiler-read', size: capacity * 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    }
  }

  /** Start a new submission's profile. */
  begin(): void {
    this.labels = [];
    this.t0 = performance.now();
  }

  /** Timestamp writes for a pass labelled `label`, or undefined in wall-clock mode or when full. */
  pass(label: string): GPUComputePassTimestampWrites | undefined {
    if (this.mode !== 'timestamp' || this.labels.length >= this.capacity) return undefined;
    const i = this.labels.push(label) - 1;
    return { querySet: this.querySet!, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /** Append the resolve/copy commands; call once on the encoder before finishing it. */
  resolve(encoder: GPUCommandEncoder): void {
    if (this.mode !== 'timestamp' || this.labels.length === 0) return;
    const n = this.labels.length * 2;
    encoder.resolveQuerySet(this.querySet!, 0, n, this.resolveBuf!, 0);
    encoder.copyBufferToBuffer(this.resolveBuf!, 0, this.readBuf!, 0, n * 8);
  }

  /** After submit: wait for the GPU and return the timings of this submission. */
  async collect(): Promise<ProfileEntry[]> {
    if (this.mode === 'wall-clock' || this.labels.length === 0) {
      await this.ctx.device.queue.onSubmittedWorkDone();
      return [{ label: 'submission', ms: performance.now() - this.t0 }];
    }
    const n = this.labels.length;
    await this.readBuf!.mapAsync(GPUMapMode.READ, 0, n * 16);
    const ts = new BigUint64Array(this.readBuf!.getMappedRange(0, n * 16).slice(0));
    this.readBuf!.unmap();
    return this.labels.map((label, i) => ({ label, ms: ts[2 * i + 1] > ts[2 * i] ? Number(ts[2 * i + 1] - ts[2 * i]) / 1e6 : 0 }));
  }

  destroy(): void {
    this.querySet?.destroy();
    this.resolveBuf?.destroy();
    this.readBuf?.destroy();
  }
}
