import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseModelConfig } from '../../src/model/config.ts';
import { headerLength, parseHeader, type TensorInfo } from '../../src/model/safetensors.ts';
import { CheckpointError, checkCheckpoint, expectedTensors, linearTensorName } from '../../src/model/tensors.ts';

const dir = new URL('../../public/models/stories260K/', import.meta.url);
const config = parseModelConfig(readFileSync(new URL('config.json', dir), 'utf8'));
const bytes = new Uint8Array(readFileSync(new URL('model.safetensors', dir)));
const header = parseHeader(bytes.subarray(8, 8 + headerLength(bytes, 'm')), 'model.safetensors');
const found = () => new Map<string, TensorInfo>(header.tensors.map((t) => [t.name, { ...t, shape: [...t.shape] }]));

describe('checkpoint tensors', () => {
  it('stories260K holds exactly the 47 tensors its config asks for', () => {
    const want = expectedTensors(config);
    expect(want).toHaveLength(47); // embed + 5 x (2 norms + 7 linears) + final norm, tied head
    expect(new Set(want.map((t) => t.name))).toEqual(new Set(header.tensors.map((t) => t.name)));
    checkCheckpoint(config, found());
  });

  it('names MLP and attention modules like Hugging Face', () => {
    expect(linearTensorName(3, 'gate_proj')).toBe('model.layers.3.mlp.gate_proj.weight');
    expect(linearTensorName(0, 'k_proj')).toBe('model.layers.0.self_attn.k_proj.weight');
  });

  it('adds q/k/v biases for Qwen2 and lm_head when untied', () => {
    const qwen = { ...config, architecture: 'Qwen2ForCausalLM' as const, qkvBias: true, tieWordEmbeddings: false };
    const names = expectedTensors(qwen).map((t) => t.name);
    expect(names).toContain('model.layers.0.self_attn.v_proj.bias');
    expect(names).toContain('lm_head.weight');
  });

  it('refuses a missing tensor, a wrong shape or an unloadable dtype, by name', () => {
    const m = found();
    m.delete('model.layers.4.mlp.down_proj.weight');
    expect(() => checkCheckpoint(config, m)).toThrow(CheckpointError);
    expect(() => checkCheckpoint(config, m)).toThrow("model.safetensors: tensor 'model.layers.4.mlp.down_proj.weight' is missing");
    const s = found();
    s.get('model.norm.weight')!.shape = [65];
    expect(() => checkCheckpoint(config, s)).toThrow("tensor 'model.norm.weight' has shape [65], config.json implies [64]");
    const d = found();
    d.get('model.embed_tokens.weight')!.dtype = 'I8';
    expect(() => checkCheckpoint(config, d)).toThrow("has dtype I8; only F32, F16 and BF16 are loaded");
  });
});
