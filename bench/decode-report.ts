/**
 * The inference benchmark's result: its JSON shape, the per-row maths (aggregates, the decode
 * roofline) and the markdown rendering. Pure TypeScript (no WebGPU), so Node tests check the maths.
 */
import type { KernelPlan } from '../src/kernels/plan.ts';
import type { WeightFormat } from '../src/kernels/weights.ts';

/** Timing of one request, from the engine's usage. */
export interface RequestTiming {
  ttft_ms: number;
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
}

export interface DecodeRow {
  format: WeightFormat;
  /** Kernel plan of the run (src/kernels/plan.ts); absent in results from before issue 11 (= unfused). */
  plan?: KernelPlan;
  /** The requests' kv_window as 'sSINKSwWINDOW' (absent: the full cache). */
  kvWindow?: string;
  batch: number;
  /** Median over the batch's requests. */
  ttftMs: number;
  prefillTokensPerSec: number; // per request (median)
  prefillTokensPerSecAgg: number; // sum over the batch (they prefill in the same iterations)
  decodeTokensPerSec: number; // per request (median)
  decodeTokensPerSecAgg: number; // sum over the batch (they decode in the same iterations)
  decodeMsPerToken: number; // per request: 1000 / decodeTokensPerSec = ms per decode step
  weightBytesPerToken: number; // bytes one decode step reads from the weights
  boundMsPerToken: number; // weightBytesPerToken at the copy kernel's bandwidth
  roofline: number; // boundMsPerToken / decodeMsPerToken (1 = at the bandwidth bound)
}

export interface DecodeBenchResult {
  device: { description: string; adapter: Record<string, string> };
  env: 'chromium' | 'node';
  model: { id: string; name: string; synthetic: boolean; parameters: number; layers: number; hidden: number; vocab: number };
  promptTokens: number;
  tokens: number;
  /** Copy kernel bandwidth (bytes read + written per second), measured in the same run. */
  copyGBs: number;
  /** ms to make or load the weights, per format. */
  loadMs: Partial<Record<WeightFormat, number>>;
  rows: DecodeRow[];
  /**
   * With both plans in one run: per (format, batch), unfused decode ms/token ÷ fused decode ms/token
   * (> 1: the fused plan is faster), e.g. {"f32:1": 2.3}.
   */
  decodeSpeedup?: Record<string, number>;
  /**
   * With a kv_window variant beside the full cache: per (window, format, batch), full-cache decode
   * ms/token ÷ windowed decode ms/token (same plan), e.g. {"s4w60:f32:1": 1.4}.
   */
  kvWindowSpeedup?: Record<string, number>;
}

/** kvWindowSpeedup of a run's rows (empty without a windowed variant). */
export function windowSpeedups(rows: readonly DecodeRow[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const w of rows.filter((r) => r.kvWindow !== undefined)) {
    const full = rows.find((r) => r.kvWindow === undefined && r.plan === w.plan && r.format === w.format && r.batch === w.batch);
    if (full) out[`${w.kvWindow}:${w.format}:${w.batch}`] = full.decodeMsPerToken / w.decodeMsPerToken;
  }
  return out;
}

/** decodeSpeedup of a run's rows (empty when it ran one plan). */
export function planSpeedups(rows: readonly DecodeRow[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const f of rows.filter((r) => r.plan === 'fused')) {
    const u = rows.find((r) => r.plan === 'unfused' && r.format === f.format && r.batch === f.batch);
    if (u) out[`${f.format}:${f.batch}`] = u.decodeMsPerToken / f.decodeMsPerToken;
  }
  return out;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of nothing');
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/**
 * One table row from the requests of one batch. The roofline compares one decode step with the
 * time the copy kernel needs to move the step's weight bytes: copyGBs counts bytes read + written,
 * as the kernel benchmark's roofline does, so 1.0 means "as fast as copying the weights".
 */
export function decodeRow(format: WeightFormat, timings: readonly RequestTiming[], weightBytesPerToken: number, copyGBs: number): DecodeRow {
  if (timings.length === 0) throw new Error('decodeRow: no requests');
  const decodeTokensPerSec = median(timings.map((t) => t.decode_tokens_per_s));
  const decodeMsPerToken = decodeTokensPerSec > 0 ? 1000 / decodeTokensPerSec : Infinity;
  const boundMsPerToken = weightBytesPerToken / (copyGBs * 1e6);
  return {
    format,
    batch: timings.length,
    ttftMs: median(timings.map((t) => t.ttft_ms)),
    prefillTokensPerSec: median(timings.map((t) => t.prefill_tokens_per_s)),
    prefillTokensPerSecAgg: timings.reduce((s, t) => s + t.prefill_tokens_per_s, 0),
    decodeTokensPerSec,
    decodeTokensPerSecAgg: timings.reduce((s, t) => s + t.decode_tokens_per_s, 0),
    decodeMsPerToken,
    weightBytesPerToken,
    boundMsPerToken,
    roofline: boundMsPerToken / decodeMsPerToken,
  };
}

const fix = (x: number, digits: number) => (Number.isFinite(x) ? x.toFixed(digits) : '—');
const sig = (x: number) => (!Number.isFinite(x) ? '—' : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x >= 1 ? x.toFixed(2) : x.toFixed(3));

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

export function decodeToMarkdown(r: DecodeBenchResult): string {
  const m = r.model;
  const what = m.synthetic ? 'real shapes, random weights made on the GPU' : 'loaded from its directory';
  return [
    `### ${m.name} (${what}; ${(m.parameters / 1e6).toFixed(m.parameters < 1e6 ? 3 : 1)} M parameters)`,
    '',
    `Device: ${r.device.description || 'unknown adapter'}, run in ${r.env}. Prompt ${r.promptTokens} tokens, ${r.tokens} generated per request (EOS ignored), greedy. Copy kernel ${fix(r.copyGBs, 2)} GB/s.`,
    '',
    table(
      ['plan', 'kv_window', 'format', 'batch', 'TTFT ms', 'prefill tok/s (req / all)', 'decode tok/s (req / all)', 'decode ms/token', 'weight MB/token', 'bound ms/token', 'roofline'],
      r.rows.map((x) => [
        x.plan ?? 'unfused', x.kvWindow ?? 'full', x.format, String(x.batch), sig(x.ttftMs), `${sig(x.prefillTokensPerSec)} / ${sig(x.prefillTokensPerSecAgg)}`, `${sig(x.decodeTokensPerSec)} / ${sig(x.decodeTokensPerSecAgg)}`,
        sig(x.decodeMsPerToken), fix(x.weightBytesPerToken / 1e6, 2), sig(x.boundMsPerToken), fix(x.roofline, 3),
      ]),
    ),
    '',
    ...Object.entries(r.decodeSpeedup ?? {}).map(([k, v]) => `Decode speed-up, unfused ÷ fused ms/token, ${k.replace(':', ' batch ')}: ${fix(v, 2)}×`),
    ...Object.entries(r.kvWindowSpeedup ?? {}).map(([k, v]) => `Decode speed-up, full cache ÷ kv_window ${k.split(':')[0]} ms/token, ${k.split(':')[1]} batch ${k.split(':')[2]}: ${fix(v, 2)}×`),
    '',
  ].join('\n');
}
