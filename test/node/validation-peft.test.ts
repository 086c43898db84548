/**
 * PEFT adapters made for another model are refused at import (issue 15): a base_model_name_or_path
 * that names another model (or, with allowBaseMismatch, a warning and the adapter applied), shapes
 * that do not fit the loaded model, NaN/Inf tensors (PEFT files and host adapters). Errors name
 * the file (adapter_config.json / adapter_model.safetensors) and the field or tensor key.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { f32ToF16Bits } from '../../src/gpu/f16.ts';
import { adapterLayout, checkHostAdapter, NonFiniteAdapterError, type AdapterConfig, type HostAdapter } from '../../src/learn/adapter.ts';
import { AdapterConfigError, PeftFormatError } from '../../src/learn/errors.ts';
import { checkBaseModel, exportPeft, importPeft, peftKey } from '../../src/learn/peft.ts';
import { parseModelConfig, type ModelConfig } from '../../src/model/config.ts';
import { headerLength, parseHeader, writeSafetensors, type SafetensorsDtype } from '../../src/model/safetensors.ts';
import { randomF32 } from '../util/random.ts';

const stories = parseModelConfig(readFileSync(new URL('../../public/models/stories260K/config.json', import.meta.url), 'utf8'));
/** stories260K as the loader sees it from a directory named stories260K. */
const model: ModelConfig = { ...stories, names: ['stories260K'] };
const cfg: AdapterConfig = { r: 2, loraAlpha: 4, useRslora: false, targetModules: ['q_proj', 'down_proj'], baseModelNameOrPath: 'karpathy/stories260K' };

function randomHost(m: ModelConfig, c: AdapterConfig, seed = 1): HostAdapter {
  const l = adapterLayout(m, c);
  return { config: c, tensors: l.slices.map((s, i) => ({ layer: s.layer, module: s.module, A: randomF32(c.r * s.inDim, seed + 2 * i), B: randomF32(s.outDim * c.r, seed + 2 * i + 1) })) };
}

const files = exportPeft(model, randomHost(model, cfg));
const configWith = (extra: Record<string, unknown>) => JSON.stringify({ ...JSON.parse(files.config), ...extra });

async function rejection<E extends Error>(type: new (...a: never[]) => E, p: Promise<unknown>): Promise<E> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e, 'expected a rejection').toBeInstanceOf(type);
  expect(typeof (e as { code?: unknown }).code).toBe('string');
  return e as E;
}

describe('base_model_name_or_path', () => {
  it('the same model under another path or case is accepted', async () => {
    for (const base of ['karpathy/stories260K', './models/STORIES260K/', 'stories260K', '']) {
      const host = await importPeft(model, { weights: files.weights, config: configWith({ base_model_name_or_path: base }) });
      expect(host.tensors).toHaveLength(10);
    }
  });

  it('another base model is refused, naming adapter_config.json, the field and both names', async () => {
    const e = await rejection(AdapterConfigError, importPeft(model, { weights: files.weights, config: configWith({ base_model_name_or_path: 'HuggingFaceTB/SmolLM2-135M' }) }));
    expect(e).toMatchObject({ code: 'bad-adapter-config', file: 'adapter_config.json', field: 'base_model_name_or_path' });
    expect(e.message).toBe("adapter_config.json: base_model_name_or_path = 'HuggingFaceTB/SmolLM2-135M' names a different base model than the loaded one ('stories260K'); a LoRA adapter only means something on the model it was trained on (pass allowBaseMismatch: true to apply it anyway)");
  });

  it('allowBaseMismatch applies it with a warning', async () => {
    const warnings: string[] = [];
    const host = await importPeft(model, { weights: files.weights, config: configWith({ base_model_name_or_path: 'org/other' }), allowBaseMismatch: true, onWarning: (m) => warnings.push(m) });
    expect(host.tensors).toHaveLength(10);
    expect(warnings).toEqual(["adapter_config.json: base_model_name_or_path = 'org/other' names a different base model than the loaded one ('stories260K'); applied anyway (allowBaseMismatch)"]);
  });

  it('an architecture name (what adapters trained here record) is checked against the architecture', () => {
    expect(() => checkBaseModel(model, { ...cfg, baseModelNameOrPath: 'LlamaForCausalLM' })).not.toThrow();
    expect(() => checkBaseModel(model, { ...cfg, baseModelNameOrPath: 'Qwen2ForCausalLM' })).toThrow("adapter_config.json: base_model_name_or_path names the architecture 'Qwen2ForCausalLM', but the loaded model is a LlamaForCausalLM");
  });

  it('a model without a known name cannot be compared: the adapter is accepted', () => {
    expect(() => checkBaseModel(stories, { ...cfg, baseModelNameOrPath: 'org/anything' })).not.toThrow();
  });
});

