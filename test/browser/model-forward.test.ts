/**
 * The GPU decoder forward on the real stories260K model, against the published greedy output
 * (the golden test) and against the CPU reference forward for prefill, decode and mixed batches,
 * in every weight format (f16/q4 compared with a reference that uses the same rounded weights).
 */
import { describe, expect, it } from 'vitest';
import { buildBatchStep, commitBatch, type BatchEntry, type SequenceState } from '../../src/engine/batch.ts';
import { readF32, readU32, createStorage } from '../../src/gpu/buffers.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import { encodeDispatches } from '../../src/gpu/dispatch.ts';
import { argmax } from '../../src/kernels/sampling.ts';
import { dequantizeRef, packF16Ref, quantizeQ4Ref, type WeightFormat } from '../../src/kernels/weights.ts';
import { createKvCache } from '../../src/kv/cache.ts';
import { parseModelConfig, type ModelConfig } from '../../src/model/config.ts';
import { ForwardPass, MAX_PLANNED_SHAPES } from '../../src/model/forward.ts';
import { setKernelPlan, type KernelPlan } from '../../src/kernels/plan.ts';
import { uploadModelWeights } from '../../src/model/gpu-weights.ts';
import { hostWeightsFromSafetensors, ReferenceModel, type HostWeights } from '../../src/model/reference.ts';
import { expectedTensors } from '../../src/model/tensors.ts';
import { closeTo, testGpu } from './gpu.ts';

const base = '/models/stories260K/';
async function loadHost(): Promise<{ config: ModelConfig; host: HostWeights; reference: { prompt_ids: number[]; steps: number; output_ids_after_bos: number[] } }> {
  const [cfg, st, ref] = await Promise.all([fetch(base + 'config.json').then((r) => r.text()), fetch(base + 'model.safetensors').then((r) => r.arrayBuffer()), fetch(base + 'reference.json').then((r) => r.json())]);
  const config = parseModelConfig(cfg);
  return { config, host: hostWeightsFromSafetensors(config, new Uint8Array(st)), reference: ref };
}

/** The host weights as the GPU holds them in `format` (f16-rounded or q4-quantized linears). */
function roundedHost(config: ModelConfig, host: HostWeights, format: WeightFormat): HostWeights {
  if (format === 'f32') return host;
  const out: HostWeights = new Map(host);
  for (const t of expectedTensors(config)) {
    if (t.role === 'vector') continue;
    const [N, K] = t.shape;
    const w = host.get(t.name)!;
    out.set(t.name, format === 'f16' ? dequantizeRef('f16', N, K, packF16Ref(w, N, K)) : (() => { const q = quantizeQ4Ref(w, N, K); return dequantizeRef('q4', N, K, q.data, q.scales); })());
  }
  return out;
}

async function makePass(ctx: GpuContext, config: ModelConfig, host: HostWeights, format: WeightFormat, plan?: KernelPlan) {
  const weights = await uploadModelWeights(ctx, config, host, format);
  const kv = createKvCache(ctx, { nLayers: config.nLayers, nKvHeads: config.nKvHeads, headDim: config.headDim }, 48);
  return new ForwardPass(ctx, weights, kv, { maxTokens: 64, maxSeqs: 4, maxBlocksPerSeq: 16 }, null, plan);
}

/** Run one batch; returns the logits [nSeqs, vocab]. */
async function runBatch(ctx: GpuContext, fwd: ForwardPass, entries: BatchEntry[]): Promise<Float32Array> {
  const step = buildBatchStep(entries, fwd.kv.pool, fwd.limits.maxBlocksPerSeq);
  const { T, nSeqs } = fwd.write(step);
  const enc = ctx.device.createCommandEncoder();
  encodeDispatches(enc, fwd.dispatches(T, nSeqs, step.mode));
  ctx.device.queue.submit([enc.finish()]);
  commitBatch(entries);
  return readF32(ctx, fwd.arena.logits, nSeqs * fwd.weights.config.vocabSize);
}

