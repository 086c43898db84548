/**
 * safetensors, read as a stream: the 8-byte header length, the JSON header, then the tensor bytes
 * in file order, handed to a sink in pieces as they arrive. Peak memory is one network chunk plus
 * the header, never the whole model, so a 2 GB checkpoint loads on a phone-sized JS heap; the sink
 * writes each piece to the GPU (queue.writeBuffer) where conversion to the storage format happens.
 *
 * Every malformed input gets a SafetensorsError naming the file, the tensor and the field.
 */
export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'I32' | 'I64' | 'U8' | 'I8' | 'BOOL' | 'F64' | 'I16' | 'U16' | 'U32' | 'U64' | 'F8_E4M3' | 'F8_E5M2';

const DTYPE_BYTES: Record<SafetensorsDtype, number> = {
  F64: 8, I64: 8, U64: 8, F32: 4, I32: 4, U32: 4, F16: 2, BF16: 2, I16: 2, U16: 2, U8: 1, I8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
};

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Byte range within the data section (after the header). */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Bytes before the data section: 8 + JSON header length. */
  dataOffset: number;
  /** Tensors sorted by their begin offset (file order). */
  tensors: TensorInfo[];
  metadata: Record<string, string>;
}

export class SafetensorsError extends Error {
  readonly code = 'bad-safetensors';
  constructor(
    readonly file: string,
    readonly where: string,
    detail: string,
  ) {
    super(`${file}: ${where}: ${detail}`);
    this.name = 'SafetensorsError';
  }
}

/** Largest JSON header we accept (the format's own reference implementation caps it at 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

export function dtypeBytes(dtype: SafetensorsDtype): number {
  return DTYPE_BYTES[dtype];
}

/** Header length from the first 8 bytes (little-endian u64). */
export function headerLength(first8: Uint8Array, file: string): number {
  if (first8.length < 8) throw new SafetensorsError(file, 'header', `file is ${first8.length} bytes, shorter than the 8-byte header length`);
  const dv = new DataView(first8.buffer, first8.byteOffset, 8);
  const lo = dv.getUint32(0, true);
  const hi = dv.getUint32(4, true);
  const n = hi * 2 ** 32 + lo;
  if (n < 2 || n > MAX_HEADER_BYTES) throw new SafetensorsError(file, 'header', `header length ${n} is outside [2, ${MAX_HEADER_BYTES}]`);
  return n;
}

