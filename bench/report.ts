/**
 * The kernel benchmark's result: its JSON shape, the decode-step summary maths and the markdown
 * rendering. Pure TypeScript (no WebGPU), so Node tests check the maths on crafted results.
 */
import type { WeightFormat } from '../src/kernels/weights.ts';
import { weightBytes } from '../src/kernels/weights.ts';
import { BENCH_MODELS, decodeShapes, type BenchModelId } from './shapes.ts';

export interface BenchVariant {
  name: string; // pipeline variant label(s) of the dispatches, e.g. gemv_q4_f32_wg64
  kind: 'gemv' | 'gemm';
  model: BenchModelId;
  layer: string; // 'q/o', 'k/v', 'gate/up', 'down', 'lm_head'
  format: WeightFormat;
  M: number;
  N: number;
  K: number;
  perStep: number; // matmuls of this shape in one decode step (summary weight)
  ms: number; // wall-clock per call: median over submissions of (submission time / calls)
  gpuMs?: number; // timestamp-query GPU time per call, when the device has it
  weightGBs: number; // weightBytes(format, N, K) / ms
  roofline?: number; // weightGBs / copyGBs (gemv rows)
  gflops?: number; // 2·M·N·K / ms (gemm rows)
}

export interface DecodeSummary {
  model: BenchModelId;
  format: WeightFormat;
  stepMs: number; // all matmuls of one decode token at M = 1
  stepBytes: number; // weight bytes those matmuls read
  weightGBs: number; // stepBytes / stepMs
  roofline: number; // weightGBs / copyGBs
  tokensPerSec: number; // 1000 / stepMs: the matmul-only upper bound
}

export interface KernelBenchResult {
  device: {
    description: string;
    adapter: { vendor: string; architecture: string; device: string; description: string };
    features: Record<string, boolean>;
    limits: Record<string, number>;
  };
  env: 'chromium' | 'node';
  quick: boolean;
  iters: number;
  gpuTiming: 'timestamp' | 'none';
  copyGBs: number;
  /** The copy kernel over `bytes` read + written; bufferCopyGBs: copyBufferToBuffer of the same, for reference. */
  copy: { bytes: number; ms: number; gpuMs?: number; name: string; bufferCopyGBs?: number };
  variants: BenchVariant[];
  summary: DecodeSummary[];
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of nothing');
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** GB/s (1e9 bytes per second) of `bytes` moved in `ms`. */
export function gbPerSec(bytes: number, ms: number): number {
  return bytes / (ms * 1e6);
}

/**
 * Per model × format, the whole decode step at M = 1: every gemv shape counted perStep times.
 * The roofline of the step is a byte-weighted one (sum of bytes ÷ sum of time), so the big
 * matrices dominate as they do in a real token. A model × format missing any decode shape gets
 * no summary row rather than a wrong one.
 */
export function summarizeDecode(variants: readonly BenchVariant[], copyGBs: number): DecodeSummary[] {
  const out: DecodeSummary[] = [];
  const groups = new Map<string, BenchVariant[]>();
  for (const v of variants) {
    if (v.kind !== 'gemv' || v.M !== 1) continue;
    const key = `${v.model}|${v.format}`;
    groups.set(key, [...(groups.get(key) ?? []), v]);
  }
  for (const rows of groups.values()) {
    const { model, format } = rows[0];
    const needed = decodeShapes(BENCH_MODELS[model]).map((s) => s.layer);
    if (!needed.every((layer) => rows.some((r) => r.layer === layer))) continue;
    let stepMs = 0;
    let stepBytes = 0;
    for (const layer of needed) {
      const r = rows.find((x) => x.layer === layer)!;
      stepMs += r.perStep * r.ms;
      stepBytes += r.perStep * weightBytes(r.format, r.N, r.K);
    }
    const weightGBs = gbPerSec(stepBytes, stepMs);
    out.push({ model, format, stepMs, stepBytes, weightGBs, roofline: weightGBs / copyGBs, tokensPerSec: 1000 / stepMs });
  }
  return out;
}

const fix = (x: number | undefined, digits: number) => (x === undefined ? '' : x.toFixed(digits));
const ms3 = (x: number | undefined) => (x === undefined ? '' : x < 1 ? x.toFixed(4) : x.toFixed(3));

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** The result as markdown: a header, the copy bandwidth, the per-variant table, the decode summary. */
export function benchToMarkdown(r: KernelBenchResult): string {
  const parts = [
    '## Kernel benchmark',
    '',
    `Device: ${r.device.description || 'unknown adapter'}, run in ${r.env}`, // describeGpu: adapter, features, binding limit
    `Copy bandwidth: ${fix(r.copyGBs, 2)} GB/s (${(r.copy.bytes / 2 ** 20).toFixed(0)} MiB read + written, ${ms3(r.copy.ms)} ms, ${r.copy.name})` +
      (r.copy.bufferCopyGBs === undefined ? '' : `; copyBufferToBuffer ${fix(r.copy.bufferCopyGBs, 2)} GB/s`),
    `Timing: wall-clock median of ${r.iters} submissions per variant${r.gpuTiming === 'timestamp' ? ', GPU ms from timestamp queries' : ''}${r.quick ? ' (quick run)' : ''}`,
    '',
    '### Matmul variants',
    '',
    table(
      ['model', 'kind', 'layer', 'format', 'M', 'N×K', 'variant', 'ms', 'GPU ms', 'weight GB/s', 'roofline', 'GFLOP/s'],
      // A GEMM's weight GB/s is left blank: it re-reads W once per row tile, so GFLOP/s is its measure.
      r.variants.map((v) => [
        BENCH_MODELS[v.model].name, v.kind, v.layer, v.format, String(v.M), `${v.N}×${v.K}`, v.name,
        ms3(v.ms), ms3(v.gpuMs), v.kind === 'gemv' ? fix(v.weightGBs, 2) : '', v.roofline === undefined ? '' : `${(100 * v.roofline).toFixed(1)}%`, fix(v.gflops, 2),
      ]),
    ),
    '',
    '### Decode step (all matmuls of one token, M = 1)',
    '',
    table(
      ['model', 'format', 'step ms', 'tokens/s bound', 'weight MB', 'weight GB/s', 'roofline'],
      r.summary.map((s) => [
        BENCH_MODELS[s.model].name, s.format, ms3(s.stepMs), fix(s.tokensPerSec, 1), fix(s.stepBytes / 1e6, 1), fix(s.weightGBs, 2), `${(100 * s.roofline).toFixed(1)}%`,
      ]),
    ),
  ];
  return parts.join('\n') + '\n';
}
