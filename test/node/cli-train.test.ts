/**
 * `mace train`, spawned as a user runs it, in Node + Dawn (SwiftShader here) on the bundled
 * stories260K: a 3-pair TRL JSONL file, 2 steps, held-out = the same file: exit 0, a metric line per
 * step, held-out metrics before (all ties at B = 0) and after, and PEFT files in --out. A file with
 * a bad line exits 1 naming the file and line. The argument parser is checked directly.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseArgs, UsageError } from '../../bin/args.mjs';

const root = fileURLToPath(new URL('../../', import.meta.url));
const model = 'public/models/stories260K';

function mace(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['bin/mace.mjs', ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`mace ${args.join(' ')} ran over ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const PAIRS = [
  { prompt: 'Once upon a time', chosen: ' there was a girl who liked to play.', rejected: ' there was a dog.' },
  { prompt: 'Tom went to the park', chosen: ' and played with his ball.', rejected: ' and sat down.' },
  { prompt: 'The little bird', chosen: ' wanted to play in the sun.', rejected: ' was sad.' },
];

describe('mace train (Node + Dawn)', () => {
  it('trains 2 steps on a 3-pair file: exit 0, the metric curve, held-out before/after, PEFT files', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mace-train-'));
    const file = join(dir, 'pairs.jsonl');
    writeFileSync(file, PAIRS.map((p) => JSON.stringify(p)).join('\n') + '\n');
    const out = join(dir, 'adapter');
    const r = await mace(['train', '--model', model, '--pairs', file, '--eval', file, '--steps', '2', '--lr', '1e-3', '--node', '--out', out], 120_000);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    const steps = lines.filter((l) => l.startsWith('step '));
    expect(steps).toHaveLength(2);
    const num = (line: string, key: string) => Number(new RegExp(`${key} (\\S+)`).exec(line)![1]);
    expect(num(steps[0], 'loss')).toBeCloseTo(Math.LN2, 4); // B = 0: policy = reference
    for (const s of steps) expect(Number.isFinite(num(s, 'grad_norm')) && num(s, 'grad_norm') > 0).toBe(true);
    const before = lines.find((l) => l.startsWith('held-out before'))!;
    const after = lines.find((l) => l.startsWith('held-out after'))!;
    expect(before).toContain('rewards/accuracies 0.000 (ties 3/3, ties as half 0.500)');
    expect(num(after, 'loss')).toBeLessThan(Math.LN2);
    const config = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ r: 8, lora_alpha: 16, peft_type: 'LORA' });
    const weights = readFileSync(join(out, 'adapter_model.safetensors'));
    const header = JSON.parse(weights.subarray(8, 8 + Number(weights.readBigUInt64LE(0))).toString('utf8'));
    expect(Object.keys(header).filter((k) => k !== '__metadata__')).toHaveLength(5 * 7 * 2); // 5 layers x 7 modules x A, B
  }, 150_000);

  it('a file with a bad line exits 1 naming the file and the line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mace-train-'));
    const file = join(dir, 'bad.jsonl');
    writeFileSync(file, [JSON.stringify(PAIRS[0]), '{"prompt": "x", "chosen": "a"', JSON.stringify(PAIRS[1])].join('\n'));
    const r = await mace(['train', '--model', model, '--pairs', file, '--steps', '1', '--node'], 60_000);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(new RegExp(`PreferenceFormatError \\(bad-preference-file\\): ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} line 2: \\(line\\) is not valid JSON`));
  }, 90_000);
});

describe('mace train --cpu (the CPU references)', () => {
  it('--stories on stories260K: samples, trains 3 steps of 2 pairs, and reports held-out metrics and before/after continuations', async () => {
    const r = await mace(['train', '--cpu', '--model', model, '--stories', '--samples', '4', '--tokens', '8', '--steps', '3', '--batch', '2', '--rejected-per-chosen', '2', '--lr', '1e-3', '--json'], 120_000);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.device).toMatch(/^CPU reference/);
    expect(report.hyper).toMatchObject({ steps: 3, batch: 2, lr: 1e-3 });
    expect(report.steps).toHaveLength(3);
    expect(report.steps[0].loss).toBeCloseTo(Math.LN2, 6); // B = 0: policy = reference
    expect(report.stories.heldOutPrompts).toHaveLength(8); // a quarter of the 32 story prompts
    expect(report.stories.greedy).toHaveLength(8);
    expect(report.stories.totals.samples).toBe(32 * 4);
    if (report.before) expect(report.before.ties).toBe(report.before.pairs);
  }, 150_000);
});

describe('mace train argument parsing', () => {
  it('parses the options and refuses contradictions', () => {
    expect(parseArgs(['train', '--model', 'm', '--pairs', 'p.jsonl'])).toMatchObject({ command: 'train', model: 'm', pairs: 'p.jsonl', stories: false, dtype: 'f32', runtime: 'browser', json: false });
    expect(parseArgs(['train', '--model', 'm', '--stories', '--steps', '40', '--lr', '5e-4', '--beta', '0.2', '--rank', '4', '--alpha', '8', '--seed', '3', '--samples', '12', '--tokens', '32', '--dtype', 'q4', '--node', '--json', '--out', 'd'])).toMatchObject({
      stories: true, steps: 40, lr: 5e-4, beta: 0.2, rank: 4, alpha: 8, seed: 3, samples: 12, tokens: 32, dtype: 'q4', runtime: 'node', json: true, out: 'd',
    });
    expect(() => parseArgs(['train', '--model', 'm'])).toThrow('exactly one of --pairs FILE and --stories');
    expect(() => parseArgs(['train', '--model', 'm', '--pairs', 'p', '--stories'])).toThrow(UsageError);
    expect(() => parseArgs(['train', '--pairs', 'p'])).toThrow('`train` needs --model');
    expect(() => parseArgs(['train', '--model', 'm', '--pairs', 'p', '--steps', '2', '--epochs', '1'])).toThrow('not both');
    expect(() => parseArgs(['train', '--model', 'm', '--pairs', 'p', '--lr', '0'])).toThrow('--lr must be a number in (0, 1]');
    expect(() => parseArgs(['train', '--model', 'm', '--pairs', 'p', '--samples', '4'])).toThrow('--samples only applies with --stories');
    expect(() => parseArgs(['train', '--model', 'm', '--pairs', 'p', '--quick'])).toThrow('`train` does not take --quick');
    expect(parseArgs(['train', '--model', 'm', '--stories', '--cpu', '--batch', '4', '--rejected-per-chosen', '2'])).toMatchObject({ runtime: 'cpu', batch: 4, rejectedPerChosen: 2 });
    expect(() => parseArgs(['train', '--model', 'm', '--pairs', 'p', '--cpu', '--node'])).toThrow('--cpu excludes --node and --browser');
    expect(() => parseArgs(['train', '--model', 'm', '--pairs', 'p', '--cpu', '--dtype', 'q4'])).toThrow('--cpu trains on f32 weights only');
    expect(() => parseArgs(['train', '--model', 'm', '--pairs', 'p', '--rejected-per-chosen', '2'])).toThrow('--rejected-per-chosen only applies with --stories');
    expect(() => parseArgs(['train', '--synthetic', 'stories260k', '--cpu'])).toThrow('`train --synthetic` does not take --cpu');
    // Other commands keep refusing train's options.
    expect(() => parseArgs(['generate', '--model', 'm', '--pairs', 'p'])).toThrow('`generate` does not take --pairs');
  });
});
