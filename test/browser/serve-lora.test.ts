/**
 * Serving LoRA adapters on stories260K (SwiftShader): the forward pass with an adapter bank against
 * the CPU TrainingReference (which runs the same decoder with one adapter), batches that mix
 * adapters and base-model rows against single-request runs, the golden output with a bank
 * attached, loading / replacing / unloading by name, and the serving overhead of an adapter.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { AdapterNotFoundError, AdapterUnloadedError } from '../../src/engine/adapters.ts';
import { buildBatchStep, commitBatch, type BatchEntry, type SequenceState } from '../../src/engine/batch.ts';
import { EngineOptionsError, InvalidRequestError } from '../../src/engine/errors.ts';
import { createEngine, type Engine } from '../../src/engine/openai.ts';
import { readF32 } from '../../src/gpu/buffers.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import { encodeDispatches } from '../../src/gpu/dispatch.ts';
import { NO_ADAPTER } from '../../src/kernels/lora.ts';
import { createKvCache } from '../../src/kv/cache.ts';
import type { AdapterConfig, HostAdapter } from '../../src/learn/adapter.ts';
import { createAdapterBank } from '../../src/learn/bank.ts';
import { AdapterShapeError, AdapterSlotError } from '../../src/learn/errors.ts';
import { exportPeft } from '../../src/learn/peft.ts';
import { TrainingReference } from '../../src/learn/reference.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { ForwardPass } from '../../src/model/forward.ts';
import { LINEAR_MODULES, linearShape, type LinearModule } from '../../src/model/tensors.ts';
import { loadStories, SMALL_KV, type Loaded } from './engine-helpers.ts';
import { closeTo, randomF32, testGpu } from './gpu.ts';

let ctx: GpuContext;
let loaded: Loaded;
let config: ModelConfig;

beforeAll(async () => {
  ctx = await testGpu();
  loaded = await loadStories(ctx);
  config = loaded.model.config;
});

/**
 * A LoRA with random A (PEFT's init range) AND random non-zero B (a trained adapter's B is not 0;
 * B = 0 would make every check pass trivially). bScale sets how far the adapter moves the logits.
 */
function randomAdapter(model: ModelConfig, seed: number, o: { r: number; alpha: number; targets: readonly LinearModule[]; rslora?: boolean; bScale?: number }): HostAdapter {
  const config: AdapterConfig = { r: o.r, loraAlpha: o.alpha, useRslora: o.rslora ?? false, targetModules: [...o.targets], baseModelNameOrPath: 'stories260K' };
  const tensors = [];
  let s = seed;
  for (let layer = 0; layer < model.nLayers; layer++) {
    for (const module of LINEAR_MODULES.filter((m) => o.targets.includes(m))) {
      const [outDim, inDim] = linearShape(model, module);
      tensors.push({ layer, module, A: randomF32(o.r * inDim, s++, 1 / Math.sqrt(inDim)), B: randomF32(outDim * o.r, s++, o.bScale ?? 0.1) });
    }
  }
  return { config, tensors };
}

/** log-softmax of one row. */
function logSoftmax(row: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(row, (v) => v - lse);
}

