/**
 * One engine on stories260K keeps serving after refusals (issue 15): oversized prompts (an 80 MB
 * string, an 80 MB chat message, 20M token ids) are refused at once with typed errors naming the
 * field; PEFT adapters for another base model, with NaN weights or shapes of another model, and
 * host adapters with NaN are refused naming the file and tensor; after each, the golden greedy
 * output and a good adapter's output are unchanged, and the loaded adapters are as they were.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { InvalidRequestError, PromptTooLongError } from '../../src/engine/errors.ts';
import { createEngine, type Engine } from '../../src/engine/openai.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import { adapterLayout, NonFiniteAdapterError, type AdapterConfig, type HostAdapter } from '../../src/learn/adapter.ts';
import { AdapterConfigError, PeftFormatError } from '../../src/learn/errors.ts';
import { exportPeft, peftKey } from '../../src/learn/peft.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { writeSafetensors } from '../../src/model/safetensors.ts';
import { loadStories, SMALL_KV, type Loaded } from './engine-helpers.ts';
import { randomF32, testGpu } from './gpu.ts';

let ctx: GpuContext;
let loaded: Loaded;
let config: ModelConfig;
let engine: Engine;

const adapterConfig: AdapterConfig = { r: 4, loraAlpha: 8, useRslora: false, targetModules: ['q_proj', 'v_proj', 'down_proj'], baseModelNameOrPath: 'karpathy/stories260K' };

function randomAdapter(model: ModelConfig, seed: number, c = adapterConfig): HostAdapter {
  const l = adapterLayout(model, c);
  return { config: c, tensors: l.slices.map((s, i) => ({ layer: s.layer, module: s.module, A: randomF32(c.r * s.inDim, seed + 2 * i, 1 / Math.sqrt(s.inDim)), B: randomF32(s.outDim * c.r, seed + 2 * i + 1, 1) })) };
}

beforeAll(async () => {
  ctx = await testGpu();
  loaded = await loadStories(ctx);
  // As loadModel names a model loaded from a folder called stories260K.
  config = { ...loaded.model.config, names: ['stories260K'] };
  engine = createEngine(ctx, { ...loaded.model, config }, { kvBudgetBytes: SMALL_KV, maxTokensPerIteration: 64, maxSeqs: 4, adapters: { slots: 2, maxRank: 4 }, scheduler: { budgetMs: Infinity } });
});

const golden = async () => {
  const r = await engine.completions.create({ prompt: '', temperature: 0, max_tokens: 200, return_token_ids: true });
  expect(r.choices[0].token_ids).toEqual(loaded.reference.output_ids_after_bos);
};
const greedy = async (adapter?: string) => (await engine.completions.create({ prompt: 'Once upon a time', adapter, temperature: 0, max_tokens: 12, ignore_eos: true, return_token_ids: true })).choices[0].token_ids!;

describe('refused requests leave the engine serving', () => {
  it('an 80 MB prompt, an 80 MB chat message and 20M token ids are refused before tokenizing; then the golden output', async () => {
    const huge = 'a'.repeat(80 * 2 ** 20);
    const limit = 64 * engine.core.limits.maxContext;
    await expect(engine.completions.create({ prompt: huge })).rejects.toMatchObject({ name: 'InvalidRequestError', code: 'invalid-request', param: 'prompt' });
    await expect(engine.completions.create({ prompt: huge })).rejects.toThrow(`request: prompt brings the prompt to ${huge.length} characters; a request may hold at most ${limit}`);
    await expect(engine.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }, { role: 'user', content: huge }] })).rejects.toMatchObject({ param: 'messages[1].content' });
    const ids = new Array<number>(20_000_000).fill(5);
    await expect(engine.completions.create({ prompt: ids })).rejects.toBeInstanceOf(PromptTooLongError);
    await expect(engine.completions.create({ prompt: 'x'.repeat(limit + 1), stream: true })).rejects.toBeInstanceOf(InvalidRequestError);
    expect(engine.stats()).toMatchObject({ running: 0, waiting: 0 });
    await golden();
  });
});

describe('refused adapters leave the loaded ones and the base model as they were', () => {
  it('another base model, NaN weights, another model shape, a NaN host adapter: each refused by name; the good adapter and the golden output unchanged', async () => {
    const good = randomAdapter(config, 11);
    await engine.adapters.load('good', good);
    const want = await greedy('good');
    expect(want).not.toEqual(await greedy());

    const files = exportPeft(config, good);
    const other = JSON.stringify({ ...JSON.parse(files.config), base_model_name_or_path: 'HuggingFaceTB/SmolLM2-135M' });
    const base = await engine.adapters.load('other', { weights: files.weights, config: other }).catch((e: unknown) => e);
    expect(base).toBeInstanceOf(AdapterConfigError);
    expect(base).toMatchObject({ file: 'adapter_config.json', field: 'base_model_name_or_path' });

    const nan = randomAdapter(config, 12);
    nan.tensors[3].B[9] = NaN;
    // PEFT's tensors written by hand (exportPeft itself refuses a NaN host adapter): A [r, in], B [out, r].
    const poisoned = writeSafetensors(nan.tensors.flatMap((t) => [
      { name: peftKey(t.layer, t.module, 'A'), dtype: 'F32' as const, shape: [4, t.A.length / 4], data: new Uint8Array(t.A.slice().buffer) },
      { name: peftKey(t.layer, t.module, 'B'), dtype: 'F32' as const, shape: [t.B.length / 4, 4], data: new Uint8Array(t.B.slice().buffer) },
    ]));
    const nanErr = await engine.adapters.load('nan', { weights: poisoned, config: files.config }).catch((e: unknown) => e);
    expect(nanErr).toBeInstanceOf(PeftFormatError);
    expect((nanErr as Error).message).toBe(`adapter_model.safetensors: '${peftKey(nan.tensors[3].layer, nan.tensors[3].module, 'B')}' holds NaN at element 9 (row 2, column 1); adapter weights must be finite numbers`);

    const wide: ModelConfig = { ...config, hiddenSize: 96, nHeads: 12 };
    const wideFiles = exportPeft(wide, randomAdapter(wide, 13));
    await expect(engine.adapters.load('wide', wideFiles)).rejects.toBeInstanceOf(PeftFormatError);

    await expect(engine.adapters.load('good', nan)).rejects.toBeInstanceOf(NonFiniteAdapterError); // a failed replacement keeps 'good'

    expect(engine.adapters.list().map((a) => [a.name, a.version])).toEqual([['good', 1]]);
    expect(await greedy('good')).toEqual(want);
    await golden();

    // The explicit override applies the other base model's adapter.
    const warnings: string[] = [];
    await engine.adapters.load('other', { weights: files.weights, config: other, allowBaseMismatch: true, onWarning: (m) => warnings.push(m) });
    expect(warnings).toHaveLength(1);
    expect(await greedy('other')).toEqual(want); // the same weights as 'good'
    engine.adapters.unload('other');
  });
});
