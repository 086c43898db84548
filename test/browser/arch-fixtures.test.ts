/**
 * Every supported architecture (Llama tied/untied, Mistral, Qwen2 with q/k/v biases) in every
 * checkpoint dtype (F32, F16, BF16), single-file and sharded, loads through loadModel from an
 * in-memory folder, and the GPU forward's logits match the CPU ReferenceModel built from the same
 * stored values: a 7-token prefill, then two decode steps.
 *
 * Tolerance (f32 storage): |gpu - ref| <= 1e-4 * |ref| + 1e-4 * max|ref|. Both sides compute in
 * f32 from identical weights, only the summation order differs (~1e-6 relative on these sizes);
 * the absolute term covers logits that happen to be near zero.
 *
 * Then a Mistral checkpoint whose config.json sliding_window (4) is shorter than the prompt: the
 * GPU forward matches the windowed CPU reference through a chunked prefill and decode steps far
 * past the window (with the blocks no query sees left as NO_BLOCK in the table), and per-sequence
 * sinks/windows from the BatchStep override the model's in one batch.
 */
import { describe, expect, it } from 'vitest';
import { buildBatchStep, commitBatch, type BatchEntry, type SequenceState } from '../../src/engine/batch.ts';
import { ShapeError } from '../../src/gpu/errors.ts';
import { UNBOUNDED_WINDOW } from '../../src/kernels/attention.ts';
import { NO_BLOCK } from '../../src/kv/layout.ts';
import { parseModelConfig } from '../../src/model/config.ts';
import type { BatchStep, U32 } from '../../src/model/forward.ts';
import { readF32 } from '../../src/gpu/buffers.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import { encodeDispatches } from '../../src/gpu/dispatch.ts';
import { createKvCache } from '../../src/kv/cache.ts';
import { ForwardPass } from '../../src/model/forward.ts';
import { loadModel, type LoadedModel } from '../../src/model/loader.ts';
import { ReferenceModel } from '../../src/model/reference.ts';
import { sourceFromMemory } from '../../src/model/source.ts';
import { FIXTURE_ARCHS, FIXTURE_DTYPES, makeFixture, type Fixture, type FixtureSpec } from '../util/fixtures.ts';
import { stories260KTokenizer } from './loader-helpers.ts';
import { closeTo, testGpu } from './gpu.ts';

async function runBatch(ctx: GpuContext, fwd: ForwardPass, entries: BatchEntry[], edit?: (step: BatchStep) => void): Promise<Float32Array> {
  const step = buildBatchStep(entries, fwd.kv.pool, fwd.limits.maxBlocksPerSeq);
  edit?.(step);
  const { T, nSeqs } = fwd.write(step);
  const enc = ctx.device.createCommandEncoder();
  encodeDispatches(enc, fwd.dispatches(T, nSeqs, step.mode));
  ctx.device.queue.submit([enc.finish()]);
  commitBatch(entries);
  return readF32(ctx, fwd.arena.logits, nSeqs * fwd.weights.config.vocabSize);
}

function tolerance(ref: Float32Array) {
  const max = ref.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  return { atol: 1e-4 * max, rtol: 1e-4 };
}

/** Prefill + 2 decode steps on the GPU vs the reference; returns the prompt for the caller's checks. */
async function compareWithReference(ctx: GpuContext, model: LoadedModel, fixture: Fixture): Promise<void> {
  const { config } = model;
  const V = config.vocabSize;
  const kv = createKvCache(ctx, { nLayers: config.nLayers, nKvHeads: config.nKvHeads, headDim: config.headDim }, 8);
  const fwd = new ForwardPass(ctx, model.weights, kv, { maxTokens: 16, maxSeqs: 1, maxBlocksPerSeq: 4 });
  const ref = new ReferenceModel(fixture.config, fixture.host);
  const cache = ref.newCache(32);
  const prompt = model.tokenizer.encode('Once upon a time');
  expect(prompt[0]).toBe(1); // the tokenizer works (BOS added)
  const seq: SequenceState = { tokens: [...prompt], computed: 0, blocks: [] };

  let got = await runBatch(ctx, fwd, [{ seq, count: prompt.length }]);
  let want = ref.forward(prompt, cache).subarray((prompt.length - 1) * V);
  expect(closeTo(got, want, tolerance(want), `${fixture.name}: prefill logits`)).toBeNull();
  for (const next of [7, 300]) {
    seq.tokens.push(next);
    got = await runBatch(ctx, fwd, [{ seq, count: 1 }]);
    want = ref.forward([next], cache);
    expect(closeTo(got, want, tolerance(want), `${fixture.name}: decode logits after ${next}`)).toBeNull();
  }
  fwd.destroy();
  kv.destroy();
}

