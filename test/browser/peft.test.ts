import { describe, expect, it } from 'vitest';
import { readF32 } from '../../src/gpu/buffers.ts';
import { LimitsTooSmallError } from '../../src/gpu/errors.ts';
import { fillRef } from '../../src/kernels/fill.ts';
import { createAdapter, readAdapter, writeAdapter, type AdapterConfig, type HostAdapter } from '../../src/learn/adapter.ts';
import { AdapterShapeError } from '../../src/learn/errors.ts';
import { exportPeft, importPeft } from '../../src/learn/peft.ts';
import { parseModelConfig } from '../../src/model/config.ts';
import { randomF32, testGpu } from './gpu.ts';

async function storiesConfig() {
  return parseModelConfig(await (await fetch('/models/stories260K/config.json')).text());
}

const cfg: AdapterConfig = { r: 4, loraAlpha: 16, useRslora: false, targetModules: ['q_proj', 'v_proj', 'o_proj', 'gate_proj', 'down_proj'], baseModelNameOrPath: 'stories260K' };

function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

describe('GPU adapter init (PEFT: A kaiming-uniform, B zero)', () => {
  it('A = U(±1/sqrt(in)) from the seeded GPU fill, bit-exact; B = 0; scale alpha/r', async () => {
    const ctx = await testGpu();
    const model = await storiesConfig();
    const a = await createAdapter(ctx, model, cfg, 1234);
    expect(a.scale).toBe(4);
    const host = await readAdapter(ctx, a);
    expect(host.tensors).toHaveLength(5 * 5);
    for (const t of host.tensors) {
      const s = a.slice(t.layer, t.module)!;
      const bound = 1 / Math.sqrt(s.inDim);
      expect(bits(t.A)).toEqual(bits(fillRef(cfg.r * s.inDim, 1234, { lo: -bound, hi: bound }, s.aOffset)));
      expect(t.B.every((v) => v === 0)).toBe(true);
    }
    // down_proj has in = 172: its bound differs from the others' 1/8.
    const down = host.tensors.find((t) => t.module === 'down_proj')!;
    expect(Math.max(...down.A.map(Math.abs))).toBeLessThanOrEqual(1 / Math.sqrt(172));
    expect(Math.max(...down.A.map(Math.abs))).toBeGreaterThan(0.9 / Math.sqrt(172));
    // Another seed, other values; the same seed, the same values.
    const b = await readAdapter(ctx, await createAdapter(ctx, model, cfg, 1235));
    const c = await readAdapter(ctx, await createAdapter(ctx, model, cfg, 1234));
    expect(bits(b.tensors[0].A)).not.toEqual(bits(host.tensors[0].A));
    expect(bits(c.tensors[7].A)).toEqual(bits(host.tensors[7].A));
  });

  it('refuses an adapter larger than one binding with a typed error', async () => {
    const ctx = await testGpu({ limitsCap: { maxStorageBufferBindingSize: 4096 } });
    await expect(createAdapter(ctx, await storiesConfig(), cfg, 1)).rejects.toThrow(LimitsTooSmallError);
  });
});

describe('PEFT export -> import on the GPU', () => {
  it('random adapter -> export -> import -> identical A/B bytes (and identical flat buffers)', async () => {
    const ctx = await testGpu();
    const model = await storiesConfig();
    const src = await createAdapter(ctx, model, cfg, 7);
    // Random B as well (a trained adapter), written through the host path.
    const host0 = await readAdapter(ctx, src);
    host0.tensors.forEach((t, i) => t.B.set(randomF32(t.B.length, 100 + i, 0.1)));
    writeAdapter(ctx, src, host0);
    const exported = exportPeft(model, await readAdapter(ctx, src));
    const imported = await importPeft(model, { weights: exported.weights, config: exported.config });
    const dst = await createAdapter(ctx, model, cfg, 99); // different init: everything must be overwritten
    writeAdapter(ctx, dst, imported);
    const [a, b] = [await readAdapter(ctx, src), await readAdapter(ctx, dst)];
    a.tensors.forEach((t, i) => {
      expect(bits(b.tensors[i].A)).toEqual(bits(t.A));
      expect(bits(b.tensors[i].B)).toEqual(bits(t.B));
    });
    expect(bits(await readF32(ctx, dst.params, dst.layout.n))).toEqual(bits(await readF32(ctx, src.params, src.layout.n)));
  });

  it('writeAdapter refuses a host adapter of another rank or alpha', async () => {
    const ctx = await testGpu();
    const model = await storiesConfig();
    const a = await createAdapter(ctx, model, cfg, 1);
    const host: HostAdapter = await readAdapter(ctx, a);
    expect(() => writeAdapter(ctx, a, { ...host, config: { ...host.config, r: 8 } })).toThrow(AdapterShapeError);
    expect(() => writeAdapter(ctx, a, { ...host, config: { ...host.config, loraAlpha: 8 } })).toThrow(/lora_alpha/);
    expect(() => writeAdapter(ctx, a, { ...host, config: { ...host.config, targetModules: ['q_proj'] } })).toThrow(/target_modules/);
  });
});
