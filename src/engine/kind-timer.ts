/**
 * GPU time by kind of work inside one iteration's submissions, from timestamp queries: the engine
 * marks where the inference passes and the fine-tune passes of a submission begin and end (an empty
 * compute pass carrying one timestamp write per mark), and the time between consecutive marks goes
 * to the kind that ran there. The cost model then learns each kind from its own GPU time, and the
 * stats stream reports it. Without 'timestamp-query' (or past `capacity` marks) the engine falls
 * back to wall time of the whole iteration, and says so (`mode`, IterationStats.timing).
 *
 * The marks are resolved into one small buffer and mapped in parallel with the sampled ids (the same
 * wait, not an extra round trip), so the decode loop still blocks on one read-back per iteration.
 */
import type { GpuContext } from '../gpu/device.ts';

/** What a span of passes ran: the inference rows (prefill chunks and decodes, one batch) or fine-tune units. */
export type TimedKind = 'inference' | 'finetune';

export interface KindTimes {
  inference: number;
  finetune: number;
}

/** Marks one iteration can hold (3 per submission: start, kind change, end). */
const DEFAULT_CAPACITY = 64;

export class KindTimer {
  readonly mode: 'timestamp' | 'wall';
  private readonly querySet: GPUQuerySet | null = null;
  private readonly resolveBuf: GPUBuffer | null = null; // [capacity] u64 resolved timestamps
  private readonly readBuf: GPUBuffer | null = null; // [capacity] u64, MAP_READ copy of resolveBuf
  /** What ran after each mark of this iteration (null: a submission ended there). */
  private marks: (TimedKind | null)[] = [];
  private overflow = false;

  constructor(
    private readonly ctx: GpuContext,
    wanted: 'auto' | 'wall' = 'auto',
    readonly capacity = DEFAULT_CAPACITY,
  ) {
    this.mode = wanted === 'auto' && ctx.features.timestampQuery ? 'timestamp' : 'wall';
    if (this.mode === 'wall') return;
    const d = ctx.device;
    this.querySet = d.createQuerySet({ label: 'kind-timer', type: 'timestamp', count: capacity });
    this.resolveBuf = d.createBuffer({ label: 'kind-timer.resolve', size: capacity * 8, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    this.readBuf = d.createBuffer({ label: 'kind-timer.read', size: capacity * 8, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  }

  /** Start a new iteration. */
  begin(): void {
    this.marks = [];
    this.overflow = false;
  }

  /** Record the GPU time on `enc` here: from now on `kind` runs (null: this submission ends here). */
  mark(enc: GPUCommandEncoder, kind: TimedKind | null): void {
    if (this.mode === 'wall' || this.overflow) return;
    if (this.marks.length >= this.capacity) {
      this.overflow = true;
      return;
    }
    const i = this.marks.push(kind) - 1;
    enc.beginComputePass({ label: `mark ${kind ?? 'end'}`, timestampWrites: { querySet: this.querySet!, beginningOfPassWriteIndex: i } }).end();
  }

  /** This iteration has usable GPU times (timestamp mode, marks within capacity). */
  get timed(): boolean {
    return this.mode === 'timestamp' && !this.overflow && this.marks.length > 1;
  }

  /** On the iteration's last encoder, before finish(): resolve the marks into the read buffer. */
  resolve(enc: GPUCommandEncoder): void {
    if (!this.timed) return;
    const n = this.marks.length;
    enc.resolveQuerySet(this.querySet!, 0, n, this.resolveBuf!, 0);
    enc.copyBufferToBuffer(this.resolveBuf!, 0, this.readBuf!, 0, n * 8);
  }

  /** After the last submission: GPU ms per kind of this iteration, or null when it was not timed. */
  async read(): Promise<KindTimes | null> {
    if (!this.timed) return null;
    const marks = this.marks;
    const n = marks.length;
    await this.readBuf!.mapAsync(GPUMapMode.READ, 0, n * 8);
    const ts = new BigUint64Array(this.readBuf!.getMappedRange(0, n * 8).slice(0));
    this.readBuf!.unmap();
    return kindTimes(marks, ts);
  }

  destroy(): void {
    this.querySet?.destroy();
    this.resolveBuf?.destroy();
    this.readBuf?.destroy();
  }
}

/**
 * The time between consecutive marks goes to the kind that ran after the first of them (a span that
 * starts at an end mark is the gap between submissions and counts for nothing). Timestamps that go
 * backwards (a device that reorders or resets them) count as 0.
 */
export function kindTimes(marks: readonly (TimedKind | null)[], ts: BigUint64Array): KindTimes {
  const out: KindTimes = { inference: 0, finetune: 0 };
  for (let i = 0; i + 1 < marks.length; i++) {
    const k = marks[i];
    if (k === null) continue;
    const a = ts[i], b = ts[i + 1];
    if (b > a) out[k] += Number(b - a) / 1e6;
  }
  return out;
}