const specs: FixtureSpec[] = [];
for (const arch of FIXTURE_ARCHS) for (const dtype of FIXTURE_DTYPES) specs.push({ arch, dtype });
specs.push({ arch: 'qwen2', dtype: 'BF16', shards: 3 }, { arch: 'llama', dtype: 'F16', shards: 2 });

describe('architecture fixtures through loadModel', () => {
  for (const spec of specs) {
    it(`${spec.arch} ${spec.dtype}${spec.shards ? ` (${spec.shards} shards)` : ''}: GPU logits match the CPU reference`, async () => {
      const ctx = await testGpu();
      const fixture = makeFixture(spec, await stories260KTokenizer());
      // Odd chunking and a tiny batch cap: tensors and rows straddle chunks, weights take many batches.
      const model = await loadModel(ctx, sourceFromMemory(fixture.files, { chunkBytes: 1000 }), { format: 'f32', maxBatchBytes: 36 * 4 * 7 });
      expect(model.config).toEqual(fixture.config);
      expect(model.weights.lmHead === model.weights.embed).toBe(fixture.config.tieWordEmbeddings);
      expect(model.generation).toMatchObject({ temperature: 0.7, topP: 0.9, doSample: true });
      expect(model.generation.eosTokenIds).toEqual(spec.arch === 'qwen2' ? [2, 0] : [2]);
      await compareWithReference(ctx, model, fixture);
      model.weights.destroy();
    });
  }
});

