/**
 * The streaming half of the loader: tensor bytes, as readSafetensors hands them over, go to the GPU
 * without a host copy of the tensor. Vectors (norms, biases) are written straight into their
 * buffer (or widened from raw halves by the convert kernel); matrices go through buildWeight, whose
 * pull of row batches is bridged to the parser's push by a ByteFeed. The host holds at most one
 * stream chunk plus a COMBINE_BYTES write-combining buffer; the GPU one batch of staging.
 */
import { createStorage } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/device.ts';
import { encodeDispatches, releaseDispatches, runOnce } from '../gpu/dispatch.ts';
import { convertHalfToF32, type HalfDtype } from '../kernels/convert.ts';
import { buildWeight } from '../kernels/quantize.ts';
import type { GpuWeight, WeightFormat } from '../kernels/weights.ts';
import type { ModelConfig } from './config.ts';
import { dtypeBytes, type TensorInfo } from './safetensors.ts';
import type { ExpectedTensor } from './tensors.ts';

/** Host bytes gathered before one writeBuffer (multiple of 4: intermediate writes stay aligned). */
export const COMBINE_BYTES = 2 ** 20;

/** A GpuContext whose createBuffer records every buffer, so a failed load can free them all. */
export function trackingContext(ctx: GpuContext): { ctx: GpuContext; created: Set<GPUBuffer> } {
  const created = new Set<GPUBuffer>();
  const device = new Proxy(ctx.device, {
    get(target, key) {
      if (key === 'createBuffer') {
        return (d: GPUBufferDescriptor) => {
          const b = target.createBuffer(d);
          created.add(b);
          return b;
        };
      }
      const v = Reflect.get(target, key, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { ctx: { ...ctx, device }, created };
}

/**
 * Single-producer single-consumer handoff of stream pieces: readSafetensors pushes a chunk and
 * waits until the consumer (buildWeight's rowsOf) has copied all of it; either side can fail the
 * other. This turns the parser's push into buildWeight's pull without buffering.
 */
class ByteFeed {
  private piece: Uint8Array | null = null;
  private producer: { resolve: () => void; reject: (e: unknown) => void } | null = null;
  private consumer: { resolve: () => void; reject: (e: unknown) => void } | null = null;
  private failure: { error: unknown } | null = null;

  push(bytes: Uint8Array): Promise<void> {
    if (this.failure) return Promise.reject(this.failure.error);
    if (bytes.length === 0) return Promise.resolve();
    this.piece = bytes;
    const done = new Promise<void>((resolve, reject) => (this.producer = { resolve, reject }));
    this.consumer?.resolve();
    this.consumer = null;
    return done;
  }

  /** Hand up to `max` bytes to `use` (synchronously: they are only valid during the call). */
  async take(max: number, use: (bytes: Uint8Array) => void): Promise<number> {
    while (!this.piece) {
      if (this.failure) throw this.failure.error;
      await new Promise<void>((resolve, reject) => (this.consumer = { resolve, reject }));
    }
    const out = this.piece.subarray(0, max);
    use(out);
    this.piece = out.length === this.piece.length ? null : this.piece.subarray(out.length);
    if (!this.piece) {
      this.producer?.resolve();
      this.producer = null;
    }
    return out.length;
  }

  fail(error: unknown): void {
    if (this.failure) return;
    this.failure = { error };
    this.producer?.reject(error);
    this.consumer?.reject(error);
    this.producer = this.consumer = null;
  }
}

/** Gathers host bytes and writes them to a GPU buffer in COMBINE_BYTES pieces (4-byte aligned). */
class GpuWriter {
  private fill = 0;
  private offset = 0;
  constructor(
    private readonly queue: GPUQueue,
    private readonly target: GPUBuffer,
    private readonly combine: Uint8Array<ArrayBuffer>,
  ) {}

  write(bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.length) {
      const n = Math.min(bytes.length - at, this.combine.length - this.fill);
      this.combine.set(bytes.subarray(at, at + n), this.fill);
      this.fill += n;
      at += n;
      if (this.fill === this.combine.length) this.flush();
    }
  }

  /** Write what is gathered, zero-padded to 4 bytes (only the last write of a target is padded). */
  flush(): void {
    if (this.fill === 0) return;
    const n = Math.ceil(this.fill / 4) * 4;
    this.combine.fill(0, this.fill, n);
    this.queue.writeBuffer(this.target, this.offset, this.combine, 0, n);
    this.offset += n;
    this.fill = 0;
  }
}

/** Reusable GPU staging of one load: raw half words and f32 rows, grown on demand. */
export class Staging {
  private raw: GPUBuffer | null = null;
  private f32: GPUBuffer | null = null;
  constructor(private readonly ctx: GpuContext) {}

  rawBuffer(bytes: number): GPUBuffer {
    if (!this.raw || this.raw.size < bytes) {
      this.raw?.destroy();
      this.raw = createStorage(this.ctx, bytes, 'load staging raw'); // [bytes / 4] u32: packed halves
    }
    return this.raw;
  }

  f32Buffer(bytes: number): GPUBuffer {
    if (!this.f32 || this.f32.size < bytes) {
      this.f32?.destroy();
      this.f32 = createStorage(this.ctx, bytes, 'load staging f32'); // [rows, K] f32
    }
    return this.f32;
  }
}

export interface UploadState {
  ctx: GpuContext;
  config: ModelConfig;
  format: WeightFormat;
  maxBatchBytes: number;
  staging: Staging;
  combine: Uint8Array<ArrayBuffer>;
  mats: Map<string, GpuWeight>;
  vecs: Map<string, GPUBuffer>;
}

/** Where one tensor's bytes go while it streams. */
export interface TensorUpload {
  chunk(bytes: Uint8Array): Promise<void> | void;
  end(): Promise<void>;
  /** Stop after a failure elsewhere; resolves when no GPU work of this tensor is pending. */
  abort(error: unknown): Promise<void>;
}

/**
 * A vector (norm, bias): F32 bytes go straight into its buffer; halves into raw staging, then the
 * convert kernel writes the f32 buffer.
 */
export function vectorUpload(s: UploadState, t: TensorInfo): TensorUpload {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const out = createStorage(s.ctx, n * 4, t.name); // [n] f32
  s.vecs.set(t.name, out);
  const half = t.dtype !== 'F32';
  const raw = half ? createStorage(s.ctx, n * 2, `${t.name} raw`) : null; // [ceil(n / 2)] u32
  const writer = new GpuWriter(s.ctx.device.queue, raw ?? out, s.combine);
  return {
    chunk: (bytes) => writer.write(bytes),
    async end() {
      writer.flush();
      if (raw) {
        await runOnce(s.ctx, [convertHalfToF32(s.ctx, { src: raw, dst: out, n, dtype: t.dtype as HalfDtype })]);
        raw.destroy();
      }
    },
    async abort() {},
  };
}

/**
 * A matrix (embedding, Linear): buildWeight pulls row batches; each batch's bytes are taken from
 * the feed as they arrive, written to GPU staging, widened to f32 there, and handed over.
 */
export function matrixUpload(s: UploadState, t: TensorInfo, role: ExpectedTensor): TensorUpload {
  const [N, K] = role.shape;
  const eb = dtypeBytes(t.dtype);
  const feed = new ByteFeed();
  let batches = 0;
  const rowsOf = async (rowStart: number, rows: number): Promise<GPUBuffer> => {
    // One batch in flight at a time bounds what the browser stages for writeBuffer.
    if (batches++ > 0) await s.ctx.device.queue.onSubmittedWorkDone();
    const n = rows * K;
    const f32 = s.staging.f32Buffer(n * 4);
    const raw = t.dtype === 'F32' ? f32 : s.staging.rawBuffer(n * eb);
    const writer = new GpuWriter(s.ctx.device.queue, raw, s.combine);
    for (let left = n * eb; left > 0; ) left -= await feed.take(left, (b) => writer.write(b));
    writer.flush();
    if (raw !== f32) {
      // Submitted, not awaited: buildWeight's own work on `f32` is queued after it.
      const enc = s.ctx.device.createCommandEncoder({ label: `widen ${t.name} rows ${rowStart}+${rows}` });
      const widen = [convertHalfToF32(s.ctx, { src: raw, dst: f32, n, dtype: t.dtype as HalfDtype })];
      encodeDispatches(enc, widen);
      s.ctx.device.queue.submit([enc.finish()]);
      releaseDispatches(widen); // freed once the submitted work is done
    }
    return f32;
  };
  const build = buildWeight(s.ctx, N, K, s.format, t.name, rowsOf, { maxBatchBytes: s.maxBatchBytes }).then((w) => {
    s.mats.set(t.name, w);
  });
  build.catch((e: unknown) => feed.fail(e));
  return {
    chunk: (bytes) => feed.push(bytes),
    end: () => build,
    async abort(error) {
      feed.fail(error);
      await build.catch(() => undefined);
    },
  };
}