function argmaxOf(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/** Largest |a - b| over max |b|: the error on the logit scale (elementwise relative is meaningless near 0). */
function scaledError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0, scale = 0;
  for (let i = 0; i < b.length; i++) {
    worst = Math.max(worst, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return worst / scale;
}

const ALL = LINEAR_MODULES;
const ADAPTER_A = () => randomAdapter(config, 100, { r: 8, alpha: 16, targets: ALL });
// Lower rank (zero-padded in an r=8 bank), a subset of modules, rsLoRA scaling.
const ADAPTER_B = () => randomAdapter(config, 200, { r: 4, alpha: 8, targets: ['q_proj', 'v_proj', 'down_proj'], rslora: true, bScale: 0.2 });

describe('ForwardPass with an adapter bank (logits vs TrainingReference, f32)', () => {
  // Logits are O(10); the GPU sums in another order than the CPU reference: the plain forward
  // test allows 2e-3 absolute + 1e-3 relative, and the LoRA path adds 2 x 7 x 5 small f32 GEMMs.
  const tol = { atol: 2e-3, rtol: 1e-3 };

  async function step(fwd: ForwardPass, entries: BatchEntry[]): Promise<{ logits: Float32Array; lora: boolean }> {
    const s = buildBatchStep(entries, fwd.kv.pool, fwd.limits.maxBlocksPerSeq);
    const { T, nSeqs, lora } = fwd.write(s);
    const enc = ctx.device.createCommandEncoder();
    encodeDispatches(enc, fwd.dispatches(T, nSeqs, s.mode, lora));
    ctx.device.queue.submit([enc.finish()]);
    commitBatch(entries);
    return { logits: await readF32(ctx, fwd.arena.logits, nSeqs * config.vocabSize), lora };
  }

  it('prefill, mixed and decode batches mixing adapter A, adapter B and none match the reference per row', async () => {
    const V = config.vocabSize;
    const bank = createAdapterBank(ctx, config, { nSlots: 3, rank: 8, targetModules: [...ALL] });
    const kv = createKvCache(ctx, { nLayers: config.nLayers, nKvHeads: config.nKvHeads, headDim: config.headDim }, 32);
    const fwd = new ForwardPass(ctx, loaded.model.weights, kv, { maxTokens: 64, maxSeqs: 4, maxBlocksPerSeq: 8 }, bank);
    const hostA = ADAPTER_A(), hostB = ADAPTER_B();
    bank.load(0, hostA);
    bank.load(2, hostB); // slot 1 stays empty
    const refs = [new TrainingReference(config, loaded.host, hostA), new TrainingReference(config, loaded.host, hostB), new TrainingReference(config, loaded.host, null)];
    const a: SequenceState = { tokens: [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401], computed: 0, blocks: [], adapterSlot: 0 };
    const b: SequenceState = { tokens: [1, 403, 407, 261, 378], computed: 0, blocks: [], adapterSlot: 2 };
    const c: SequenceState = { tokens: [1, 403, 407], computed: 0, blocks: [] }; // base model
    const seqs = [a, b, c];
    const wantLast = (i: number) => {
      const l = refs[i].forward(seqs[i].tokens.slice(0, seqs[i].computed)).logits;
      return l.subarray(l.length - V);
    };
    let worst = 0;
    const check = (logits: Float32Array, row: number, i: number, what: string) => {
      const got = logits.subarray(row * V, (row + 1) * V);
      const want = wantLast(i);
      worst = Math.max(worst, scaledError(got, want));
      expect(closeTo(got, want, tol, what)).toBeNull();
    };

    // 1) a prefills 17 tokens (crosses a block) alone, with adapter A
    let r = await step(fwd, [{ seq: a, count: 17 }]);
    expect(r.lora).toBe(true);
    check(r.logits, 0, 0, 'A prefill');
    // 2) mixed: a decodes, b prefills (adapter B), c prefills (none)
    r = await step(fwd, [{ seq: a, count: 1 }, { seq: b, count: 5 }, { seq: c, count: 3 }]);
    check(r.logits, 0, 0, 'A decode in mixed batch');
    check(r.logits, 1, 1, 'B prefill in mixed batch');
    check(r.logits, 2, 2, 'none prefill in mixed batch');
    // 3) three decode steps of all three (decode mode), each feeding back its own argmax
    for (let s = 0; s < 3; s++) {
      const prev = r.logits;
      seqs.forEach((q, i) => q.tokens.push(argmaxOf(prev.subarray(i * V, (i + 1) * V))));
      r = await step(fwd, seqs.map((seq) => ({ seq, count: 1 })));
      seqs.forEach((_, i) => check(r.logits, i, i, `decode ${s} row ${i}`));
    }
    console.log(`adapter-bank logits vs TrainingReference: max |gpu - cpu| / max|logit| = ${worst.toExponential(2)}`);

    // The adapters matter: A's and B's logits are far from the base model's (else the test proves nothing).
    const base = new TrainingReference(config, loaded.host, null);
    for (const [i, name] of [[0, 'A'], [1, 'B']] as const) {
      const toks = seqs[i].tokens.slice(0, seqs[i].computed);
      const shift = scaledError(refs[i].forward(toks).logits, base.forward(toks).logits);
      console.log(`adapter ${name} moves the logits by ${shift.toFixed(3)} of the logit scale`);
      expect(shift).toBeGreaterThan(0.05);
    }
    fwd.destroy();
    kv.destroy();
    bank.destroy();
  });

  it('a step with no adapter row runs the base plan: no LoRA dispatch, its own plan key', async () => {
    const bank = createAdapterBank(ctx, config, { nSlots: 2, rank: 8, targetModules: [...ALL] });
    bank.load(0, ADAPTER_A());
    const kv = createKvCache(ctx, { nLayers: config.nLayers, nKvHeads: config.nKvHeads, headDim: config.headDim }, 8);
    const fwd = new ForwardPass(ctx, loaded.model.weights, kv, { maxTokens: 16, maxSeqs: 2, maxBlocksPerSeq: 4 }, bank);
    const plain = new ForwardPass(ctx, loaded.model.weights, kv, { maxTokens: 16, maxSeqs: 2, maxBlocksPerSeq: 4 });
    const s = buildBatchStep([{ seq: { tokens: [1, 2, 3], computed: 0, blocks: [] }, count: 3 }], kv.pool, 4);
    expect([...s.adapterSlots!]).toEqual([NO_ADAPTER, NO_ADAPTER, NO_ADAPTER]);
    expect(fwd.write(s).lora).toBe(false);
    const base = fwd.dispatches(3, 1, 'mixed');
    expect(base.length).toBe(plain.dispatches(3, 1, 'mixed').length);
    const withLora = fwd.dispatches(3, 1, 'mixed', true);
    expect(withLora).not.toBe(base);
    // A LoRA batch runs the unfused layer list (src/model/forward.ts) plus 2 dispatches (shrink,
    // expand) per module per layer; the unfused plan's base list is the same without them.
    const unfused = new ForwardPass(ctx, loaded.model.weights, kv, { maxTokens: 16, maxSeqs: 2, maxBlocksPerSeq: 4 }, bank, 'unfused');
    const unfusedBase = unfused.dispatches(3, 1, 'mixed');
    expect(unfused.dispatches(3, 1, 'mixed', true).length - unfusedBase.length).toBe(2 * ALL.length * config.nLayers);
    if (fwd.plan === 'fused') expect(base.length).toBeLessThan(unfusedBase.length);
    unfused.destroy();
    expect(() => plain.dispatches(3, 1, 'mixed', true)).toThrow('no adapter bank');
    s.adapterSlots![1] = 5;
    expect(() => fwd.write(s)).toThrow('token 1 names slot 5; the bank has 2');
    s.adapterSlots![1] = 0;
    expect(() => plain.write(s)).toThrow('has no adapter bank');
    fwd.destroy();
    plain.destroy();
    kv.destroy();
    bank.destroy();
  });
});

describe('engine serving adapters by name', () => {
  let engine: Engine;
  // No time budget: exact iteration counts.
  const opts = { kvBudgetBytes: SMALL_KV, maxTokensPerIteration: 64, maxSeqs: 8, adapters: { slots: 3, maxRank: 8 }, scheduler: { budgetMs: 0 } };

  beforeAll(async () => {
    engine = createEngine(ctx, loaded.model, opts);
    await engine.adapters.load('A', ADAPTER_A());
    await engine.adapters.load('B', ADAPTER_B());
  });

  const greedy = async (e: Engine, prompt: string, adapter: string | undefined, max_tokens = 16) => (await e.completions.create({ prompt, adapter, temperature: 0, max_tokens, return_token_ids: true, ignore_eos: true })).choices[0].token_ids!;

  it('golden: greedy without an adapter is unchanged with adapters loaded (reference.json exact)', async () => {
    // Record which plans the engine asks for: a base-model request must never take the LoRA plan.
    const fwd = engine.core.forward;
    const asked: boolean[] = [];
    const original = fwd.dispatchParts.bind(fwd);
    fwd.dispatchParts = (T, nSeqs, mode, lora = false) => (asked.push(lora), original(T, nSeqs, mode, lora));
    try {
      const r = await engine.completions.create({ prompt: '', temperature: 0, max_tokens: 200, return_token_ids: true });
      expect(r.choices[0].token_ids).toEqual(loaded.reference.output_ids_after_bos);
      expect(r.choices[0].text).toBe(loaded.reference.text);
      expect(asked.length).toBe(200);
      expect(asked.every((l) => l === false)).toBe(true);
      await greedy(engine, 'The', 'A', 2);
      expect(asked.slice(200)).toEqual([true, true]);
    } finally {
      fwd.dispatchParts = original;
    }
  });

  it("a request's tokens and logprobs with adapter A follow TrainingReference with A", async () => {
    const prompt = 'Once upon a time';
    const r = await engine.completions.create({ prompt, adapter: 'A', temperature: 0, max_tokens: 8, ignore_eos: true, return_token_ids: true, logprobs: 0 });
    const ids = r.choices[0].token_ids!;
    const lps = r.choices[0].logprobs!.token_logprobs;
    const ref = new TrainingReference(config, loaded.host, ADAPTER_A());
    const tokens = [...r.prompt_token_ids!];
    const V = config.vocabSize;
    let worst = 0;
    for (let i = 0; i < ids.length; i++) {
      const logits = ref.forward(tokens).logits;
      const row = logits.subarray(logits.length - V);
      const want = logSoftmax(row);
      expect(ids[i]).toBe(argmaxOf(row));
      worst = Math.max(worst, Math.abs(lps[i] - want[ids[i]]));
      tokens.push(ids[i]);
    }
    console.log(`engine logprobs with adapter A vs TrainingReference: max |diff| = ${worst.toExponential(2)} over ${ids.length} tokens`);
    expect(worst).toBeLessThan(1e-4); // log-probs O(1..10); f32 logits agree to ~1e-6 of their scale
    // and the base model says something else for this prompt
    expect(await greedy(engine, prompt, undefined, 8)).not.toEqual(ids);
  });

  it('a batch mixing adapter A, adapter B and none gives each row its tokens when alone', async () => {
    const prompts = ['Once upon a time', 'The cat', 'Lily and Ben went to the park', 'One day, a big dog', 'Tom had a red ball.', 'She was sad'];
    const names = [undefined, 'A', 'B'];
    const jobs = prompts.flatMap((p) => names.map((a) => ({ p, a }))).slice(0, 8); // maxSeqs rows
    const alone: number[][] = [];
    for (const j of jobs) alone.push(await greedy(engine, j.p, j.a));
    const before = engine.stats().iterations;
    const together = await Promise.all(jobs.map((j) => greedy(engine, j.p, j.a)));
    expect(together).toEqual(alone);
    expect(engine.stats().iterations - before).toBe(16); // one prefill step + 15 decode steps, all rows together
    // Same prompt, three adapters: three different continuations.
    expect(new Set(alone.slice(0, 3).map((x) => x.join(','))).size).toBe(3);
  });

  it('PEFT files load to the same adapter; a replacement under a name is seen by later requests', async () => {
    const hostA = ADAPTER_A();
    const files = exportPeft(config, hostA);
    const info = await engine.adapters.load('A-peft', files);
    expect(info).toMatchObject({ name: 'A-peft', slot: 2, r: 8, version: 1 });
    const wantA = await greedy(engine, 'The cat', 'A');
    expect(await greedy(engine, 'The cat', 'A-peft')).toEqual(wantA);
    // Replace A-peft by B's weights: same slot, version 2, B's tokens from now on.
    const again = await engine.adapters.load('A-peft', ADAPTER_B());
    expect(again).toMatchObject({ slot: 2, r: 4, version: 2 });
    expect(await greedy(engine, 'The cat', 'A-peft')).toEqual(await greedy(engine, 'The cat', 'B'));
    expect(engine.adapters.list().map((a) => [a.name, a.slot])).toEqual([['A', 0], ['B', 1], ['A-peft', 2]]);
    engine.adapters.unload('A-peft');
  });

  it('unload: requests naming it fail with typed errors (running, queued, later), the others keep working', async () => {
    await engine.adapters.load('C', randomAdapter(config, 300, { r: 2, alpha: 4, targets: ['o_proj', 'up_proj'] }));
    const wantA = await greedy(engine, 'The sun', 'A', 24);
    const wantBase = await greedy(engine, 'The sun', undefined, 24);
    // Three requests in flight; C's is running when C is unloaded after the first step.
    const pa = greedy(engine, 'The sun', 'A', 24);
    const pc = greedy(engine, 'The sun', 'C', 24);
    const pn = greedy(engine, 'The sun', undefined, 24);
    const start = engine.stats().iterations;
    while (engine.stats().iterations === start) await new Promise((r) => setTimeout(r, 1));
    const queued = greedy(engine, 'The sun', 'C', 24); // accepted, still in the waiting queue
    const info = engine.adapters.unload('C');
    expect(info.name).toBe('C');
    await expect(pc).rejects.toBeInstanceOf(AdapterUnloadedError);
    await expect(queued).rejects.toMatchObject({ code: 'adapter-unloaded', adapter: 'C' });
    expect(await pa).toEqual(wantA);
    expect(await pn).toEqual(wantBase);
    // Later requests naming C are refused up front, naming the 'adapter' field.
    const later = greedy(engine, 'The sun', 'C');
    await expect(later).rejects.toBeInstanceOf(InvalidRequestError);
    await expect(later).rejects.toMatchObject({ code: 'invalid-request', param: 'adapter' });
    await expect(later).rejects.toThrow("'C' is not loaded (loaded: A, B)");
    expect(() => engine.adapters.unload('C')).toThrow(AdapterNotFoundError);
    expect(engine.stats()).toMatchObject({ running: 0, waiting: 0, freeBlocks: engine.stats().totalBlocks });
    // The slot is free again.
    expect((await engine.adapters.load('C2', ADAPTER_B())).slot).toBe(2);
    engine.adapters.unload('C2');
  });

  it('refuses adapters that do not fit, with typed errors, and keeps the loaded ones', async () => {
    await expect(engine.adapters.load('big', randomAdapter(config, 1, { r: 16, alpha: 16, targets: ['q_proj'] }))).rejects.toBeInstanceOf(AdapterShapeError);
    const bad = ADAPTER_A();
    bad.tensors[3] = { ...bad.tensors[3], B: new Float32Array(5) };
    await expect(engine.adapters.load('A', bad)).rejects.toThrow(AdapterShapeError);
    await expect(engine.adapters.load('', ADAPTER_A())).rejects.toMatchObject({ param: 'adapter' });
    await engine.adapters.load('X', ADAPTER_B());
    await expect(engine.adapters.load('Y', ADAPTER_B())).rejects.toBeInstanceOf(AdapterSlotError); // 3 slots: A, B, X
    engine.adapters.unload('X');
    // The failed replacement of 'A' left it as it was.
    expect(engine.adapters.list().find((a) => a.name === 'A')).toMatchObject({ version: 1, r: 8 });
    await expect(engine.completions.create({ prompt: 'x', adapter: 7 as unknown as string })).rejects.toMatchObject({ param: 'adapter' });
    const plain = createEngine(ctx, loaded.model, { kvBudgetBytes: SMALL_KV });
    await expect(plain.adapters.load('A', ADAPTER_A())).rejects.toBeInstanceOf(EngineOptionsError);
    await expect(plain.completions.create({ prompt: 'x', adapter: 'A' })).rejects.toThrow('the engine has no adapter slots');
    expect(() => createEngine(ctx, loaded.model, { adapters: { slots: 1, maxRank: 0 } })).toThrow(EngineOptionsError);
    plain.destroy();
  });

  it('measures decode tokens/s with no adapter vs an r=8 adapter on all modules (SwiftShader, noisy)', async () => {
    const run = async (adapter: string | undefined) => {
      const r = await engine.completions.create({ prompt: 'Once upon a time', adapter, temperature: 0, max_tokens: 96, ignore_eos: true });
      return r.usage!.decode_tokens_per_s;
    };
    await run(undefined);
    await run('A'); // warm both plans
    const base: number[] = [], lora: number[] = [];
    for (let i = 0; i < 3; i++) {
      base.push(await run(undefined));
      lora.push(await run('A'));
    }
    const median = (x: number[]) => [...x].sort((p, q) => p - q)[1];
    console.log(`stories260K decode, 1 stream: no adapter ${median(base).toFixed(1)} tok/s [${base.map((x) => x.toFixed(1)).join(', ')}], r=8 adapter on all 7 modules ${median(lora).toFixed(1)} tok/s [${lora.map((x) => x.toFixed(1)).join(', ')}]`);
    expect(median(base)).toBeGreaterThan(0);
    expect(median(lora)).toBeGreaterThan(0);
  });
});