describe('Mistral sliding window shorter than the prompt', () => {
  const WINDOW = 4;
  const prompt = [1, 57, 300, 12, 199, 88, 401, 7, 260, 31, 45];
  const nextToken = (i: number) => (37 * i + 11) % 512;

  async function setup() {
    const ctx = await testGpu();
    const base = makeFixture({ arch: 'mistral', dtype: 'F32', seed: 77 }, await stories260KTokenizer());
    const rawConfig = { ...base.rawConfig, sliding_window: WINDOW };
    const files = new Map(base.files).set('config.json', JSON.stringify(rawConfig));
    const model = await loadModel(ctx, sourceFromMemory(files), { format: 'f32' });
    expect(model.config.slidingWindow).toBe(WINDOW);
    const config = parseModelConfig(rawConfig);
    const kv = createKvCache(ctx, { nLayers: config.nLayers, nKvHeads: config.nKvHeads, headDim: config.headDim }, 12);
    const fwd = new ForwardPass(ctx, model.weights, kv, { maxTokens: 16, maxSeqs: 2, maxBlocksPerSeq: 4 });
    const destroy = () => {
      fwd.destroy();
      kv.destroy();
      model.weights.destroy();
    };
    return { ctx, config, host: base.host, fwd, destroy };
  }

  /** Table entries of blocks whose every position is outside the window of every query at >= q (no sinks). */
  const holeMasked = (step: BatchStep, s: number, q: number, width: number) => {
    for (let b = 0; (b + 1) * 16 - 1 < q - WINDOW + 1; b++) step.blockTables[s * width + b] = NO_BLOCK;
  };

  it('GPU logits match the windowed CPU reference: chunked prefill, then decode past the window with NO_BLOCK holes', async () => {
    const { ctx, config, host, fwd, destroy } = await setup();
    const V = config.vocabSize;
    const ref = new ReferenceModel(config, host);
    const cache = ref.newCache(64);
    const full = new ReferenceModel({ ...config, slidingWindow: null }, host);
    const fullCache = full.newCache(64);
    const seq: SequenceState = { tokens: [...prompt], computed: 0, blocks: [] };
    // the prompt in two chunks: the second sees the cached first through the window
    for (const chunk of [prompt.slice(0, 7), prompt.slice(7)]) {
      const got = await runBatch(ctx, fwd, [{ seq, count: chunk.length }]);
      const want = ref.forward(chunk, cache).subarray((chunk.length - 1) * V);
      full.forward(chunk, fullCache);
      expect(closeTo(got, want, tolerance(want), `prefill chunk of ${chunk.length}`)).toBeNull();
    }
    let holes = 0;
    let differs = false;
    for (let i = 0; seq.tokens.length < 40; i++) {
      const next = nextToken(i);
      seq.tokens.push(next);
      const q = seq.tokens.length - 1;
      const got = await runBatch(ctx, fwd, [{ seq, count: 1 }], (step) => {
        holeMasked(step, 0, q, fwd.limits.maxBlocksPerSeq);
        holes = step.blockTables.filter((b) => b === NO_BLOCK).length;
      });
      const want = ref.forward([next], cache);
      expect(closeTo(got, want, tolerance(want), `decode at position ${q}`)).toBeNull();
      const unbounded = full.forward([next], fullCache);
      differs ||= closeTo(got, unbounded, tolerance(unbounded)) !== null;
    }
    expect(holes).toBeGreaterThanOrEqual(2); // by position 39 blocks 0 and 1 are NO_BLOCK (plus the unused 3rd)
    expect(differs).toBe(true); // the window changed the logits
    destroy();
  });

  it('per-sequence sinks/windows in the BatchStep override the model default, two sequences in one batch', async () => {
    const { ctx, config, host, fwd, destroy } = await setup();
    const V = config.vocabSize;
    const ref = new ReferenceModel(config, host);
    const windows = [{ sinks: 0, window: UNBOUNDED_WINDOW }, { sinks: 2, window: 3 }];
    const caches = windows.map(() => ref.newCache(64));
    const seqs: SequenceState[] = [{ tokens: prompt.slice(0, 9), computed: 0, blocks: [] }, { tokens: prompt.slice(4), computed: 0, blocks: [] }];
    const withWindows = (step: BatchStep) => {
      step.seqSinks = Uint32Array.from(windows.map((w) => w.sinks)) as U32;
      step.seqWindows = Uint32Array.from(windows.map((w) => w.window)) as U32;
    };
    let got = await runBatch(ctx, fwd, seqs.map((seq) => ({ seq, count: seq.tokens.length })), withWindows);
    seqs.forEach((seq, s) => {
      const want = ref.forward(seq.tokens, caches[s], windows[s]).subarray((seq.tokens.length - 1) * V);
      expect(closeTo(got.subarray(s * V, (s + 1) * V), want, tolerance(want), `prefill of sequence ${s}`)).toBeNull();
    });
    for (let i = 0; i < 12; i++) {
      for (const seq of seqs) seq.tokens.push(nextToken(i + seq.tokens.length));
      got = await runBatch(ctx, fwd, seqs.map((seq) => ({ seq, count: 1 })), withWindows);
      seqs.forEach((seq, s) => {
        const want = ref.forward([seq.tokens[seq.tokens.length - 1]], caches[s], windows[s]);
        expect(closeTo(got.subarray(s * V, (s + 1) * V), want, tolerance(want), `decode ${i} of sequence ${s}`)).toBeNull();
      });
    }
    // bad windows are refused before anything is written
    for (const seq of seqs) seq.tokens.push(3);
    const step = buildBatchStep(seqs.map((seq) => ({ seq, count: 1 })), fwd.kv.pool, fwd.limits.maxBlocksPerSeq);
    expect(() => fwd.write({ ...step, seqWindows: Uint32Array.of(4) as U32 })).toThrow(ShapeError);
    expect(() => fwd.write({ ...step, seqWindows: Uint32Array.of(4) as U32 })).toThrow(/seqWindows has 1 entries for 2 sequences/);
    expect(() => fwd.write({ ...step, seqWindows: Uint32Array.of(4, 0) as U32 })).toThrow(/sequence 1 has window 0/);
    expect(() => fwd.write({ ...step, seqSinks: Uint32Array.of(1, 2, 3) as U32 })).toThrow(/seqSinks has 3 entries/);
    destroy();
  });
});