/** Parse and validate the JSON header; `dataBytes` (if known) bounds the offsets. */
export function parseHeader(json: Uint8Array, file: string, dataBytes?: number): SafetensorsHeader {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(json).trimEnd());
  } catch (e) {
    throw new SafetensorsError(file, 'header', `is not valid UTF-8 JSON: ${(e as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new SafetensorsError(file, 'header', 'must be a JSON object');
  const tensors: TensorInfo[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(raw as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof v !== 'object' || v === null) throw new SafetensorsError(file, '__metadata__', 'must be an object of strings');
      metadata = Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, s]) => [k, String(s)]));
      continue;
    }
    tensors.push(parseTensorEntry(name, v, file));
  }
  tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
  // Offsets must tile the data section without gaps or overlaps (as the reference implementation checks).
  let expect = 0;
  for (const t of tensors) {
    if (t.begin !== expect) throw new SafetensorsError(file, `tensor '${t.name}'`, `data_offsets start at ${t.begin}, expected ${expect} (gap or overlap)`);
    expect = t.end;
  }
  if (dataBytes !== undefined && expect !== dataBytes) throw new SafetensorsError(file, 'data', `tensors cover ${expect} bytes, the data section has ${dataBytes}`);
  return { dataOffset: 8 + json.length, tensors, metadata };
}

function parseTensorEntry(name: string, v: unknown, file: string): TensorInfo {
  const where = `tensor '${name}'`;
  if (typeof v !== 'object' || v === null) throw new SafetensorsError(file, where, 'must be an object with dtype, shape, data_offsets');
  const e = v as Record<string, unknown>;
  const dtype = e.dtype as SafetensorsDtype;
  if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) throw new SafetensorsError(file, `${where}.dtype`, `'${String(e.dtype)}' is not a safetensors dtype`);
  const shape = e.shape;
  if (!Array.isArray(shape) || shape.some((d) => typeof d !== 'number' || !Number.isInteger(d) || d < 0)) throw new SafetensorsError(file, `${where}.shape`, `must be a list of non-negative integers, got ${JSON.stringify(shape)}`);
  const off = e.data_offsets;
  if (!Array.isArray(off) || off.length !== 2 || off.some((d) => typeof d !== 'number' || !Number.isInteger(d) || d < 0) || off[1] < off[0]) throw new SafetensorsError(file, `${where}.data_offsets`, `must be [begin, end] with 0 <= begin <= end, got ${JSON.stringify(off)}`);
  const need = (shape as number[]).reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
  if (off[1] - off[0] !== need) throw new SafetensorsError(file, `${where}.data_offsets`, `span ${off[1] - off[0]} bytes, but ${dtype} ${JSON.stringify(shape)} needs ${need}`);
  return { name, dtype, shape: shape as number[], begin: off[0], end: off[1] };
}

/** Receives tensor bytes in file order. `chunk` pieces of one tensor arrive in order and cover it exactly. */
export interface TensorSink {
  /** Called once per tensor before its bytes; return false to skip the tensor's bytes (not needed). */
  begin?(t: TensorInfo): boolean | void | Promise<boolean | void>;
  /** `offset` is the byte offset of `bytes` within the tensor. `bytes` is only valid during the call. */
  chunk(t: TensorInfo, offset: number, bytes: Uint8Array): void | Promise<void>;
  end?(t: TensorInfo): void | Promise<void>;
}

/**
 * Read a whole safetensors stream, handing tensor bytes to `sink`. Returns the header. Throws a
 * SafetensorsError for a malformed header or a stream that ends early or runs long.
 */
export async function readSafetensors(stream: ReadableStream<Uint8Array>, file: string, sink: TensorSink, totalBytes?: number): Promise<SafetensorsHeader> {
  const reader = stream.getReader();
  let pending: Uint8Array = new Uint8Array(0);
  let done = false;
  const pull = async (): Promise<boolean> => {
    if (done) return false;
    const r = await reader.read();
    if (r.done) {
      done = true;
      return false;
    }
    pending = pending.length ? concat(pending, r.value) : r.value;
    return true;
  };
  const need = async (n: number, what: string) => {
    while (pending.length < n) if (!(await pull())) throw new SafetensorsError(file, what, `stream ended after ${pending.length} of ${n} bytes`);
  };

  try {
    await need(8, 'header');
    const hlen = headerLength(pending.subarray(0, 8), file);
    await need(8 + hlen, 'header');
    const header = parseHeader(pending.subarray(8, 8 + hlen), file, totalBytes === undefined ? undefined : totalBytes - 8 - hlen);
    pending = pending.subarray(8 + hlen);

    for (const t of header.tensors) {
      const wanted = (await sink.begin?.(t)) !== false;
      let offset = 0;
      const size = t.end - t.begin;
      while (offset < size) {
        if (pending.length === 0 && !(await pull())) throw new SafetensorsError(file, `tensor '${t.name}'`, `stream ended after ${offset} of ${size} bytes`);
        const take = Math.min(size - offset, pending.length);
        if (wanted) await sink.chunk(t, offset, pending.subarray(0, take));
        pending = pending.subarray(take);
        offset += take;
      }
      if (wanted) await sink.end?.(t);
    }
    if (pending.length > 0 || (await pull())) throw new SafetensorsError(file, 'data', 'has bytes after the last tensor');
    return header;
  } finally {
    reader.releaseLock();
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** Build a safetensors file in memory (tests, and adapter export in the learning issue). */
export function writeSafetensors(tensors: { name: string; dtype: SafetensorsDtype; shape: number[]; data: Uint8Array }[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const need = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    if (t.data.length !== need) throw new SafetensorsError('(writing)', `tensor '${t.name}'`, `has ${t.data.length} bytes, ${t.dtype} ${JSON.stringify(t.shape)} needs ${need}`);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + need] };
    offset += need;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8; // keep the data section 8-byte aligned, padded with spaces
  const hj = new Uint8Array(padded).fill(0x20);
  hj.set(json);
  json = hj;
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 8);
  let at = 8 + json.length;
  for (const t of tensors) {
    out.set(t.data, at);
    at += t.data.length;
  }
  return out;
}
