import { describe, expect, it } from 'vitest';
import { defineUniforms } from '../../src/gpu/uniforms.ts';
import { specialize } from '../../src/gpu/shader.ts';
import { planRowShards } from '../../src/gpu/buffers.ts';
import { grid1d } from '../../src/gpu/dispatch.ts';
import { LimitsTooSmallError, ShapeError } from '../../src/gpu/errors.ts';
import { requireBufferFits, requireDims } from '../../src/gpu/shape.ts';

describe('uniform layouts', () => {
  const L = defineUniforms('Params', { M: 'u32', off: 'i32', eps: 'f32' });
  it('emits the WGSL struct from the same field list', () => {
    expect(L.wgsl).toBe('struct Params {\n  M: u32,\n  off: i32,\n  eps: f32,\n}');
    expect(L.size).toBe(16);
  });
  it('packs little-endian scalars at 4-byte offsets', () => {
    const dv = new DataView(L.pack({ M: 7, off: -3, eps: 1e-5 }));
    expect(dv.getUint32(0, true)).toBe(7);
    expect(dv.getInt32(4, true)).toBe(-3);
    expect(dv.getFloat32(8, true)).toBeCloseTo(1e-5, 10);
  });
  it('rounds the size up to 16 bytes', () => {
    expect(defineUniforms('P', { a: 'u32', b: 'u32', c: 'u32', d: 'u32', e: 'u32' }).size).toBe(32);
  });
  it('refuses values the WGSL type cannot hold', () => {
    expect(() => L.pack({ M: -1, off: 0, eps: 0 })).toThrow(/Params.M = -1/);
    expect(() => L.pack({ M: 1.5, off: 0, eps: 0 })).toThrow(/not a u32/);
    expect(() => L.pack({ M: 1, off: 0, eps: NaN })).toThrow(/eps = NaN/);
    expect(() => L.pack({ M: 1, off: 0 } as never)).toThrow(/eps = undefined/);
  });
});

describe('placeholder pass', () => {
  it('replaces every marker', () => {
    expect(specialize('@workgroup_size({{WG}}) {{T}} {{WG}}', { WG: 64, T: 'f32' })).toBe('@workgroup_size(64) f32 64');
  });
  it('writes non-integer numbers as WGSL float literals', () => {
    expect(specialize('{{X}}', { X: 0.5 })).toBe('5e-1');
  });
  it('fails on a missing value and on an unused value', () => {
    expect(() => specialize('{{A}} {{B}}', { A: 1 }, 'k')).toThrow('k: placeholder {{B}} has no value');
    expect(() => specialize('{{A}}', { A: 1, C: 2 }, 'k')).toThrow('k: values given for absent placeholders: C');
  });
});

describe('row shards', () => {
  it('keeps a tensor that fits in one shard', () => {
    expect(planRowShards(10, 100, 1000)).toEqual([{ rowStart: 0, rows: 10 }]);
  });
  it('splits along rows in multiples of the tile', () => {
    // 1000 bytes per binding, 4 rows x 64 bytes per tile = 256 bytes -> 3 tiles = 12 rows per shard
    expect(planRowShards(30, 64, 1000, 4)).toEqual([
      { rowStart: 0, rows: 12 },
      { rowStart: 12, rows: 12 },
      { rowStart: 24, rows: 6 },
    ]);
  });
  it('splits a Llama-3.2-1B f32 lm_head over the spec-default 128 MiB binding', () => {
    const shards = planRowShards(128256, 2048 * 4, 128 * 2 ** 20, 64);
    expect(shards.length).toBe(8);
    expect(shards.reduce((a, s) => a + s.rows, 0)).toBe(128256);
    for (const s of shards) expect(s.rows * 2048 * 4).toBeLessThanOrEqual(128 * 2 ** 20);
  });
  it('refuses when one tile does not fit a binding', () => {
    expect(() => planRowShards(8, 1024, 2048, 4, 'lm_head')).toThrow(LimitsTooSmallError);
    expect(() => planRowShards(8, 1024, 2048, 4, 'lm_head')).toThrow(/lm_head .* needs maxStorageBufferBindingSize >= 4096, the adapter offers 2048/);
  });
});

describe('grid1d', () => {
  it('stays 1-D under the per-dimension limit', () => {
    expect(grid1d(100)).toEqual([100, 1, 1]);
    expect(grid1d(0)).toEqual([1, 1, 1]);
  });
  it('folds large counts into x*y >= count', () => {
    const [x, y] = grid1d(200000, 65535);
    expect(x).toBeLessThanOrEqual(65535);
    expect(x * y).toBeGreaterThanOrEqual(200000);
  });
});

describe('shape guards', () => {
  it('name the kernel, argument and offending value', () => {
    expect(() => requireDims('gemv', 'shape', { M: 0 })).toThrow(new ShapeError('gemv', 'shape', 'has M = 0; it must be a positive integer'));
    const fake = { size: 64 } as GPUBuffer;
    expect(() => requireBufferFits('rmsnorm', 'x', fake, [3, 7])).toThrow('rmsnorm: x buffer of 64 bytes is too small for shape [3, 7] at offset 0 (84 bytes)');
  });
});
