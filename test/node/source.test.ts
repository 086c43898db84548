/**
 * Model sources in Node: a directory (fs streams), a URL prefix with an injected fetch (no Cache
 * API in Node, so every open is a request), the Hub URL scheme, picked File objects, memory; the
 * typed ModelFileError of each; and the loader's pure parsers (generation config, shard index,
 * safetensors header pre-read).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ModelFormatError, parseGenerationConfig, parseShardIndex, readSafetensorsHeader } from '../../src/model/loader.ts';
import { SafetensorsError, writeSafetensors } from '../../src/model/safetensors.ts';
import { sourceFromDirectory } from '../../src/model/source-node.ts';
import { ModelFileError, readText, sourceFromFiles, sourceFromHub, sourceFromMemory, sourceFromUrl, type FetchLike, type ModelSource } from '../../src/model/source.ts';

const dir = mkdtempSync(join(tmpdir(), 'mace-source-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const tensorFile: Uint8Array<ArrayBuffer> = writeSafetensors([{ name: 'w', dtype: 'F32', shape: [2, 3], data: new Uint8Array(24).fill(1) }]) as Uint8Array<ArrayBuffer>;

async function bytesOf(source: ModelSource, file: string): Promise<Uint8Array> {
  const { stream } = await source.open(file);
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

describe('sourceFromDirectory', () => {
  writeFileSync(join(dir, 'config.json'), '{"a": 1}');
  writeFileSync(join(dir, 'model.safetensors'), tensorFile);
  const source = sourceFromDirectory(dir);

  it('opens files as streams with their size, and says which exist', async () => {
    expect(await source.has('config.json')).toBe(true);
    expect(await source.has('nope.json')).toBe(false);
    expect(await source.has('.')).toBe(false); // a directory is not a file
    expect(await readText(source, 'config.json')).toBe('{"a": 1}');
    const { size } = await source.open('model.safetensors');
    expect(size).toBe(tensorFile.length);
    expect(await bytesOf(source, 'model.safetensors')).toEqual(tensorFile);
    const { header } = await readSafetensorsHeader(source, 'model.safetensors');
    expect(header.tensors.map((t) => [t.name, t.shape])).toEqual([['w', [2, 3]]]);
  });

  it('a missing file is a ModelFileError naming its path', async () => {
    const e = await source.open('tokenizer.json').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ModelFileError);
    expect((e as ModelFileError).code).toBe('model-file');
    expect((e as ModelFileError).file).toBe('tokenizer.json');
    expect((e as Error).message).toContain(join(dir, 'tokenizer.json'));
  });
});

describe('sourceFromUrl / sourceFromHub', () => {
  const files = new Map<string, string>([['config.json', '{"b": 2}']]);
  const calls: string[] = [];
  const fetch: FetchLike = async (url, init) => {
    calls.push(`${init?.method ?? 'GET'} ${url}`);
    if (url.includes('broken')) throw new TypeError('Failed to fetch');
    if (url.includes('forbidden')) return new Response('no', { status: 403, statusText: 'Forbidden' });
    if (url.endsWith('spa.json')) return new Response('<!doctype html>', { status: 200, headers: { 'content-type': 'text/html' } });
    const v = files.get(url.slice(url.lastIndexOf('/') + 1));
    return v === undefined ? new Response('not found', { status: 404, statusText: 'Not Found' }) : new Response(v, { headers: { 'content-length': String(v.length) } });
  };

  it('joins the base URL, reads files, probes with HEAD', async () => {
    const s = sourceFromUrl('https://example.test/m', { fetch });
    expect(await readText(s, 'config.json')).toBe('{"b": 2}');
    expect(await s.has('config.json')).toBe(true);
    expect(await s.has('generation_config.json')).toBe(false);
    expect(calls).toEqual(['GET https://example.test/m/config.json', 'HEAD https://example.test/m/config.json', 'HEAD https://example.test/m/generation_config.json']);
    expect((await s.open('config.json')).size).toBe(8);
  });

  it('HTTP errors and network failures are ModelFileErrors with the URL and status', async () => {
    const s = sourceFromUrl('https://example.test/m/', { fetch });
    const e404 = (await s.open('tokenizer.json').catch((x: unknown) => x)) as ModelFileError;
    expect(e404).toBeInstanceOf(ModelFileError);
    expect([e404.status, e404.url, e404.file]).toEqual([404, 'https://example.test/m/tokenizer.json', 'tokenizer.json']);
    expect(e404.message).toBe("model file 'tokenizer.json' (https://example.test/m/tokenizer.json): HTTP 404 Not Found");
    const e403 = (await sourceFromUrl('https://example.test/forbidden/', { fetch }).has('x.json').catch((x: unknown) => x)) as ModelFileError;
    expect(e403.status).toBe(403);
    const net = (await sourceFromUrl('https://broken.test/', { fetch }).open('config.json').catch((x: unknown) => x)) as ModelFileError;
    expect(net).toBeInstanceOf(ModelFileError);
    expect(net.status).toBe(0);
    expect(net.message).toContain('network error: Failed to fetch');
  });

  it('an HTML page served for a JSON file (SPA fallback) counts as missing', async () => {
    const s = sourceFromUrl('https://example.test/m/', { fetch });
    expect(await s.has('spa.json')).toBe(false);
    const e = (await s.open('spa.json').catch((x: unknown) => x)) as ModelFileError;
    expect(e.status).toBe(404);
    expect(e.message).toContain('HTML page');
  });

  it('sourceFromHub resolves files at a revision and validates the repo id', async () => {
    const seen: string[] = [];
    const s = sourceFromHub('HuggingFaceTB/SmolLM2-135M-Instruct', 'v1.0', { fetch: async (url) => (seen.push(url), new Response('{}')) });
    await readText(s, 'config.json');
    expect(seen).toEqual(['https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct/resolve/v1.0/config.json']);
    expect(s.description).toBe('https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct/resolve/v1.0/');
    expect(() => sourceFromHub('not a repo/../x')).toThrow(ModelFileError);
  });
});

describe('sourceFromFiles / sourceFromMemory', () => {
  it('serves picked File objects by name', async () => {
    const s = sourceFromFiles([new File(['{"c": 3}'], 'config.json'), new File([tensorFile.slice()], 'model.safetensors')]);
    expect(await readText(s, 'config.json')).toBe('{"c": 3}');
    expect((await s.open('model.safetensors')).size).toBe(tensorFile.length);
    expect(await s.has('tokenizer.json')).toBe(false);
    await expect(s.open('tokenizer.json')).rejects.toThrow(/'tokenizer\.json'.*not among the picked files \(config\.json, model\.safetensors\)/);
  });

  it('memory sources stream in the given chunk size and can hide the size', async () => {
    const s = sourceFromMemory({ 'model.safetensors': tensorFile }, { chunkBytes: 7, hideSize: true });
    const { stream, size } = await s.open('model.safetensors');
    expect(size).toBeUndefined();
    const chunks: number[] = [];
    for await (const c of stream as unknown as AsyncIterable<Uint8Array>) chunks.push(c.length);
    expect(chunks.slice(0, 3)).toEqual([7, 7, 7]);
    expect(chunks.reduce((a, b) => a + b, 0)).toBe(tensorFile.length);
    await expect(s.open('x')).rejects.toBeInstanceOf(ModelFileError);
  });
});

describe('loader parsers', () => {
  it('generation_config.json: camelCase defaults, absent fields left out, bad fields named', () => {
    expect(parseGenerationConfig('{"eos_token_id": [2, 7], "temperature": 0.6, "top_p": 0.9, "top_k": 20, "do_sample": true, "transformers_version": "4.45"}')).toEqual({ eosTokenIds: [2, 7], bosTokenId: null, temperature: 0.6, topP: 0.9, topK: 20, doSample: true });
    expect(() => parseGenerationConfig('{"temperature": "hot"}')).toThrow(new ModelFormatError('generation_config.json', 'temperature', 'must be a number >= 0, got "hot"'));
    expect(() => parseGenerationConfig('{"eos_token_id": [2, -1]}')).toThrow(/eos_token_id must be a token id/);
    expect(() => parseGenerationConfig('[1]')).toThrow(/must hold a JSON object/);
    expect(() => parseGenerationConfig('{')).toThrow(/generation_config\.json: \(file\) is not valid JSON/);
  });

  it('model.safetensors.index.json: shard files in order, bad maps refused', () => {
    expect(parseShardIndex(JSON.stringify({ metadata: {}, weight_map: { a: 'm-2.safetensors', b: 'm-1.safetensors', c: 'm-2.safetensors' } }))).toEqual(['m-2.safetensors', 'm-1.safetensors']);
    expect(() => parseShardIndex('{"weight_map": {}}')).toThrow(/weight_map is empty/);
    expect(() => parseShardIndex('{"weight_map": {"a": 3}}')).toThrow(ModelFormatError);
    expect(() => parseShardIndex('{}')).toThrow(/weight_map must be an object/);
  });

  it('header pre-read: a header longer than the file, and a file shorter than 8 bytes', async () => {
    const long = tensorFile.slice();
    new DataView(long.buffer).setUint32(0, 5000, true);
    await expect(readSafetensorsHeader(sourceFromMemory({ f: long }), 'f')).rejects.toThrow(new SafetensorsError('f', 'header', `length 5000 runs past the end of the ${long.length}-byte file`));
    await expect(readSafetensorsHeader(sourceFromMemory({ f: long }, { hideSize: true }), 'f')).rejects.toThrow(/f: header: file ends after \d+ bytes, the header needs 5008/);
    await expect(readSafetensorsHeader(sourceFromMemory({ f: new Uint8Array(3) }), 'f')).rejects.toThrow(/file ends after 3 bytes, the header needs 8/);
  });
});