describe('shapes that do not fit the loaded model', () => {
  it('an adapter for a model of other widths is refused at its first tensor, naming file and key', async () => {
    const wider: ModelConfig = { ...model, hiddenSize: 96, nHeads: 12, headDim: 8 };
    const other = exportPeft(wider, randomHost(wider, cfg));
    const e = await rejection(PeftFormatError, importPeft(model, { weights: other.weights, config: other.config }));
    expect(e.message).toBe(`adapter_model.safetensors: '${peftKey(0, 'q_proj', 'A')}' has shape [2, 96], expected [2, 64] (r=2 from adapter_config.json, q_proj is [out=64, in=64])`);
  });

  it('an adapter for a deeper model is refused naming the layer', async () => {
    const deeper: ModelConfig = { ...model, nLayers: 6 };
    const other = exportPeft(deeper, randomHost(deeper, cfg));
    const e = await rejection(PeftFormatError, importPeft(model, { weights: other.weights, config: other.config }));
    expect(e.message).toMatch(/^adapter_model\.safetensors: 'base_model\.model\.model\.layers\.5\..+' is for layer 5; the model has 5 layers$/);
  });
});

describe('NaN / Inf adapter tensors', () => {
  const h = (() => {
    const n = headerLength(files.weights.subarray(0, 8), 'x');
    return parseHeader(files.weights.subarray(8, 8 + n), 'x', files.weights.length - 8 - n);
  })();
  /** The exported tensors in `dtype`, with one value of one tensor replaced. */
  const poisoned = (dtype: SafetensorsDtype, tensor: string, index: number, value: number) => {
    const data = files.weights.subarray(h.dataOffset);
    return writeSafetensors(h.tensors.map((t) => {
      const f = new Float32Array(data.slice(t.begin, t.end).buffer);
      if (t.name === tensor) f[index] = value;
      const bytes = dtype === 'F32' ? new Uint8Array(f.buffer) : dtype === 'F16' ? new Uint8Array(Uint16Array.from(f, f32ToF16Bits).buffer) : new Uint8Array(Uint16Array.from(new Uint32Array(f.buffer), (u) => u >>> 16).buffer);
      return { name: t.name, dtype, shape: t.shape, data: bytes };
    }));
  };

  for (const dtype of ['F32', 'F16', 'BF16'] as const) {
    it(`${dtype}: refused naming the file, the key and the element`, async () => {
      const key = peftKey(3, 'down_proj', 'B'); // [64, 2]
      for (const [value, text] of [[NaN, 'NaN'], [Infinity, 'Infinity'], [-Infinity, '-Infinity']] as const) {
        const e = await rejection(PeftFormatError, importPeft(model, { weights: poisoned(dtype, key, 77, value), config: files.config }));
        expect(e.message).toBe(`adapter_model.safetensors: '${key}' holds ${text} at element 77 (row 38, column 1); adapter weights must be finite numbers`);
      }
    });
  }

  it('a host adapter with a NaN is refused by checkHostAdapter, naming the tensor', () => {
    const host = randomHost(model, cfg);
    host.tensors[4].A[5] = NaN;
    let e: unknown = null;
    try {
      checkHostAdapter(model, host);
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(NonFiniteAdapterError);
    expect(e).toMatchObject({ code: 'non-finite-adapter', tensor: `layers.${host.tensors[4].layer}.${host.tensors[4].module}.lora_A`, index: 5 });
    expect((e as Error).message).toBe(`adapter tensor layers.2.q_proj.lora_A holds NaN at element 5; adapter weights must be finite numbers`);
  });
});
