/**
 * Every supported architecture (Llama tied/untied, Mistral, Qwen2 with q/k/v biases) in every
 * checkpoint dtype (F32, F16, BF16), single-file and sharded, loads through loadModel from an
 * in-memory folder, and the GPU forward's logits match the CPU ReferenceModel built from the same
 * stored values: a 7-token prefill, then two decode steps.
 *
 * Tolerance (f32 storage): |gpu - ref| <= 1e-4 * |ref| + 1e-4 * max|ref|. Both sides compute in
 * f32 from identical weights, only the summation order differs (~1e-6 relative on these sizes);
 * the absolute term covers logits that happen to be near zero.
 */
import { describe, expect, it } from 'vitest';
import { buildBatchStep, commitBatch, type BatchEntry, type SequenceState } from '../../src/engine/batch.ts';
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

async function runBatch(ctx: GpuContext, fwd: ForwardPass, entries: BatchEntry[]): Promise<Float32Array> {
  const step = buildBatchStep(entries, fwd.kv.pool, fwd.limits.maxBlocksPerSeq);
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
