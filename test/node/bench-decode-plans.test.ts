/** The decode benchmark's plan comparison (bench/decode-report.ts planSpeedups), pure TypeScript. */
import { describe, expect, it } from 'vitest';
import { decodeRow, decodeToMarkdown, planSpeedups, windowSpeedups, type DecodeBenchResult } from '../../bench/decode-report.ts';

const t = (decode: number) => ({ ttft_ms: 10, prefill_tokens_per_s: 100, decode_tokens_per_s: decode });

describe('decode benchmark plans', () => {
  it('speed-up = unfused ms/token ÷ fused ms/token per (format, batch)', () => {
    const rows = [
      { ...decodeRow('f32', [t(40)], 1e6, 1), plan: 'unfused' as const },
      { ...decodeRow('f32', [t(100)], 1e6, 1), plan: 'fused' as const },
      { ...decodeRow('q4', [t(50)], 1e6, 1), plan: 'fused' as const }, // no unfused row: no entry
    ];
    expect(planSpeedups(rows)).toEqual({ 'f32:1': 2.5 });
    expect(planSpeedups(rows.slice(1))).toEqual({});
    const r = { device: { description: 'd', adapter: {} }, env: 'chromium', model: { id: 'x', name: 'x', synthetic: true, parameters: 1, layers: 1, hidden: 1, vocab: 1 }, promptTokens: 1, tokens: 2, copyGBs: 1, loadMs: {}, rows, decodeSpeedup: planSpeedups(rows) } satisfies DecodeBenchResult;
    const md = decodeToMarkdown(r);
    expect(md).toContain('| unfused | full | f32 | 1 |');
    expect(md).toContain('Decode speed-up, unfused ÷ fused ms/token, f32 batch 1: 2.50×');
  });

  it('kv_window speed-up = full-cache ms/token ÷ windowed ms/token per (window, format, batch), same plan', () => {
    const rows = [
      { ...decodeRow('f32', [t(40)], 1e6, 1), plan: 'fused' as const },
      { ...decodeRow('f32', [t(60)], 1e6, 1), plan: 'fused' as const, kvWindow: 's4w60' },
      { ...decodeRow('f32', [t(10)], 1e6, 1), plan: 'unfused' as const, kvWindow: 's4w60' }, // no unfused full row: no entry
    ];
    expect(windowSpeedups(rows)).toEqual({ 's4w60:f32:1': 1.5 });
    const r = { device: { description: 'd', adapter: {} }, env: 'node', model: { id: 'x', name: 'x', synthetic: true, parameters: 1, layers: 1, hidden: 1, vocab: 1 }, promptTokens: 1, tokens: 2, copyGBs: 1, loadMs: {}, rows, kvWindowSpeedup: windowSpeedups(rows) } satisfies DecodeBenchResult;
    const md = decodeToMarkdown(r);
    expect(md).toContain('| fused | s4w60 | f32 | 1 |');
    expect(md).toContain('Decode speed-up, full cache ÷ kv_window s4w60 ms/token, f32 batch 1: 1.50×');
  });
});
