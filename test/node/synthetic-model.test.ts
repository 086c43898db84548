import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decodeWeightBytes, parameterCount, syntheticConfig, syntheticPrompt, syntheticTokenizer } from '../../bench/synthetic-model.ts';
import { decodeRow, decodeToMarkdown, type DecodeBenchResult } from '../../bench/decode-report.ts';
import { parseModelConfig } from '../../src/model/config.ts';
import { expectedTensors } from '../../src/model/tensors.ts';

const shapes = (id: 'smollm2-135m' | 'stories260k') => new Map(expectedTensors(syntheticConfig(id)).map((t) => [t.name, t.shape]));

describe('synthetic model configs', () => {
  it('SmolLM2-135M has the real shapes', () => {
    const c = syntheticConfig('smollm2-135m');
    expect(c).toMatchObject({ architecture: 'LlamaForCausalLM', hiddenSize: 576, nLayers: 30, nHeads: 9, nKvHeads: 3, headDim: 64, intermediateSize: 1536, vocabSize: 49152, tieWordEmbeddings: true, ropeTheta: 100000, rmsNormEps: 1e-5, maxPositionEmbeddings: 8192, ropeScaling: null, qkvBias: false });
    const s = shapes('smollm2-135m');
    expect(s.get('model.embed_tokens.weight')).toEqual([49152, 576]);
    expect(s.get('model.layers.29.self_attn.q_proj.weight')).toEqual([576, 576]);
    expect(s.get('model.layers.0.self_attn.k_proj.weight')).toEqual([192, 576]);
    expect(s.get('model.layers.0.self_attn.v_proj.weight')).toEqual([192, 576]);
    expect(s.get('model.layers.0.self_attn.o_proj.weight')).toEqual([576, 576]);
    expect(s.get('model.layers.0.mlp.gate_proj.weight')).toEqual([1536, 576]);
    expect(s.get('model.layers.0.mlp.down_proj.weight')).toEqual([576, 1536]);
    expect(s.has('model.layers.30.self_attn.q_proj.weight')).toBe(false);
    expect(s.has('lm_head.weight')).toBe(false); // tied
    // Hugging Face reports 134,515,008 parameters for SmolLM2-135M.
    expect(parameterCount(c)).toBe(134_515_008);
  });

  it("stories260K's synthetic config equals the bundled config.json", () => {
    const bundled = parseModelConfig(readFileSync('public/models/stories260K/config.json', 'utf8'));
    expect(syntheticConfig('stories260k')).toEqual(bundled);
    const s = shapes('stories260k');
    expect(s.get('model.layers.4.self_attn.k_proj.weight')).toEqual([32, 64]);
    expect(s.get('model.layers.0.mlp.up_proj.weight')).toEqual([172, 64]);
  });

  it('decode weight bytes: every Linear plus the LM head, per format', () => {
    const c = syntheticConfig('smollm2-135m');
    const linear = 30 * (2 * 576 * 576 + 2 * 192 * 576 + 3 * 1536 * 576);
    const head = 49152 * 576;
    expect(decodeWeightBytes(c, 'f32')).toBe(4 * (linear + head));
    expect(decodeWeightBytes(c, 'f16')).toBe(2 * (linear + head));
    // q4: half a byte per weight plus one f16 scale per group of 32.
    expect(decodeWeightBytes(c, 'q4')).toBe((linear + head) / 2 + ((linear + head) / 32) * 2);
  });

  it('unknown model ids are refused', () => {
    expect(() => syntheticConfig('gpt-2' as never)).toThrow(/unknown synthetic model 'gpt-2'/);
  });
});

describe('synthetic prompts and tokenizer', () => {
  it('prompts are deterministic, in the vocabulary and free of BOS/EOS', () => {
    const c = syntheticConfig('stories260k');
    const a = syntheticPrompt(c, 500, 7);
    expect(a).toEqual(syntheticPrompt(c, 500, 7));
    expect(a).not.toEqual(syntheticPrompt(c, 500, 8));
    expect(a.every((id) => Number.isInteger(id) && id >= 0 && id < 512 && id !== 1 && id !== 2)).toBe(true);
    expect(new Set(a).size).toBeGreaterThan(200); // spread over the vocabulary
    expect(() => syntheticPrompt(c, 0, 1)).toThrow(RangeError);
  });

  it('the tokenizer decodes every id to <id> and knows the EOS id', () => {
    const c = syntheticConfig('smollm2-135m');
    const tok = syntheticTokenizer(c);
    expect(tok.decode([0, 5, 49151], false)).toMatch(/^<0>\s?<5>\s?<49151>$/);
    expect(tok.eosIds).toContain(0);
    expect(tok.hasChatTemplate).toBe(false);
    const d = tok.streamDecoder();
    const text = [17, 4242].map((id) => d.push(id)).join('') + d.flush();
    expect(text.replace(/\s/g, '')).toBe('<17><4242>');
  });
});

describe('decode benchmark report', () => {
  const t = (ttft: number, prefill: number, decode: number) => ({ ttft_ms: ttft, prefill_tokens_per_s: prefill, decode_tokens_per_s: decode });

  it('medians per request, sums over the batch, roofline against the copy bound', () => {
    const row = decodeRow('f32', [t(100, 10, 4), t(300, 30, 2), t(200, 20, 5)], 2e9, 4);
    expect(row).toMatchObject({ format: 'f32', batch: 3, ttftMs: 200, prefillTokensPerSec: 20, prefillTokensPerSecAgg: 60, decodeTokensPerSec: 4, decodeTokensPerSecAgg: 11 });
    expect(row.decodeMsPerToken).toBe(250);
    // 2 GB at 4 GB/s = 500 ms; measured 250 ms per step -> twice as fast as copying the weights.
    expect(row.boundMsPerToken).toBe(500);
    expect(row.roofline).toBe(2);
    expect(decodeRow('q4', [t(1, 1, 0)], 1e6, 1).roofline).toBe(0); // no decode rate: infinitely slow, not NaN
    expect(() => decodeRow('f16', [], 1, 1)).toThrow(/no requests/);
  });

  it('renders one table row per format and batch', () => {
    const r: DecodeBenchResult = {
      device: { description: 'Test GPU', adapter: {} },
      env: 'node',
      model: { id: 'stories260k', name: 'stories260K', synthetic: true, parameters: 260_000, layers: 5, hidden: 64, vocab: 512 },
      promptTokens: 16,
      tokens: 32,
      copyGBs: 10,
      loadMs: { f32: 5 },
      rows: [decodeRow('f32', [t(10, 100, 50)], 1e6, 10), decodeRow('f32', [t(12, 90, 40), t(14, 80, 30)], 1e6, 10)],
    };
    const md = decodeToMarkdown(r);
    expect(md).toContain('### stories260K (real shapes, random weights made on the GPU; 0.260 M parameters)');
    expect(md).toContain('Prompt 16 tokens, 32 generated per request');
    expect(md).toContain('| f32 | 1 | 10.0 | 100 / 100 | 50.0 / 50.0 | 20.0 | 1.00 | 0.100 | 0.005 |');
    expect(md).toContain('| f32 | 2 | 13.0 | 85.0 / 170 | 35.0 / 70.0 |');
  });
});
