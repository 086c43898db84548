import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { readSafetensors, SafetensorsError, writeSafetensors, type TensorInfo } from '../../src/model/safetensors.ts';

const modelBytes = new Uint8Array(readFileSync(new URL('../../public/models/stories260K/model.safetensors', import.meta.url)));

/** A stream that delivers `bytes` in pieces of `chunk` bytes (network-like). */
function streamOf(bytes: Uint8Array, chunk: number): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(c) {
      if (at >= bytes.length) return c.close();
      c.enqueue(bytes.slice(at, at + chunk));
      at += chunk;
    },
  });
}

async function collect(bytes: Uint8Array, chunk: number, file = 'model.safetensors') {
  const got = new Map<string, Uint8Array>();
  const header = await readSafetensors(streamOf(bytes, chunk), file, {
    begin: (t) => void got.set(t.name, new Uint8Array(t.end - t.begin)),
    chunk: (t, off, b) => got.get(t.name)!.set(b, off),
  }, bytes.length);
  return { header, got };
}

describe('safetensors streaming reader', () => {
  it('reads the real stories260K checkpoint in small chunks, bytes identical', async () => {
    const { header, got } = await collect(modelBytes, 4099);
    expect(header.tensors).toHaveLength(47);
    const emb = header.tensors.find((t) => t.name === 'model.embed_tokens.weight') as TensorInfo;
    expect(emb.dtype).toBe('F32');
    expect(emb.shape).toEqual([512, 64]);
    const slice = modelBytes.subarray(header.dataOffset + emb.begin, header.dataOffset + emb.end);
    expect(Buffer.compare(got.get(emb.name)!, slice)).toBe(0);
  });

  it('gives every chunk in order and lets the sink skip tensors', async () => {
    const seen: string[] = [];
    await readSafetensors(streamOf(modelBytes, 1 << 20), 'm', { begin: (t) => t.name.includes('norm'), chunk: (t) => void seen.push(t.name) });
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((n) => n.includes('norm'))).toBe(true);
  });

  it('round-trips what writeSafetensors makes', async () => {
    const a = new Uint8Array(new Float32Array([1, 2, 3, 4, 5, 6]).buffer);
    const b = new Uint8Array([1, 2, 3, 4]); // BF16 [2]
    const file = writeSafetensors([{ name: 'a', dtype: 'F32', shape: [2, 3], data: a }, { name: 'b', dtype: 'BF16', shape: [2], data: b }], { format: 'pt' });
    const { header, got } = await collect(file, 5);
    expect(header.metadata).toEqual({ format: 'pt' });
    expect([...got.get('a')!]).toEqual([...a]);
    expect([...got.get('b')!]).toEqual([...b]);
    expect(header.dataOffset % 8).toBe(0);
  });

  const bad = (json: string, data = new Uint8Array(0)) => {
    const j = new TextEncoder().encode(json);
    const out = new Uint8Array(8 + j.length + data.length);
    new DataView(out.buffer).setUint32(0, j.length, true);
    out.set(j, 8);
    out.set(data, 8 + j.length);
    return out;
  };

  it('names the file, tensor and field of a malformed header', async () => {
    await expect(collect(bad('{"w":{"dtype":"F99","shape":[1],"data_offsets":[0,4]}}'), 64, 'x.safetensors')).rejects.toThrow("x.safetensors: tensor 'w'.dtype: 'F99' is not a safetensors dtype");
    await expect(collect(bad('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}'), 64)).rejects.toThrow("tensor 'w'.data_offsets: span 4 bytes, but F32 [2] needs 8");
    await expect(collect(bad('{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}'), 64)).rejects.toThrow("tensor 'w'.shape");
    await expect(collect(bad('{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', new Uint8Array(2)), 64)).rejects.toThrow("tensor 'a': data_offsets start at 1, expected 0");
    await expect(collect(bad('not json'), 64)).rejects.toThrow(SafetensorsError);
    await expect(collect(new Uint8Array([255, 255, 255, 255, 255, 255, 0, 0]), 64)).rejects.toThrow(/header length .* is outside/);
  });

  it('reports a truncated stream and trailing bytes', async () => {
    const cut = modelBytes.subarray(0, modelBytes.length - 100);
    await expect(readSafetensors(streamOf(cut, 65536), 'model.safetensors', { chunk: () => {} })).rejects.toThrow(/stream ended after \d+ of \d+ bytes/);
    const long = new Uint8Array(modelBytes.length + 3);
    long.set(modelBytes);
    await expect(readSafetensors(streamOf(long, 65536), 'model.safetensors', { chunk: () => {} })).rejects.toThrow('model.safetensors: data: has bytes after the last tensor');
  });
});
