/**
 * What a kernel argument binds: a whole GPU buffer, or a byte range of one. Ranges let one set of
 * activations be worked on in row chunks (the trainer's token-chunked work units) without copies;
 * an offset must be a multiple of the device's minStorageBufferOffsetAlignment.
 */
import { ShapeError } from './errors.ts';

export interface BufferRange {
  buffer: GPUBuffer;
  offset?: number;
  size?: number;
}

export type Binding = GPUBuffer | BufferRange;

export function isRange(b: Binding): b is BufferRange {
  // A range names its buffer; a GPUBuffer has no `buffer` member.
  return 'buffer' in b;
}

/** The buffer behind a binding (aliasing checks compare these). */
export function bufferOf(b: Binding): GPUBuffer {
  return isRange(b) ? b.buffer : b;
}

/** Bytes a binding gives the shader. */
export function bindingBytes(b: Binding): number {
  if (!isRange(b)) return b.size;
  const offset = b.offset ?? 0;
  return b.size ?? b.buffer.size - offset;
}

/**
 * Rows [first, first + count) of a row-major buffer whose rows are `rowBytes` long, as a range.
 * Throws a ShapeError when the offset breaks the device's alignment or the rows do not fit.
 */
export function rowRange(kernel: string, argument: string, buffer: GPUBuffer, rowBytes: number, first: number, count: number, alignment: number): BufferRange {
  const offset = first * rowBytes;
  const size = count * rowBytes;
  if (offset % alignment !== 0) throw new ShapeError(kernel, argument, `rows from ${first} start at byte ${offset}, not a multiple of the device's storage offset alignment (${alignment})`);
  if (offset + size > buffer.size) throw new ShapeError(kernel, argument, `rows ${first}..${first + count - 1} (${offset + size} bytes) do not fit a buffer of ${buffer.size} bytes`);
  return { buffer, offset, size };
}

/** Can rows starting at multiples of `rows` rows of `rowBytes` be bound (offsets aligned)? */
export function rowChunksAligned(rowBytes: number, rows: number, alignment: number): boolean {
  return (rowBytes * rows) % alignment === 0;
}
