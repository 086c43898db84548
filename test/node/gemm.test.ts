import { describe, expect, it } from 'vitest';
import { chooseGemmTile, GEMM_MIN_WORKGROUPS, GEMM_TILES, gemmInvocations, gemmShader, gemmStorageBytes, gemmVariant } from '../../src/kernels/gemm.ts';
import { SPEC_DEFAULT_LIMITS } from '../../src/gpu/device.ts';
import { LimitsTooSmallError } from '../../src/gpu/errors.ts';
import { WEIGHT_FORMATS } from '../../src/kernels/weights.ts';

describe('gemm tiles (pure TS)', () => {
  it('every candidate tile fits the WebGPU spec minimum limits', () => {
    for (const t of GEMM_TILES) {
      expect(gemmInvocations(t)).toBeLessThanOrEqual(SPEC_DEFAULT_LIMITS.maxComputeInvocationsPerWorkgroup);
      expect(gemmStorageBytes(t)).toBeLessThanOrEqual(SPEC_DEFAULT_LIMITS.maxComputeWorkgroupStorageSize);
      expect(t.tk % 8).toBe(0); // one q4 word (8 k) never straddles two K-steps
    }
    expect(gemmStorageBytes(GEMM_TILES[0])).toBe(4 * 16 * (64 + 64));
  });

  it('takes the largest tile that still gives enough workgroups, else the smallest', () => {
    const L = SPEC_DEFAULT_LIMITS;
    // 2048 x 8192: 32 * 128 tiles of 64x64, plenty.
    expect(chooseGemmTile(L, 2048, 8192)).toEqual(GEMM_TILES[0]);
    // 128 x 8192: 2 * 128 = 256 tiles of 64x64 >= GEMM_MIN_WORKGROUPS.
    expect(Math.ceil(128 / 64) * Math.ceil(8192 / 64)).toBeGreaterThanOrEqual(GEMM_MIN_WORKGROUPS);
    expect(chooseGemmTile(L, 128, 8192)).toEqual(GEMM_TILES[0]);
    // 128 x 2048: 64 tiles of 64x64 is too few, 4 * 32 = 128 tiles of 32x64 is enough.
    expect(chooseGemmTile(L, 128, 2048)).toEqual(GEMM_TILES[1]);
    // 128 x 576: no tile reaches the target, so the smallest (most workgroups).
    expect(chooseGemmTile(L, 128, 576)).toEqual(GEMM_TILES[2]);
  });

  it('respects the limits and throws LimitsTooSmallError below the smallest tile', () => {
    const small = { ...SPEC_DEFAULT_LIMITS, maxComputeInvocationsPerWorkgroup: 128 };
    expect(chooseGemmTile(small, 4096, 8192)).toEqual(GEMM_TILES[1]);
    const tinyMem = { ...SPEC_DEFAULT_LIMITS, maxComputeWorkgroupStorageSize: 2048 };
    expect(() => chooseGemmTile(tinyMem, 64, 64)).toThrow(LimitsTooSmallError);
    expect(() => chooseGemmTile(tinyMem, 64, 64)).toThrow(/maxComputeWorkgroupStorageSize >= 4096/);
    const narrow = { ...SPEC_DEFAULT_LIMITS, maxComputeWorkgroupSizeX: 32 };
    expect(() => chooseGemmTile(narrow, 64, 64)).toThrow(/maxComputeWorkgroupSizeX >= 64/);
  });

  it('names variants readably and specialises every shader completely', () => {
    expect(gemmVariant('q4', GEMM_TILES[0])).toBe('gemm_q4_f32_t64x64_wg256');
    expect(gemmVariant('f16', { tm: 32, tn: 32, tk: 32 })).toBe('gemm_f16_f32_t32x32k32_wg64');
    for (const format of WEIGHT_FORMATS) {
      for (const t of GEMM_TILES) {
        const code = gemmShader(format, t); // specialize throws on a leftover or unused placeholder
        expect(code).not.toMatch(/\{\{/);
        expect(code).toContain(`@workgroup_size(${gemmInvocations(t)})`);
        expect(code.includes('@binding(4)')).toBe(format === 'q4'); // scales only for q4
      }
    }
  });
});
