/**
 * The kernel plan switch and device class (src/kernels/plan.ts) and the fused linear's reference
 * (src/kernels/linear.ts linearRef): pure TypeScript.
 */
import { describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/device.ts';
import { linearRef, linearRowBlock, splitColumnsRef } from '../../src/kernels/linear.ts';
import { chooseMatmul, SMALL_GEMM_MAX_M } from '../../src/kernels/matmul.ts';
import { isCpuClassDevice, kernelPlan, reductionStyle, setKernelPlan, setReductionStyle, spreadWorkgroupSize } from '../../src/kernels/plan.ts';
import { rmsNormRef } from '../../src/kernels/rmsnorm.ts';
import { siluGateRef } from '../../src/kernels/silu.ts';
import { matmulRef } from '../../src/kernels/weights.ts';
import { randomF32 } from '../util/random.ts';

/** A context with only what the plan functions read (they never touch the device). */
function fakeCtx(description: string, architecture = ''): GpuContext {
  return { adapterInfo: { vendor: 'v', architecture, device: 'd', description }, kernels: { plan: 'fused', forcedStyle: null } } as unknown as GpuContext;
}

describe('kernel plan', () => {
  it('recognises CPU-class adapters by name only', () => {
    expect(isCpuClassDevice(fakeCtx('SwiftShader Device (Subzero)', 'swiftshader'))).toBe(true);
    expect(isCpuClassDevice(fakeCtx('llvmpipe (LLVM 15.0.7, 256 bits)'))).toBe(true);
    expect(isCpuClassDevice(fakeCtx('NVIDIA H100 80GB HBM3', 'hopper'))).toBe(false);
    expect(isCpuClassDevice(fakeCtx('Apple M2', 'metal-3'))).toBe(false);
  });

  it('defaults to fused; serial reductions only on a CPU-class device under the fused plan; forced styles win', () => {
    const cpu = fakeCtx('SwiftShader Device (Subzero)', 'swiftshader');
    const gpu = fakeCtx('NVIDIA H100', 'hopper');
    expect(kernelPlan(cpu)).toBe('fused');
    expect(reductionStyle(cpu)).toBe('serial');
    expect(reductionStyle(gpu)).toBe('workgroup');
    setKernelPlan(cpu, 'unfused');
    expect(reductionStyle(cpu)).toBe('workgroup');
    expect(chooseMatmul(64, cpu, 64)).toBe('gemm');
    setKernelPlan(cpu, 'fused');
    expect(chooseMatmul(64, cpu, 64)).toBe('gemm-small');
    expect(chooseMatmul(SMALL_GEMM_MAX_M + 1, cpu, 64)).toBe('gemm');
    expect(chooseMatmul(64, gpu, 64)).toBe('gemm');
    setReductionStyle(gpu, 'serial');
    expect(reductionStyle(gpu)).toBe('serial');
    setReductionStyle(gpu, undefined);
    expect(reductionStyle(gpu)).toBe('workgroup');
    expect(() => setKernelPlan(cpu, 'fast' as never)).toThrow(RangeError);
  });

  it('spreads small dispatches over at least 4 workgroups', () => {
    expect([1, 8, 16, 43, 128, 255, 256, 10_000].map((n) => spreadWorkgroupSize(n))).toEqual([4, 4, 4, 8, 32, 32, 64, 64]);
    expect(spreadWorkgroupSize(10_000, 32)).toBe(32);
  });
});

describe('linearRef (the unfused composition)', () => {
  const [M, N, K] = [3, 5, 8];
  const x = randomF32(M * K, 1), w = randomF32(N * K, 2), u = randomF32(N * K, 3), g = randomF32(K, 4), bias = randomF32(N, 5), y0 = randomF32(M * N, 6);

  it('is matmulRef with nothing fused', () => {
    expect(linearRef({ x, w, N, K, M })).toEqual(matmulRef(x, w, M, N, K));
  });

  it('composes gather -> RMSNorm -> matmul -> bias -> SiLU-gate, and the residual add', () => {
    const rows = [2, 0, 2];
    const gathered = new Float32Array(M * K);
    rows.forEach((r, m) => gathered.set(x.subarray(r * K, (r + 1) * K), m * K));
    const normed = rmsNormRef(gathered, g, M, K, 1e-5);
    const gate = matmulRef(normed, w, M, N, K);
    for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) gate[m * N + n] += bias[n];
    const want = siluGateRef(gate, matmulRef(normed, u, M, N, K));
    expect(linearRef({ x, w, N, K, M, rows, norm: { weight: g, eps: 1e-5 }, bias, up: u })).toEqual(want);
    const plain = matmulRef(x, w, M, N, K);
    expect(linearRef({ x, w, N, K, M, residual: y0 })).toEqual(plain.map((v, i) => v + y0[i]));
  });

  it('splits columns into three outputs', () => {
    const y = Float32Array.from({ length: 2 * 6 }, (_, i) => i);
    const [a, b, c] = splitColumnsRef(y, 2, 6, 3, 2);
    expect(Array.from(a)).toEqual([0, 1, 2, 6, 7, 8]);
    expect(Array.from(b)).toEqual([3, 4, 9, 10]);
    expect(Array.from(c)).toEqual([5, 11]);
  });

  it('checks its shapes and picks 1, 2 or 4 rows per invocation', () => {
    expect(() => linearRef({ x: x.subarray(1), w, N, K, M })).toThrow();
    expect([1, 2, 3, 4, 9].map(linearRowBlock)).toEqual([1, 2, 4, 4, 4]);
  });
});
