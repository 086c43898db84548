import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { adapterLayout, type AdapterConfig, type HostAdapter } from '../../src/learn/adapter.ts';
import { AdapterConfigError, PeftFormatError } from '../../src/learn/errors.ts';
import { exportPeft, importPeft, parsePeftConfig, peftKey } from '../../src/learn/peft.ts';
import { parseModelConfig } from '../../src/model/config.ts';
import { parseHeader, headerLength, writeSafetensors, type SafetensorsDtype } from '../../src/model/safetensors.ts';
import { f32ToF16Bits } from '../../src/gpu/f16.ts';
import { randomF32 } from '../util/random.ts';

const model = parseModelConfig(readFileSync(new URL('../../public/models/stories260K/config.json', import.meta.url), 'utf8'));
const cfg: AdapterConfig = { r: 3, loraAlpha: 6, useRslora: true, targetModules: ['up_proj', 'k_proj'], baseModelNameOrPath: 'org/stories260K' };

/** A random host adapter with the layout's shapes. */
function randomHost(c: AdapterConfig, seed = 1): HostAdapter {
  const l = adapterLayout(model, c);
  return { config: c, tensors: l.slices.map((s, i) => ({ layer: s.layer, module: s.module, A: randomF32(c.r * s.inDim, seed + 2 * i), B: randomF32(s.outDim * c.r, seed + 2 * i + 1) })) };
}

function header(bytes: Uint8Array) {
  const n = headerLength(bytes.subarray(0, 8), 'x');
  return { ...parseHeader(bytes.subarray(8, 8 + n), 'x', bytes.length - 8 - n), json: JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) };
}

describe('PEFT export', () => {
  it("writes PEFT's key names, shapes, F32 dtype and format metadata", () => {
    const files = exportPeft(model, randomHost(cfg));
    const h = header(files.weights);
    const names = h.tensors.map((t) => t.name).sort();
    const want: string[] = [];
    for (let i = 0; i < 5; i++) {
      want.push(`base_model.model.model.layers.${i}.self_attn.k_proj.lora_A.weight`, `base_model.model.model.layers.${i}.self_attn.k_proj.lora_B.weight`);
      want.push(`base_model.model.model.layers.${i}.mlp.up_proj.lora_A.weight`, `base_model.model.model.layers.${i}.mlp.up_proj.lora_B.weight`);
    }
    expect(names).toEqual(want.sort());
    const byName = new Map(h.tensors.map((t) => [t.name, t]));
    expect(byName.get(peftKey(0, 'k_proj', 'A'))).toMatchObject({ dtype: 'F32', shape: [3, 64] });
    expect(byName.get(peftKey(0, 'k_proj', 'B'))).toMatchObject({ dtype: 'F32', shape: [32, 3] });
    expect(byName.get(peftKey(4, 'up_proj', 'A'))).toMatchObject({ dtype: 'F32', shape: [3, 64] });
    expect(byName.get(peftKey(4, 'up_proj', 'B'))).toMatchObject({ dtype: 'F32', shape: [172, 3] });
    expect(h.metadata).toEqual({ format: 'pt' });
  });

  it("writes adapter_config.json with LoraConfig's keys", () => {
    const c = JSON.parse(exportPeft(model, randomHost(cfg)).config);
    expect(c).toMatchObject({
      peft_type: 'LORA', r: 3, lora_alpha: 6, use_rslora: true, target_modules: ['k_proj', 'up_proj'], base_model_name_or_path: 'org/stories260K',
      lora_dropout: 0, bias: 'none', task_type: 'CAUSAL_LM', fan_in_fan_out: false, use_dora: false, inference_mode: true,
      modules_to_save: null, layers_to_transform: null, rank_pattern: {}, alpha_pattern: {}, init_lora_weights: true,
    });
  });

  it('round-trips bit-exactly through import (host side)', async () => {
    const host = randomHost(cfg, 7);
    host.tensors[0].A[0] = -0; // sign of zero and a subnormal survive
    host.tensors[0].A[1] = 1e-40;
    const files = exportPeft(model, host);
    const back = await importPeft(model, { weights: files.weights, config: files.config });
    expect(back.config).toEqual({ ...cfg, targetModules: ['k_proj', 'up_proj'] });
    expect(back.tensors.map((t) => `${t.layer}.${t.module}`)).toEqual(host.tensors.map((t) => `${t.layer}.${t.module}`));
    back.tensors.forEach((t, i) => {
      expect(new Uint32Array(t.A.buffer)).toEqual(new Uint32Array(host.tensors[i].A.buffer));
      expect(new Uint32Array(t.B.buffer)).toEqual(new Uint32Array(host.tensors[i].B.buffer));
    });
  });
});

