import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { adapterLayout, checkHostAdapter, SLICE_ALIGN, validateAdapterConfig, type AdapterConfig, type HostAdapter } from '../../src/learn/adapter.ts';
import { AdapterConfigError, AdapterShapeError } from '../../src/learn/errors.ts';
import { parseModelConfig } from '../../src/model/config.ts';

const model = parseModelConfig(readFileSync(new URL('../../public/models/stories260K/config.json', import.meta.url), 'utf8'));
// stories260K: hidden 64, intermediate 172, 5 layers, 8 heads x 8, 4 kv heads -> q [64, 64], k/v [32, 64], down [64, 172]
const cfg: AdapterConfig = { r: 4, loraAlpha: 8, useRslora: false, targetModules: ['v_proj', 'q_proj', 'down_proj'], baseModelNameOrPath: 'stories260K' };

describe('AdapterConfig validation', () => {
  it('accepts a valid config', () => expect(() => validateAdapterConfig(model, cfg)).not.toThrow());
  const bad: [string, Partial<AdapterConfig>, RegExp][] = [
    ['rank 0', { r: 0 }, /^adapter config: r = 0/],
    ['fractional rank', { r: 2.5 }, /r = 2.5/],
    ['alpha NaN', { loraAlpha: NaN }, /lora_alpha/],
    ['unknown module', { targetModules: ['q_proj', 'lm_head' as never] }, /target_modules names 'lm_head'/],
    ['duplicate module', { targetModules: ['q_proj', 'q_proj'] }, /twice/],
    ['no module', { targetModules: [] }, /non-empty/],
    ['rslora not boolean', { useRslora: 1 as never }, /use_rslora/],
  ];
  for (const [what, patch, msg] of bad) {
    it(`refuses ${what}`, () => {
      expect(() => validateAdapterConfig(model, { ...cfg, ...patch })).toThrow(AdapterConfigError);
      expect(() => validateAdapterConfig(model, { ...cfg, ...patch })).toThrow(msg);
    });
  }
});

describe('flat adapter layout', () => {
  it('per layer, modules in LINEAR_MODULES order, A then B, aligned, disjoint', () => {
    const l = adapterLayout(model, cfg);
    expect(l.slices.slice(0, 3).map((s) => s.module)).toEqual(['q_proj', 'v_proj', 'down_proj']);
    expect(l.slices).toHaveLength(5 * 3);
    expect(l.slices[0]).toEqual({ layer: 0, module: 'q_proj', inDim: 64, outDim: 64, aOffset: 0, bOffset: 256 });
    expect(l.slices[1]).toMatchObject({ module: 'v_proj', inDim: 64, outDim: 32, aOffset: 512, bOffset: 768 });
    expect(l.slices[2]).toMatchObject({ module: 'down_proj', inDim: 172, outDim: 64, aOffset: 896, bOffset: 896 + 704 });
    let end = 0;
    for (const s of l.slices) {
      expect(s.aOffset % SLICE_ALIGN).toBe(0);
      expect(s.bOffset % SLICE_ALIGN).toBe(0);
      expect(s.aOffset).toBeGreaterThanOrEqual(end);
      expect(s.bOffset).toBeGreaterThanOrEqual(s.aOffset + cfg.r * s.inDim);
      end = s.bOffset + s.outDim * cfg.r;
    }
    expect(l.n).toBeGreaterThanOrEqual(end);
    expect(l.n % SLICE_ALIGN).toBe(0);
  });
});

describe('host adapter check', () => {
  const host = (): HostAdapter => ({
    config: { ...cfg, targetModules: ['q_proj'] },
    tensors: Array.from({ length: 5 }, (_, layer) => ({ layer, module: 'q_proj' as const, A: new Float32Array(4 * 64), B: new Float32Array(64 * 4) })),
  });
  it('accepts a complete adapter', () => expect(checkHostAdapter(model, host()).size).toBe(5));
  it('names a missing module', () => {
    const h = host();
    h.tensors.pop();
    expect(() => checkHostAdapter(model, h)).toThrow(/layers\.4\.q_proj is missing/);
  });
  it('names a misshaped B', () => {
    const h = host();
    h.tensors[2].B = new Float32Array(64 * 3);
    expect(() => checkHostAdapter(model, h)).toThrow(AdapterShapeError);
    expect(() => checkHostAdapter(model, h)).toThrow(/layers\.2\.q_proj\.lora_B has 192 elements, \[out=64, r=4\] needs 256/);
  });
  it('refuses a layer past the model and an untargeted module', () => {
    const h = host();
    h.tensors[0] = { ...h.tensors[0], layer: 5 };
    expect(() => checkHostAdapter(model, h)).toThrow(/layers\.5\.q_proj/);
    const h2 = host();
    h2.tensors[0] = { ...h2.tensors[0], module: 'k_proj' };
    expect(() => checkHostAdapter(model, h2)).toThrow(/layers\.0\.k_proj is not/);
  });
});
