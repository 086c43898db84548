/**
 * loadModel end to end in the browser: stories260K from the dev server through sourceFromUrl
 * (greedy output = reference.json), the Cache API (a second load makes no request), f16/q4
 * storage, progress and abort, and every kind of bad input: each is a typed error naming the
 * file/tensor/field, leaves no GPU buffer alive (counted through a device wrapper), and a good
 * load works right after it.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { buildBatchStep, commitBatch, type BatchEntry, type SequenceState } from '../../src/engine/batch.ts';
import { createStorage, readF32, readU32 } from '../../src/gpu/buffers.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import { encodeDispatches } from '../../src/gpu/dispatch.ts';
import { argmax } from '../../src/kernels/sampling.ts';
import { dequantizeRef, packF16Ref, quantizeQ4Ref, type WeightFormat } from '../../src/kernels/weights.ts';
import { createKvCache } from '../../src/kv/cache.ts';
import { ConfigError, UnsupportedArchitectureError } from '../../src/model/config.ts';
import { ForwardPass } from '../../src/model/forward.ts';
import { LoadAbortedError, loadModel, ModelFormatError, type LoadProgress } from '../../src/model/loader.ts';
import { ReferenceModel, type HostWeights } from '../../src/model/reference.ts';
import { SafetensorsError, writeSafetensors } from '../../src/model/safetensors.ts';
import { MODEL_CACHE_NAME, ModelFileError, sourceFromMemory, sourceFromUrl, type FetchLike, type ModelSource } from '../../src/model/source.ts';
import { CheckpointError, expectedTensors } from '../../src/model/tensors.ts';
import { ChatTemplateLoadError, TokenizerLoadError } from '../../src/model/tokenizer.ts';
import { ModelConsistencyError, NonFiniteWeightError } from '../../src/model/validate.ts';
import { encodeTensor, makeFixture, withFiles, type Fixture, type TokenizerFiles } from '../util/fixtures.ts';
import { stories260KTokenizer } from './loader-helpers.ts';
import { closeTo, testGpu } from './gpu.ts';

/** A context whose buffers are counted: `live` holds those created and not yet destroyed. */
function leakCounter(ctx: GpuContext): { ctx: GpuContext; live: Set<GPUBuffer>; created: () => number } {
  const live = new Set<GPUBuffer>();
  let created = 0;
  const device = new Proxy(ctx.device, {
    get(target, key) {
      if (key === 'createBuffer') {
        return (d: GPUBufferDescriptor) => {
          const b = target.createBuffer(d);
          created++;
          live.add(b);
          const destroy = b.destroy.bind(b);
          b.destroy = () => {
            live.delete(b);
            destroy();
          };
          return b;
        };
      }
      const v = Reflect.get(target, key, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { ctx: { ...ctx, device }, live, created: () => created };
}

/** A fetch serving `files` under `base`, counting requests. */
function fakeFetch(base: string, files: Map<string, Uint8Array | string>): { fetch: FetchLike; calls: string[] } {
  const calls: string[] = [];
  const fetch: FetchLike = async (url, init) => {
    calls.push(`${init?.method ?? 'GET'} ${url}`);
    const v = url.startsWith(base) ? files.get(url.slice(base.length)) : undefined;
    if (v === undefined) return new Response('not found', { status: 404, statusText: 'Not Found' });
    const bytes = typeof v === 'string' ? new TextEncoder().encode(v) : v;
    return new Response(init?.method === 'HEAD' ? null : bytes.slice(), { status: 200, headers: { 'content-length': String(bytes.length) } });
  };
  return { fetch, calls };
}

let tok: TokenizerFiles;
let fixture: Fixture;
beforeAll(async () => {
  tok = await stories260KTokenizer();
  fixture = makeFixture({ arch: 'qwen2', dtype: 'BF16' }, tok);
});

/** Expect `load` to fail with `type` (message matching `message`) and leave no buffer behind; then a good load works. */
async function expectCleanFailure(source: ModelSource, type: new (...a: never[]) => Error, message: RegExp, opts: { buffersBefore?: 'none' | 'some' } = {}): Promise<Error> {
  const base = await testGpu();
  const counted = leakCounter(base);
  const err = await loadModel(counted.ctx, source, { format: 'q4', maxBatchBytes: 4096 }).then(
    () => null,
    (e: Error) => e,
  );
  expect(err).toBeInstanceOf(type);
  expect(err!.message).toMatch(message);
  expect(typeof (err as { code?: unknown }).code).toBe('string');
  expect(counted.live.size, 'GPU buffers left alive').toBe(0);
  if (opts.buffersBefore === 'none') expect(counted.created(), 'GPU buffers created before the error').toBe(0);
  if (opts.buffersBefore === 'some') expect(counted.created()).toBeGreaterThan(0);
  const good = await loadModel(counted.ctx, sourceFromMemory(fixture.files), { format: 'q4' });
  good.weights.destroy();
  expect(counted.live.size).toBe(0);
  return err!;
}

const mem = (files: Map<string, Uint8Array | string>) => sourceFromMemory(files, { chunkBytes: 777 });
const rewrite = (tensors: Fixture['tensors']) => writeSafetensors(tensors);

describe('loadModel: bad input', () => {
  it('a 404 (config.json and a missing shard) is a ModelFileError with the URL and status', async () => {
    const base = 'https://models.test/a/';
    const { fetch } = fakeFetch(base, withFiles(fixture, { 'config.json': undefined }));
    const e = (await expectCleanFailure(sourceFromUrl(base, { fetch, cache: false }), ModelFileError, /config\.json.*https:\/\/models\.test\/a\/config\.json.*HTTP 404/)) as ModelFileError;
    expect(e.status).toBe(404);
    const sharded = makeFixture({ arch: 'llama', dtype: 'F16', shards: 2 }, tok);
    const f2 = fakeFetch(base, withFiles(sharded, { 'model-00002-of-00002.safetensors': undefined }));
    await expectCleanFailure(sourceFromUrl(base, { fetch: f2.fetch, cache: false }), ModelFileError, /model-00002-of-00002\.safetensors.*HTTP 404/, { buffersBefore: 'none' });
  });

  it('an unknown architecture', async () => {
    await expectCleanFailure(mem(withFiles(fixture, { 'config.json': JSON.stringify({ ...fixture.rawConfig, architectures: ['GPT2LMHeadModel'] }) })), UnsupportedArchitectureError, /GPT2LMHeadModel/, { buffersBefore: 'none' });
  });

  it('a malformed tokenizer.json (not JSON; no model)', async () => {
    await expectCleanFailure(mem(withFiles(fixture, { 'tokenizer.json': '{"model": ' })), TokenizerLoadError, /tokenizer\.json: is not valid JSON/, { buffersBefore: 'none' });
    await expectCleanFailure(mem(withFiles(fixture, { 'tokenizer.json': '{"version": "1.0"}' })), TokenizerLoadError, /tokenizer\.json: has no "model"/, { buffersBefore: 'none' });
  });

  it('a malformed generation_config.json or shard index', async () => {
    await expectCleanFailure(mem(withFiles(fixture, { 'generation_config.json': '{"top_p": 3}' })), ModelFormatError, /generation_config\.json: top_p must be in \(0, 1\]/, { buffersBefore: 'none' });
    const sharded = makeFixture({ arch: 'llama', dtype: 'F16', shards: 2 }, tok);
    await expectCleanFailure(mem(withFiles(sharded, { 'model.safetensors.index.json': '{"weight_map": {"a": "../x"}}' })), ModelFormatError, /weight_map\['a'\] must be a relative shard file name/, { buffersBefore: 'none' });
  });

  it('a missing tensor, a wrong shape, a wrong dtype: refused from the headers, before any GPU allocation', async () => {
    const t = fixture.tensors;
    const missing = t.filter((x) => x.name !== 'model.layers.1.self_attn.k_proj.bias');
    await expectCleanFailure(mem(withFiles(fixture, { 'model.safetensors': rewrite(missing) })), CheckpointError, /model\.safetensors: tensor 'model\.layers\.1\.self_attn\.k_proj\.bias' is missing/, { buffersBefore: 'none' });
    const shaped = t.map((x) => (x.name === 'model.layers.0.mlp.up_proj.weight' ? { ...x, shape: [36, 44] } : x));
    await expectCleanFailure(mem(withFiles(fixture, { 'model.safetensors': rewrite(shaped) })), CheckpointError, /'model\.layers\.0\.mlp\.up_proj\.weight' has shape \[36, 44\], config\.json implies \[44, 36\]/, { buffersBefore: 'none' });
    const typed = t.map((x) => (x.name === 'model.norm.weight' ? { ...x, dtype: 'I16' as const } : x));
    await expectCleanFailure(mem(withFiles(fixture, { 'model.safetensors': rewrite(typed) })), CheckpointError, /'model\.norm\.weight' has dtype I16/, { buffersBefore: 'none' });
    // Sharded: the error names the shard holding the bad tensor.
    const sharded = makeFixture({ arch: 'llama', dtype: 'F16', shards: 2 }, tok);
    const second = [...sharded.files.keys()].find((k) => k.startsWith('model-00002'))!;
    const half = Math.ceil(sharded.tensors.length / 2);
    const bad = sharded.tensors.slice(half).map((x) => (x.name === 'lm_head.weight' ? { ...x, shape: [256, 72] } : x));
    await expectCleanFailure(mem(withFiles(sharded, { [second]: rewrite(bad) })), CheckpointError, /model-00002-of-00002\.safetensors: tensor 'lm_head\.weight' has shape \[256, 72\]/, { buffersBefore: 'none' });
  });

  it('a header length beyond the file', async () => {
    const file = (fixture.files.get('model.safetensors') as Uint8Array).slice();
    new DataView(file.buffer).setUint32(0, file.length, true); // claims a header longer than the file
    await expectCleanFailure(mem(withFiles(fixture, { 'model.safetensors': file })), SafetensorsError, /model\.safetensors: header: length \d+ runs past the end of the \d+-byte file/, { buffersBefore: 'none' });
    // Without a known size, the stream simply ends first.
    await expectCleanFailure(sourceFromMemory(withFiles(fixture, { 'model.safetensors': file }), { hideSize: true }), SafetensorsError, /model\.safetensors: header: file ends after/, { buffersBefore: 'none' });
  });

  it('a file truncated in the middle of the weights: refused, and the weights already uploaded are freed', async () => {
    const file = fixture.files.get('model.safetensors') as Uint8Array;
    const cut = file.slice(0, Math.floor(file.length * 0.6));
    // With the size known the header check already fails (tensors cover more than the file holds)...
    await expectCleanFailure(mem(withFiles(fixture, { 'model.safetensors': cut })), SafetensorsError, /model\.safetensors: data: tensors cover \d+ bytes, the data section has \d+/, { buffersBefore: 'none' });
    // ...without it (a server sending no Content-Length) the stream ends mid-tensor, after uploads began.
    await expectCleanFailure(sourceFromMemory(withFiles(fixture, { 'model.safetensors': cut }), { hideSize: true, chunkBytes: 999 }), SafetensorsError, /model\.safetensors: tensor '.+': stream ended after \d+ of \d+ bytes/, { buffersBefore: 'some' });
  });

  it('NaN / Inf in a weight (F32, F16, BF16; matrix and vector): refused mid-upload naming the tensor and element, the uploads so far freed', async () => {
    for (const dtype of ['F32', 'F16', 'BF16'] as const) {
      const f = makeFixture({ arch: 'qwen2', dtype }, tok);
      const poison = (name: string, index: number, value: number) => {
        const tensors = f.tensors.map((t) => {
          if (t.name !== name) return t;
          const values = Float32Array.from(f.host.get(name)!);
          values[index] = value;
          return { ...t, data: encodeTensor(values, dtype) };
        });
        return mem(withFiles(f, { 'model.safetensors': rewrite(tensors) }));
      };
      // A late tensor, so earlier ones are on the GPU when the scan stops the load.
      const e = (await expectCleanFailure(poison('model.layers.1.mlp.down_proj.weight', 7 * 44 + 5, NaN), NonFiniteWeightError, /model\.safetensors: tensor 'model\.layers\.1\.mlp\.down_proj\.weight' holds NaN at element 313 \(row 7, column 5\); every weight must be a finite number/, { buffersBefore: 'some' })) as NonFiniteWeightError;
      expect(e).toMatchObject({ code: 'non-finite-weight', tensor: 'model.layers.1.mlp.down_proj.weight', index: 313, value: 'NaN' });
      await expectCleanFailure(poison('model.layers.1.self_attn.k_proj.bias', 3, -Infinity), NonFiniteWeightError, /tensor 'model\.layers\.1\.self_attn\.k_proj\.bias' holds -Infinity at element 3;/);
      await expectCleanFailure(poison('model.embed_tokens.weight', 0, Infinity), NonFiniteWeightError, /tensor 'model\.embed_tokens\.weight' holds Infinity at element 0 \(row 0, column 0\)/);
    }
  });

  it('config.json against the checkpoint and the tokenizer: layers, vocab_size, special ids, model_type', async () => {
    const cfg = (extra: Record<string, unknown>) => ({ 'config.json': JSON.stringify({ ...fixture.rawConfig, ...extra }) });
    await expectCleanFailure(mem(withFiles(fixture, cfg({ num_hidden_layers: 1 }))), ModelConsistencyError, /^config\.json: num_hidden_layers = 1, but model\.safetensors holds 2 layers/, { buffersBefore: 'none' });
    await expectCleanFailure(mem(withFiles(fixture, cfg({ num_hidden_layers: 3 }))), ModelConsistencyError, /^config\.json: num_hidden_layers = 3, but model\.safetensors holds only 2 layers/, { buffersBefore: 'none' });
    await expectCleanFailure(mem(withFiles(fixture, cfg({ vocab_size: 600 }))), ModelConsistencyError, /^config\.json: vocab_size = 600, but tensor 'model\.embed_tokens\.weight' in model\.safetensors has 512 rows/, { buffersBefore: 'none' });
    await expectCleanFailure(mem(withFiles(fixture, cfg({ vocab_size: 256 }))), ModelConsistencyError, /^tokenizer\.json: model\.vocab holds token id 511 .*config\.json vocab_size = 256/, { buffersBefore: 'none' });
    await expectCleanFailure(mem(withFiles(fixture, cfg({ eos_token_id: 512 }))), ModelConsistencyError, /^config\.json: eos_token_id = 512 is outside the vocabulary/, { buffersBefore: 'none' });
    await expectCleanFailure(mem(withFiles(fixture, cfg({ model_type: 'llama' }))), ConfigError, /^config\.json: model_type is "llama", but architectures\[0\] is 'Qwen2ForCausalLM'/, { buffersBefore: 'none' });
    await expectCleanFailure(mem(withFiles(fixture, cfg({ max_position_embeddings: 2 ** 40 }))), ConfigError, /^config\.json: max_position_embeddings = 1099511627776 is above the largest supported context/, { buffersBefore: 'none' });
  });

  it('a tokenizer.json that is null or has no vocabulary; a broken chat template: typed, named, before any GPU allocation', async () => {
    await expectCleanFailure(mem(withFiles(fixture, { 'tokenizer.json': 'null' })), TokenizerLoadError, /^tokenizer\.json: must hold a JSON object, got null$/, { buffersBefore: 'none' });
    await expectCleanFailure(mem(withFiles(fixture, { 'tokenizer.json': '{"model": {"type": "BPE", "merges": []}}' })), TokenizerLoadError, /^tokenizer\.json: model\.vocab is missing/, { buffersBefore: 'none' });
    const template = JSON.stringify({ ...JSON.parse(tok.tokenizerConfig), chat_template: '{% for m in messages %}\n{{ m.content }\n{% endfor %}' });
    const e = (await expectCleanFailure(mem(withFiles(fixture, { 'tokenizer_config.json': template })), ChatTemplateLoadError, /^tokenizer_config\.json: chat template 'default' \(line 2\) does not parse: /, { buffersBefore: 'none' })) as ChatTemplateLoadError;
    expect(e.line).toBe(2);
  });

  it('an abort mid-weights is a LoadAbortedError, with nothing left allocated', async () => {
    const ac = new AbortController();
    const source = sourceFromMemory(fixture.files, { chunkBytes: 500 });
    const ctx = leakCounter(await testGpu());
    const err = await loadModel(ctx.ctx, source, {
      format: 'f16',
      signal: ac.signal,
      onProgress: (p) => {
        if (p.phase === 'weights' && p.loaded > p.total / 2) ac.abort();
      },
    }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(LoadAbortedError);
    expect((err as LoadAbortedError).phase).toBe('weights');
    expect(ctx.created()).toBeGreaterThan(0);
    expect(ctx.live.size).toBe(0);
  });
});

/** Run one batch; returns logits [nSeqs, vocab]. */
async function runBatch(ctx: GpuContext, fwd: ForwardPass, entries: BatchEntry[]): Promise<Float32Array> {
  const step = buildBatchStep(entries, fwd.kv.pool, fwd.limits.maxBlocksPerSeq);
  const { T, nSeqs } = fwd.write(step);
  const enc = ctx.device.createCommandEncoder();
  encodeDispatches(enc, fwd.dispatches(T, nSeqs, step.mode));
  ctx.device.queue.submit([enc.finish()]);
  commitBatch(entries);
  return readF32(ctx, fwd.arena.logits, nSeqs * fwd.weights.config.vocabSize);
}

/** Host weights as the GPU stores them in `format` (f16-rounded or q4-quantized matrices). */
function roundedHost(f: Fixture, format: WeightFormat): HostWeights {
  const out: HostWeights = new Map(f.host);
  for (const t of expectedTensors(f.config)) {
    if (t.role === 'vector') continue;
    const [N, K] = t.shape;
    const w = f.host.get(t.name)!;
    if (format === 'f16') out.set(t.name, dequantizeRef('f16', N, K, packF16Ref(w, N, K)));
    else if (format === 'q4') {
      const q = quantizeQ4Ref(w, N, K);
      out.set(t.name, dequantizeRef('q4', N, K, q.data, q.scales));
    }
  }
  return out;
}

describe('loadModel: storage formats, progress, cache', () => {
  for (const format of ['f16', 'q4'] as const) {
    it(`stores ${format} weights equal to the CPU rounding of the checkpoint (logits vs reference)`, async () => {
      const ctx = await testGpu();
      const f = makeFixture({ arch: 'llama', dtype: 'BF16' }, tok);
      const model = await loadModel(ctx, mem(f.files), { format, maxBatchBytes: 2048 });
      expect(model.weights.format).toBe(format);
      const kv = createKvCache(ctx, { nLayers: f.config.nLayers, nKvHeads: f.config.nKvHeads, headDim: f.config.headDim }, 4);
      const fwd = new ForwardPass(ctx, model.weights, kv, { maxTokens: 8, maxSeqs: 1, maxBlocksPerSeq: 2 });
      const prompt = [1, 403, 407, 261, 378];
      const got = await runBatch(ctx, fwd, [{ seq: { tokens: prompt, computed: 0, blocks: [] }, count: prompt.length }]);
      const want = new ReferenceModel(f.config, roundedHost(f, format)).forward(prompt, new ReferenceModel(f.config, f.host).newCache(8)).subarray(4 * 512);
      // Same rounded weights on both sides; f32 math in another order: 1e-4 relative plus 1e-4 of the largest logit.
      const max = want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      expect(closeTo(got, want, { atol: 1e-4 * max, rtol: 1e-4 }, `${format} logits`)).toBeNull();
      fwd.destroy();
      kv.destroy();
      model.weights.destroy();
    });
  }

  it('reports progress in order, ending with every byte of the weights', async () => {
    const ctx = await testGpu();
    const events: LoadProgress[] = [];
    const model = await loadModel(ctx, mem(fixture.files), { format: 'f32', onProgress: (p) => events.push(p) });
    model.weights.destroy();
    const phases = [...new Set(events.map((e) => e.phase))];
    expect(phases).toEqual(['files', 'headers', 'weights', 'done']);
    const data = fixture.tensors.reduce((a, t) => a + t.data.length, 0);
    const weights = events.filter((e) => e.phase === 'weights');
    expect(weights.every((e, i) => i === 0 || e.loaded >= weights[i - 1].loaded)).toBe(true);
    expect(weights[weights.length - 1]).toMatchObject({ loaded: data, total: data, file: 'model.safetensors' });
  });

  it('keeps downloads in the Cache API: the second load makes no network request', async () => {
    await caches.delete(MODEL_CACHE_NAME);
    const base = 'https://models.test/cached/';
    const { fetch, calls } = fakeFetch(base, fixture.files);
    const ctx = await testGpu();
    const events: LoadProgress[] = [];
    const first = await loadModel(ctx, sourceFromUrl(base, { fetch }), { format: 'f32', onProgress: (p) => events.push(p) });
    const firstCalls = calls.length;
    expect(firstCalls).toBeGreaterThan(0);
    expect(calls).toContain(`HEAD ${base}model.safetensors.index.json`); // probed once, the 404 is remembered
    expect(events.some((e) => e.phase === 'download' && e.file === 'model.safetensors')).toBe(true);
    const second = await loadModel(ctx, sourceFromUrl(base, { fetch }), { format: 'f32' });
    expect(calls.length - firstCalls, `requests of the second load: ${calls.slice(firstCalls).join(', ')}`).toBe(0);
    // Same weights both times.
    const a = await readF32(ctx, first.weights.embed.shards[0].data, 64);
    const b = await readF32(ctx, second.weights.embed.shards[0].data, 64);
    expect([...b]).toEqual([...a]);
    first.weights.destroy();
    second.weights.destroy();
    // cache: false fetches again.
    const before = calls.length;
    (await loadModel(ctx, sourceFromUrl(base, { fetch, cache: false }), { format: 'f32' })).weights.destroy();
    expect(calls.length).toBeGreaterThan(before);
    await caches.delete(MODEL_CACHE_NAME);
  });
});

describe('stories260K through sourceFromUrl', () => {
  it('reproduces the published 200-step greedy output (f32, GPU argmax); load time logged', async () => {
    await caches.delete(MODEL_CACHE_NAME);
    const ctx = await testGpu();
    const times: number[] = [];
    let model = null;
    for (let i = 0; i < 2; i++) {
      model?.weights.destroy();
      const t0 = performance.now();
      model = await loadModel(ctx, sourceFromUrl('/models/stories260K/'), { format: 'f32' });
      times.push(performance.now() - t0);
    }
    console.log(`stories260K load (f32, SwiftShader): cold ${times[0].toFixed(0)} ms, from the Cache API ${times[1].toFixed(0)} ms`);
    const { config, weights, generation, tokenizer } = model!;
    expect(generation.eosTokenIds).toEqual([2]);
    expect(tokenizer.bosId).toBe(1);
    const reference = (await fetch('/models/stories260K/reference.json').then((r) => r.json())) as { prompt_ids: number[]; steps: number; output_ids_after_bos: number[] };
    const kv = createKvCache(ctx, { nLayers: config.nLayers, nKvHeads: config.nKvHeads, headDim: config.headDim }, 16);
    const fwd = new ForwardPass(ctx, weights, kv, { maxTokens: 8, maxSeqs: 1, maxBlocksPerSeq: 16 });
    const ids = createStorage(ctx, 4, 'ids'); // [1] u32
    const pick = argmax(ctx, { logits: fwd.arena.logits, ids, R: 1, V: config.vocabSize });
    const seq: SequenceState = { tokens: [...reference.prompt_ids], computed: 0, blocks: [] };
    const out: number[] = [];
    for (let s = 0; s < reference.steps; s++) {
      const entries = [{ seq, count: seq.tokens.length - seq.computed }];
      const step = buildBatchStep(entries, fwd.kv.pool, fwd.limits.maxBlocksPerSeq);
      const { T, nSeqs } = fwd.write(step);
      const enc = ctx.device.createCommandEncoder();
      encodeDispatches(enc, [...fwd.dispatches(T, nSeqs, step.mode), ...pick]);
      ctx.device.queue.submit([enc.finish()]);
      commitBatch(entries);
      const [next] = await readU32(ctx, ids, 1);
      out.push(next);
      seq.tokens.push(next);
    }
    expect(out).toEqual(reference.output_ids_after_bos);
    ids.destroy();
    fwd.destroy();
    kv.destroy();
    weights.destroy();
    await caches.delete(MODEL_CACHE_NAME);
  });
});
