import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseModelConfig, UnsupportedArchitectureError } from '../../src/model/config.ts';

const stories = readFileSync(new URL('../../public/models/stories260K/config.json', import.meta.url), 'utf8');

describe('parseModelConfig', () => {
  it('reads the real stories260K config', () => {
    expect(parseModelConfig(stories)).toEqual({
      architecture: 'LlamaForCausalLM', hiddenSize: 64, intermediateSize: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, headDim: 8,
      vocabSize: 512, maxPositionEmbeddings: 512, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: null, tieWordEmbeddings: true,
      qkvBias: false, slidingWindow: null, bosTokenId: 1, eosTokenIds: [2],
    });
  });

  it('reads Llama-3.2-1B style rope scaling and a list of EOS ids', () => {
    const c = parseModelConfig({
      architectures: ['LlamaForCausalLM'], hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 16, num_attention_heads: 32,
      num_key_value_heads: 8, vocab_size: 128256, rope_theta: 500000, tie_word_embeddings: true, eos_token_id: [128001, 128008, 128009],
      rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
    });
    expect(c.headDim).toBe(64);
    expect(c.ropeScaling).toEqual({ rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 });
    expect(c.eosTokenIds).toEqual([128001, 128008, 128009]);
  });

  it('gives Qwen2 its q/k/v bias and Mistral its sliding window', () => {
    const base = { hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 100 };
    expect(parseModelConfig({ ...base, architectures: ['Qwen2ForCausalLM'] }).qkvBias).toBe(true);
    expect(parseModelConfig({ ...base, architectures: ['MistralForCausalLM'], sliding_window: 4096 }).slidingWindow).toBe(4096);
    expect(parseModelConfig({ ...base, architectures: ['Qwen2ForCausalLM'], sliding_window: 4096, use_sliding_window: false }).slidingWindow).toBeNull();
  });

  it('refuses other architectures by name', () => {
    const cfg = JSON.parse(stories);
    cfg.architectures = ['GPT2LMHeadModel'];
    expect(() => parseModelConfig(cfg)).toThrow(UnsupportedArchitectureError);
    expect(() => parseModelConfig(cfg)).toThrow("config.json: architecture 'GPT2LMHeadModel' is not supported");
  });

  it('names the file and field of a bad value', () => {
    const cfg = JSON.parse(stories);
    expect(() => parseModelConfig({ ...cfg, hidden_size: '64' })).toThrow('config.json: hidden_size must be a positive integer, got "64"');
    expect(() => parseModelConfig({ ...cfg, num_key_value_heads: 3 })).toThrow('num_key_value_heads (3) must divide num_attention_heads (8)');
    expect(() => parseModelConfig({ ...cfg, rope_scaling: { rope_type: 'yarn', factor: 4 } })).toThrow('config.json: rope_scaling.rope_type = "yarn"');
    expect(() => parseModelConfig({ ...cfg, rope_scaling: { rope_type: 'linear' } })).toThrow(ConfigError);
    expect(() => parseModelConfig({ ...cfg, rope_scaling: { rope_type: 'linear' } })).toThrow('config.json: rope_scaling.factor = undefined: must be a positive number');
    expect(parseModelConfig({ ...cfg, rope_scaling: { type: 'default' } }).ropeScaling).toBeNull();
    expect(() => parseModelConfig({ ...cfg, hidden_act: 'gelu' })).toThrow("hidden_act 'gelu' is not supported");
    expect(() => parseModelConfig('{not json', 'models/x/config.json')).toThrow(/models\/x\/config.json: \(file\) is not valid JSON/);
    expect(() => parseModelConfig({ ...cfg, architectures: [] })).toThrow('config.json: architectures must be a non-empty list');
  });
});