/** Re-encode the exported tensors with other names/dtypes. */
function rewrite(files: { weights: Uint8Array }, rename: (n: string) => string, dtype: SafetensorsDtype = 'F32') {
  const h = header(files.weights);
  const data = files.weights.subarray(h.dataOffset);
  return writeSafetensors(h.tensors.map((t) => {
    const f = new Float32Array(data.slice(t.begin, t.end).buffer);
    let bytes: Uint8Array;
    if (dtype === 'F32') bytes = new Uint8Array(f.buffer);
    else if (dtype === 'F16') bytes = new Uint8Array(Uint16Array.from(f, f32ToF16Bits).buffer);
    else bytes = new Uint8Array(Uint16Array.from(new Uint32Array(f.buffer), (u) => u >>> 16).buffer); // BF16 by truncation
    return { name: rename(t.name), dtype, shape: t.shape, data: bytes };
  }));
}

describe('PEFT import variants and errors', () => {
  const host = randomHost(cfg, 3);
  const files = exportPeft(model, host);

  it('accepts keys without base_model.model. and with .default', async () => {
    for (const rename of [(n: string) => n.replace('base_model.model.', ''), (n: string) => n.replace('.weight', '.default.weight')]) {
      const back = await importPeft(model, { weights: rewrite(files, rename), config: files.config });
      expect(Array.from(back.tensors[3].B)).toEqual(Array.from(host.tensors[3].B));
    }
  });

  it('widens F16 and BF16 tensors', async () => {
    const f16 = await importPeft(model, { weights: rewrite(files, (n) => n, 'F16'), config: files.config });
    const bf16 = await importPeft(model, { weights: rewrite(files, (n) => n, 'BF16'), config: JSON.parse(files.config) });
    const a = host.tensors[1].A;
    for (let i = 0; i < a.length; i++) {
      expect(Math.abs(f16.tensors[1].A[i] - a[i])).toBeLessThanOrEqual(Math.abs(a[i]) * 2 ** -11 + 2 ** -25);
      expect(Math.abs(bf16.tensors[1].A[i] - a[i])).toBeLessThanOrEqual(Math.abs(a[i]) * 2 ** -7);
    }
  });

  it('names the file and key of a misshaped tensor (rank mismatch)', async () => {
    const other = exportPeft(model, randomHost({ ...cfg, r: 2 }));
    const p = importPeft(model, { weights: other.weights, config: files.config });
    await expect(p).rejects.toThrow(PeftFormatError);
    await expect(importPeft(model, { weights: other.weights, config: files.config })).rejects.toThrow(/adapter_model\.safetensors: 'base_model\.model\.model\.layers\.0\.self_attn\.k_proj\.lora_A\.weight' has shape \[2, 64\], expected \[3, 64\]/);
  });

  it('names a missing tensor and an unknown one', async () => {
    const only = { ...cfg, targetModules: ['k_proj' as const] };
    const k = exportPeft(model, randomHost(only));
    await expect(importPeft(model, { weights: k.weights, config: files.config })).rejects.toThrow(/layers\.0\.mlp\.up_proj\.lora_A\.weight' is missing/);
    const renamed = rewrite(files, (n) => n.replace('layers.1.mlp.up_proj', 'layers.1.mlp.fc1'));
    await expect(importPeft(model, { weights: renamed, config: files.config })).rejects.toThrow(/layers\.1\.mlp\.fc1\.lora_A\.weight' names module/);
    const lmHead = rewrite(files, (n) => (n.includes('layers.2.mlp.up_proj.lora_B') ? 'base_model.model.lm_head.lora_B.weight' : n));
    await expect(importPeft(model, { weights: lmHead, config: files.config })).rejects.toThrow(/lm_head\.lora_B\.weight' is not a LoRA A\/B weight/);
    const deep = rewrite(files, (n) => n.replace('layers.4.', 'layers.9.'));
    await expect(importPeft(model, { weights: deep, config: files.config })).rejects.toThrow(/layer 9; the model has 5 layers/);
  });

  it('refuses configs it cannot run, naming the field', () => {
    const base = JSON.parse(files.config);
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ peft_type: 'IA3' }, /peft_type/],
      [{ use_dora: true }, /use_dora .*DoRA/],
      [{ r: 0 }, /r = 0/],
      [{ target_modules: '.*proj' }, /target_modules is the pattern/],
      [{ target_modules: ['q_proj', 'c_attn'] }, /'c_attn'/],
      [{ rank_pattern: { q_proj: 4 } }, /rank_pattern/],
      [{ bias: 'all' }, /bias/],
      [{ layers_to_transform: [0, 1] }, /layers_to_transform/],
      [{ fan_in_fan_out: true }, /fan_in_fan_out/],
    ];
    for (const [patch, msg] of cases) {
      expect(() => parsePeftConfig(model, { ...base, ...patch })).toThrow(AdapterConfigError);
      expect(() => parsePeftConfig(model, { ...base, ...patch })).toThrow(msg);
    }
    expect(() => parsePeftConfig(model, '{nope')).toThrow(/adapter_config\.json: \(file\) is not valid JSON/);
    expect(parsePeftConfig(model, { ...base, target_modules: 'all-linear' }).targetModules).toHaveLength(7);
  });
});
