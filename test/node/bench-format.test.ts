import { describe, expect, it } from 'vitest';
import { benchToMarkdown, gbPerSec, median, summarizeDecode, type BenchVariant, type KernelBenchResult } from '../../bench/report.ts';
import { BENCH_MODELS, decodeShapes } from '../../bench/shapes.ts';
import { weightBytes } from '../../src/kernels/weights.ts';
import { parseMarkdown } from '../../demo/markdown.ts';

const COPY_GBS = 100;

/** A gemv row of SmolLM2 with made-up time `ms`. */
function gemvRow(layer: string, format: 'f32' | 'q4', M: number, ms: number): BenchVariant {
  const s = decodeShapes(BENCH_MODELS['smollm2-135m']).find((x) => x.layer === layer)!;
  const weightGBs = gbPerSec(weightBytes(format, s.N, s.K), ms);
  return { name: `gemv_${format}_f32_wg64`, kind: 'gemv', model: 'smollm2-135m', layer, format, M, N: s.N, K: s.K, perStep: s.perStep, ms, weightGBs, roofline: weightGBs / COPY_GBS };
}

const LAYER_MS: Record<string, number> = { 'q/o': 0.01, 'k/v': 0.005, 'gate/up': 0.02, down: 0.03, lm_head: 0.5 };

function crafted(): KernelBenchResult {
  const variants: BenchVariant[] = [];
  for (const [layer, ms] of Object.entries(LAYER_MS)) {
    variants.push(gemvRow(layer, 'f32', 1, ms), gemvRow(layer, 'f32', 4, 2 * ms));
  }
  // q4 lacks lm_head: no summary row for it.
  variants.push(gemvRow('q/o', 'q4', 1, 0.004));
  variants.push({ name: 'gemm_f32_f32_t32x32_wg64', kind: 'gemm', model: 'smollm2-135m', layer: 'q/o', format: 'f32', M: 128, N: 576, K: 576, perStep: 60, ms: 0.5, weightGBs: 2.65, gflops: (2 * 128 * 576 * 576) / 0.5e6 });
  const result: KernelBenchResult = {
    device: { description: 'Test GPU | pipes', adapter: { vendor: 'test', architecture: '', device: '', description: 'Test GPU' }, features: { subgroups: true, shaderF16: false }, limits: { maxBufferSize: 2 ** 28 } },
    env: 'node',
    quick: true,
    iters: 3,
    gpuTiming: 'none',
    copyGBs: COPY_GBS,
    copy: { bytes: 2 * 64 * 2 ** 20, ms: 1.342, name: 'copy_f32x4_wg256' },
    variants,
    summary: [],
  };
  result.summary = summarizeDecode(variants, COPY_GBS);
  return result;
}

describe('decode summary', () => {
  it('weights every shape by its count per step: sum of bytes over sum of time', () => {
    const [s, ...rest] = crafted().summary;
    expect(rest).toEqual([]); // f32 only: q4 is incomplete, M = 4 and gemm rows are ignored
    // SmolLM2: 30 layers; q/o, k/v, gate/up twice per layer, down once, lm_head once.
    const ms = 60 * 0.01 + 60 * 0.005 + 60 * 0.02 + 30 * 0.03 + 0.5;
    const bytes = 4 * (60 * 576 * 576 + 60 * 192 * 576 + 60 * 1536 * 576 + 30 * 576 * 1536 + 49152 * 576);
    expect(s.model).toBe('smollm2-135m');
    expect(s.format).toBe('f32');
    expect(s.stepMs).toBeCloseTo(ms, 12);
    expect(s.stepBytes).toBe(bytes);
    expect(s.weightGBs).toBeCloseTo(bytes / (ms * 1e6), 9);
    expect(s.roofline).toBeCloseTo(bytes / (ms * 1e6) / COPY_GBS, 12);
    expect(s.tokensPerSec).toBeCloseTo(1000 / ms, 9);
  });

  it('is not the mean of the per-shape rooflines (big matrices dominate)', () => {
    const r = crafted();
    const f32 = r.variants.filter((v) => v.kind === 'gemv' && v.M === 1 && v.format === 'f32');
    const mean = f32.reduce((a, v) => a + v.roofline!, 0) / f32.length;
    expect(Math.abs(r.summary[0].roofline - mean)).toBeGreaterThan(1e-3);
  });

  it('median and GB/s helpers', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(() => median([])).toThrow();
    expect(gbPerSec(2e9, 1000)).toBe(2); // 2 GB in one second
  });
});

describe('benchToMarkdown', () => {
  const md = benchToMarkdown(crafted());
  const blocks = parseMarkdown(md);
  const tables = blocks.filter((b) => b.kind === 'table');

  it('has the copy bandwidth, a variant table and a summary table', () => {
    expect(md).toContain('Copy bandwidth: 100.00 GB/s (128 MiB read + written');
    expect(tables).toHaveLength(2);
    const [variants, summary] = tables as Extract<(typeof blocks)[number], { kind: 'table' }>[];
    expect(variants.rows).toHaveLength(crafted().variants.length);
    for (const row of variants.rows) expect(row.length).toBe(variants.header.length);
    for (const row of summary.rows) expect(row.length).toBe(summary.header.length);
    expect(summary.rows).toHaveLength(1);
  });

  it('formats roofline as a percentage and GFLOP/s for gemm rows', () => {
    const [variants, summary] = tables as Extract<(typeof blocks)[number], { kind: 'table' }>[];
    const col = (name: string) => variants.header.indexOf(name);
    const qo = variants.rows.find((r) => r[col('kind')] === 'gemv' && r[col('layer')] === 'q/o' && r[col('format')] === 'f32' && r[col('M')] === '1')!;
    const expected = (100 * gbPerSec(576 * 576 * 4, 0.01)) / COPY_GBS;
    expect(qo[col('roofline')]).toBe(`${expected.toFixed(1)}%`);
    expect(qo[col('N×K')]).toBe('576×576');
    const g = variants.rows.find((r) => r[col('kind')] === 'gemm')!;
    expect(g[col('GFLOP/s')]).toBe(((2 * 128 * 576 * 576) / 0.5e6).toFixed(2));
    expect(g[col('roofline')]).toBe('');
    expect(g[col('weight GB/s')]).toBe('');
    expect(qo[col('weight GB/s')]).toBe(gbPerSec(576 * 576 * 4, 0.01).toFixed(2));
    expect(summary.rows[0][summary.header.indexOf('roofline')]).toBe(`${(100 * crafted().summary[0].roofline).toFixed(1)}%`);
  });

  it('names the device and the environment in a line of its own', () => {
    const device = blocks.find((b) => b.kind === 'paragraph' && b.text.startsWith('Device:'));
    expect(device).toEqual({ kind: 'paragraph', text: 'Device: Test GPU | pipes, run in node' });
  });
});