describe('GPU forward of stories260K', () => {
  // 'fused' is the default plan; 'unfused' (the plan before issue 11, every family's original
  // variant) stays selectable and must reproduce the golden output as well.
  for (const plan of ['fused', 'unfused'] as const) {
    it(`reproduces the published 200-step greedy output exactly (f32 weights, GPU argmax, ${plan} plan)`, async () => {
      const ctx = await testGpu();
      const { config, host, reference } = await loadHost();
      setKernelPlan(ctx, plan); // the kernels read it when the dispatches are built
      try {
        const fwd = await makePass(ctx, config, host, 'f32', plan);
        expect(fwd.plan).toBe(plan);
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
          const [next] = await readU32(ctx, ids, 1); // the only readback of the decode loop
          out.push(next);
          seq.tokens.push(next);
        }
        expect(out).toEqual(reference.output_ids_after_bos);
        // One plan for the first prefill of 1 token ('decode' shape), reused for all 199 decode steps.
        expect(fwd.plannedShapes).toBe(1);
        // 15 dispatches per layer + embedding + 3 for the head unfused; 7 per layer + 2 fused.
        expect(fwd.dispatches(1, 1, 'decode').length).toBe(plan === 'unfused' ? 15 * config.nLayers + 4 : 7 * config.nLayers + 2);
      } finally {
        setKernelPlan(ctx, 'fused');
      }
    });
  }

  it('first-step logits (after BOS) match the CPU reference forward to 1e-4 relative (f32)', async () => {
    const ctx = await testGpu();
    const { config, host } = await loadHost();
    const fwd = await makePass(ctx, config, host, 'f32');
    const got = await runBatch(ctx, fwd, [{ seq: { tokens: [1], computed: 0, blocks: [] }, count: 1 }]);
    const ref = new ReferenceModel(config, host);
    const want = ref.forward([1], ref.newCache(4));
    const maxAbs = want.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    let worstRel = 0;
    for (let i = 0; i < want.length; i++) worstRel = Math.max(worstRel, Math.abs(got[i] - want[i]) / maxAbs);
    // Relative to the logit scale (max |logit| ~ 17): elementwise relative error is meaningless for logits near 0.
    expect(worstRel).toBeLessThan(1e-4);
    expect(closeTo(got, want, { atol: 1e-4 * maxAbs, rtol: 1e-4 }, 'first-step logits')).toBeNull();
    console.log(`first-step logits: max |gpu - cpu| / max|logit| = ${worstRel.toExponential(2)}`);
  });

  for (const format of ['f32', 'f16', 'q4'] as const) {
    it(`matches the CPU reference on prefill, decode and a mixed batch (${format} weights)`, async () => {
      const ctx = await testGpu();
      const { config, host } = await loadHost();
      const fwd = await makePass(ctx, config, host, format);
      const ref = new ReferenceModel(config, roundedHost(config, host, format));
      const V = config.vocabSize;
      // Logits are O(10): f32 sums in another order differ by ~1e-5 relative; 2e-3 absolute covers 5 layers of it.
      const tol = { atol: 2e-3, rtol: 1e-3 };

      const a: SequenceState = { tokens: [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396], computed: 0, blocks: [] };
      const b: SequenceState = { tokens: [1, 403, 407], computed: 0, blocks: [] };
      const refA = ref.newCache(64), refB = ref.newCache(64);

      // 1) prefill a's first 17 tokens (crosses a block boundary) alone
      let logits = await runBatch(ctx, fwd, [{ seq: a, count: 17 }]);
      let want = ref.forward(a.tokens.slice(0, 17), refA).subarray(16 * V, 17 * V);
      expect(closeTo(logits, want, tol, 'prefill logits')).toBeNull();

      // 2) mixed: a decodes token 17 while b prefills its 3 tokens
      logits = await runBatch(ctx, fwd, [{ seq: a, count: 1 }, { seq: b, count: 3 }]);
      expect(closeTo(logits.subarray(0, V), ref.forward([a.tokens[17]], refA), tol, 'mixed: decode row')).toBeNull();
      expect(closeTo(logits.subarray(V, 2 * V), ref.forward(b.tokens, refB).subarray(2 * V, 3 * V), tol, 'mixed: prefill row')).toBeNull();

      // 3) decode both (paged decode attention, different lengths)
      a.tokens.push(5);
      b.tokens.push(6);
      logits = await runBatch(ctx, fwd, [{ seq: a, count: 2 }, { seq: b, count: 1 }]);
      expect(closeTo(logits.subarray(0, V), ref.forward(a.tokens.slice(18, 20), refA).subarray(V, 2 * V), tol, 'a: 2-token chunk')).toBeNull();
      expect(closeTo(logits.subarray(V, 2 * V), ref.forward([6], refB), tol, 'b: decode')).toBeNull();
      a.tokens.push(7);
      b.tokens.push(8);
      logits = await runBatch(ctx, fwd, [{ seq: a, count: 1 }, { seq: b, count: 1 }]);
      expect(closeTo(logits.subarray(0, V), ref.forward([7], refA), tol, 'decode batch row a')).toBeNull();
      expect(closeTo(logits.subarray(V, 2 * V), ref.forward([8], refB), tol, 'decode batch row b')).toBeNull();
    });
  }

  it('rejects a step past its limits before touching the GPU', async () => {
    const ctx = await testGpu();
    const { config, host } = await loadHost();
    const fwd = await makePass(ctx, config, host, 'f32');
    const step = buildBatchStep([{ seq: { tokens: [1, 2], computed: 0, blocks: [] }, count: 2 }], fwd.kv.pool, 16);
    step.tokens[1] = 9999;
    expect(() => fwd.write(step)).toThrow('forward: tokens token 1 = 9999 is outside the vocabulary [0, 512)');
  });
});

describe('ForwardPass plan cache', () => {
  it('reuses a shape and keeps at most MAX_PLANNED_SHAPES, dropping the least recently used', async () => {
    const ctx = await testGpu();
    const { config, host } = await loadHost();
    const fwd = await makePass(ctx, config, host, 'f32');
    const first = fwd.dispatches(1, 1, 'decode');
    expect(fwd.dispatches(1, 1, 'decode')).toBe(first);
    const oldest = fwd.dispatches(2, 2, 'mixed');
    for (let T = 1; T <= MAX_PLANNED_SHAPES - 2; T++) fwd.dispatches(T, 1, 'mixed');
    expect(fwd.plannedShapes).toBe(MAX_PLANNED_SHAPES);
    expect(fwd.dispatches(1, 1, 'decode')).toBe(first); // touched: now the most recent
    fwd.dispatches(3, 3, 'mixed'); // one shape too many: evicts 'mixed:2:2', the least recently used
    expect(fwd.plannedShapes).toBe(MAX_PLANNED_SHAPES);
    expect(fwd.dispatches(1, 1, 'decode')).toBe(first);
    expect(fwd.dispatches(2, 2, 'mixed')).not.toBe(oldest); // rebuilt
    expect(() => fwd.dispatches(65, 1, 'mixed')).toThrow('forward: T = 65 is outside 1..64');
  });
});
