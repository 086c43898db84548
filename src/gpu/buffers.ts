/**
 * Buffer helpers and the split of large tensors over several bindings.
 * A weight matrix [rows, cols] larger than maxStorageBufferBindingSize is cut along rows into
 * shards, each its own GPUBuffer, so kernels dispatch once per shard instead of refusing the model.
 */
import { LimitsTooSmallError } from './errors.ts';
import type { GpuContext } from './device.ts';

// GPUBufferUsage is a global in browsers and in the `webgpu` package's globals: read it lazily.
const storageUsage = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
const uniformUsage = () => GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST;

/** Round up to a multiple of 4 bytes (writeBuffer and binding sizes need it). */
export function align4(bytes: number): number {
  return Math.ceil(bytes / 4) * 4;
}

export function createStorage(ctx: GpuContext, bytes: number, label: string): GPUBuffer {
  const size = Math.max(16, align4(bytes));
  if (size > ctx.limits.maxBufferSize) throw new LimitsTooSmallError('maxBufferSize', size, ctx.limits.maxBufferSize, label);
  return ctx.device.createBuffer({ label, size, usage: storageUsage() });
}

/** A storage buffer initialised with `data`. */
export function uploadStorage(ctx: GpuContext, data: ArrayBufferView, label: string): GPUBuffer {
  const buf = createStorage(ctx, data.byteLength, label);
  const body = data.byteLength - (data.byteLength % 4);
  if (body > 0) ctx.device.queue.writeBuffer(buf, 0, data.buffer, data.byteOffset, body);
  if (data.byteLength % 4) {
    // Tail that is not a multiple of 4 bytes: pad it through a small copy.
    const tail = new Uint8Array(4);
    const start = data.byteLength - (data.byteLength % 4);
    tail.set(new Uint8Array(data.buffer, data.byteOffset + start, data.byteLength % 4));
    ctx.device.queue.writeBuffer(buf, start, tail);
  }
  return buf;
}

/** A uniform buffer holding `bytes` (from a UniformLayout's pack()). */
export function uploadUniform(ctx: GpuContext, bytes: ArrayBuffer, label: string): GPUBuffer {
  const buf = ctx.device.createBuffer({ label, size: bytes.byteLength, usage: uniformUsage() });
  ctx.device.queue.writeBuffer(buf, 0, bytes);
  return buf;
}

/** Copy `bytes` of `src` into a mappable buffer and return them. Only for tests, load and sampled ids. */
export async function readBuffer(ctx: GpuContext, src: GPUBuffer, bytes = src.size, srcOffset = 0): Promise<ArrayBuffer> {
  const size = align4(bytes);
  const staging = ctx.device.createBuffer({ label: 'readback', size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = ctx.device.createCommandEncoder({ label: 'readback' });
  enc.copyBufferToBuffer(src, srcOffset, staging, 0, size);
  ctx.device.queue.submit([enc.finish()]);
  try {
    await staging.mapAsync(GPUMapMode.READ);
    const out = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    return out;
  } finally {
    staging.destroy(); // also when the map fails (a lost device): the staging buffer is ours
  }
}

export async function readF32(ctx: GpuContext, src: GPUBuffer, count: number, elemOffset = 0): Promise<Float32Array> {
  return new Float32Array(await readBuffer(ctx, src, count * 4, elemOffset * 4));
}

export async function readU32(ctx: GpuContext, src: GPUBuffer, count: number, elemOffset = 0): Promise<Uint32Array> {
  return new Uint32Array(await readBuffer(ctx, src, count * 4, elemOffset * 4));
}

/** A contiguous range of rows of a tensor that fits one binding. */
export interface RowShard {
  rowStart: number;
  rows: number;
}

/**
 * Cut `rows` rows of `bytesPerRow` each into shards of at most `maxBinding` bytes. Shard sizes are
 * multiples of `rowMultiple` (so a kernel's row tiles never straddle two shards). Throws when a
 * single tile of rows does not fit one binding: that is a real "limits too small" case.
 */
export function planRowShards(rows: number, bytesPerRow: number, maxBinding: number, rowMultiple = 1, what = 'tensor'): RowShard[] {
  const tileBytes = bytesPerRow * rowMultiple;
  if (tileBytes > maxBinding) throw new LimitsTooSmallError('maxStorageBufferBindingSize', tileBytes, maxBinding, `${what} (one tile of ${rowMultiple} rows)`);
  const rowsPerShard = Math.floor(maxBinding / tileBytes) * rowMultiple;
  const shards: RowShard[] = [];
  for (let r = 0; r < rows; r += rowsPerShard) shards.push({ rowStart: r, rows: Math.min(rowsPerShard, rows - r) });
  return shards;
}
