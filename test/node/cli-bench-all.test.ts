import { describe, expect, it } from 'vitest';
import { DRIFT_PRESETS, parseArgs, SERVE_ABLATIONS, UsageError } from '../../bin/args.mjs';
import { benchAllPlan } from '../../bin/bench-all.mjs';
import { ABLATIONS, ablationSettings } from '../../bench/serve/ablation.ts';

describe('mace bench all', () => {
  it('needs --out and takes --quick, --json and the runtime', () => {
    expect(parseArgs(['bench', 'all', '--out', 'r', '--node', '--quick'])).toEqual({ command: 'bench-all', out: 'r', quick: true, json: false, runtime: 'node' });
    expect(() => parseArgs(['bench', 'all'])).toThrow(/--out DIR/);
    expect(() => parseArgs(['bench', 'all', '--out', 'r', '--policy', 'mace'])).toThrow(UsageError);
  });

  it('runs kernels, decode, training-step and serving benchmarks on real-model shapes, each with its equivalent command', () => {
    const full = benchAllPlan(false);
    expect(full.map((p) => p.name)).toEqual(['kernels', 'decode-stories260k', 'decode-smollm2-135m', 'train-step-stories260k-f32', 'train-step-smollm2-135m-f32', 'train-step-smollm2-135m-q4', 'train-step-stories260k-f32-unfused', 'serve-smollm2-135m']);
    // Every part's command parses as a real `mace` command line with the same settings.
    for (const p of full) expect(() => parseArgs(p.command.split(' ').slice(1)), p.command).not.toThrow();
    expect(full.every((p) => p.command.startsWith('mace '))).toBe(true);
    const quick = benchAllPlan(true);
    expect(quick.map((p) => p.kind)).toEqual(['kernels', 'decode', 'train-step', 'train-step', 'serve']);
  });
});

describe('bench serve ablations', () => {
  it('the CLI names the same ablations as the benchmark, each switching one mechanism off', () => {
    expect(SERVE_ABLATIONS).toEqual([...ABLATIONS]);
    expect(ablationSettings('no-loss-priority').tuning).toEqual({ gamma: 0 });
    expect(ablationSettings('no-best-fit').tuning).toEqual({ lambdaMemory: 0, lambdaLatency: 0 });
    expect(ablationSettings('no-aging').tuning).toEqual({ agingPrefill: 0, agingFinetune: 0 });
    expect(ablationSettings('layer-units')).toEqual({ tuning: {}, unitGranularity: 'layer' });
    expect(ablationSettings('no-decode-stretch')).toEqual({ tuning: { decodeStretch: Infinity }, unitGranularity: 'matmul' });
    expect(ablationSettings(null)).toEqual({ tuning: {}, unitGranularity: 'matmul' });
    expect(parseArgs(['bench', 'serve', '--ablate', 'no-aging,layer-units'])).toMatchObject({ ablations: ['no-aging', 'layer-units'] });
    expect(() => parseArgs(['bench', 'serve', '--ablate', 'no-gpu'])).toThrow(/--ablate takes a comma list of no-loss-priority/);
  });
});

describe('mace bench drift arguments', () => {
  it('the bare command is the full experiment on the bundled stories260K; --quick the short one', async () => {
    const { DRIFT_PRESETS: fromBench } = await import('../../bench/drift/presets.ts');
    expect(DRIFT_PRESETS).toEqual(fromBench);
    const full = parseArgs(['bench', 'drift']) as unknown as { command: string; model: string | null; options: Record<string, unknown>; plot?: string };
    expect(full.command).toBe('bench-drift');
    expect(full.model).toBeNull();
    expect(full.options).toMatchObject({ policies: ['mace', 'inference-only', 'periodic', 'sync'], durationS: 360, evalEveryS: 20, feedbackRate: 0.6, noise: 0.05, maxRegenerations: 2, anchorEvery: 5, returnToFirst: false });
    const quick = parseArgs(['bench', 'drift', '--quick', '--return', '--policy', 'mace,sync', '--plot', 'charts']) as unknown as typeof full;
    expect(quick.options).toMatchObject({ durationS: 72, evalEveryS: 12, policies: ['mace', 'sync'], returnToFirst: true });
    expect(quick.plot).toBe('charts');
  });

  it('refuses bad values naming the option', () => {
    expect(() => parseArgs(['bench', 'drift', '--noise', '0.9'])).toThrow(/--noise/);
    expect(() => parseArgs(['bench', 'drift', '--policy', 'fifo'])).toThrow(/--policy takes mace/);
    expect(() => parseArgs(['bench', 'drift', '--feedback-rate', 'x'])).toThrow(/--feedback-rate/);
  });
});

describe('mace bench serve --unloaded and --records', () => {
  it('takes a given unloaded latency (same SLOs and budget in every process) and a records file', () => {
    expect(parseArgs(['bench', 'serve', '--unloaded', '33.7,6.9', '--records', 'r.json'])).toMatchObject({ unloaded: { ttftMs: 33.7, tbtMs: 6.9 }, records: 'r.json' });
    expect(() => parseArgs(['bench', 'serve', '--unloaded', '33.7'])).toThrow(/--unloaded takes TTFT,TBT/);
    expect(() => parseArgs(['bench', 'serve', '--unloaded', '0,5'])).toThrow(/--unloaded/);
  });
});

describe('docs/CLI.md', () => {
  it('holds the help text verbatim (the reference cannot drift from the command)', async () => {
    const { readFileSync } = await import('node:fs');
    const { USAGE } = await import('../../bin/args.mjs');
    expect(readFileSync(new URL('../../docs/CLI.md', import.meta.url), 'utf8')).toContain(USAGE);
  });
});
