/**
 * The `mace` command line, spawned as a user runs it. The golden check runs the whole GPU path in
 * Node + Dawn (SwiftShader here) on the bundled stories260K: greedy generation from BOS must print
 * exactly the published reference tokens and text. The parser is checked directly.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseArgs, UsageError } from '../../bin/args.mjs';

const root = fileURLToPath(new URL('../../', import.meta.url));
const reference = JSON.parse(readFileSync(`${root}public/models/stories260K/reference.json`, 'utf8')) as { output_ids_after_bos: number[]; text: string };

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function mace(args: string[], timeoutMs = 50_000): Promise<Run> {
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

describe('mace generate (Node + Dawn)', () => {
  it('greedy 200 tokens from BOS on stories260K print the reference tokens and text', async () => {
    const r = await mace(['generate', '--model', 'public/models/stories260K', '--max-tokens', '200', '--temperature', '0', '--json', '--node']);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1); // ONE JSON object, nothing else on stdout
    const out = JSON.parse(lines[0]);
    expect(Object.keys(out).sort()).toEqual(['finish_reason', 'prompt_token_ids', 'text', 'token_ids', 'usage']);
    expect(out.prompt_token_ids).toEqual([1]);
    expect(out.token_ids).toEqual(reference.output_ids_after_bos);
    expect(out.text).toBe(reference.text);
    expect(out.finish_reason).toBe('length');
    expect(out.usage).toMatchObject({ prompt_tokens: 1, completion_tokens: 200, total_tokens: 201 });
    expect(out.usage.decode_tokens_per_s).toBeGreaterThan(0);
  }, 60_000);

  it('a missing model directory exits 1 naming the file', async () => {
    const r = await mace(['generate', '--model', './no/such/model-dir', '--node']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/ModelFileError \(model-file\): model file 'config\.json': \S*no\/such\/model-dir\/config\.json does not exist/);
  }, 30_000);

  it('an unknown flag exits 2 with the usage', async () => {
    const r = await mace(['generate', '--model', 'public/models/stories260K', '--frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain("unknown option '--frobnicate'");
    expect(r.stderr).toContain('Usage: mace <command>');
  }, 30_000);
});

describe('mace argument parsing', () => {
  it('keeps `bench kernels` as it was', () => {
    expect(parseArgs(['bench', 'kernels'])).toEqual({ command: 'bench-kernels', json: false, quick: false, node: false, out: undefined });
    expect(parseArgs(['bench', 'kernels', '--quick', '--node', '--json', '--out', 'r.json'])).toEqual({ command: 'bench-kernels', json: true, quick: true, node: true, out: 'r.json' });
    expect(() => parseArgs(['bench', 'kernels', '--out'])).toThrow('--out needs a file name');
    expect(() => parseArgs(['bench', 'kernels', '--browser'])).toThrow(UsageError);
    expect(parseArgs([])).toEqual({ command: 'help' });
    expect(parseArgs(['generate', '--help'])).toEqual({ command: 'help' });
  });

  it('parses generate with defaults, values and a prompt that starts with a dash', () => {
    expect(parseArgs(['generate', '--model', 'm'])).toMatchObject({ command: 'generate', model: 'm', dtype: 'f32', json: false, runtime: 'browser', prompt: undefined, temperature: undefined });
    const g = parseArgs(['generate', '--model=org/name', '--prompt', '-dash', '--max-tokens', '5', '--temperature', '0.7', '--top-p', '0.9', '--seed', '42', '--dtype', 'q4', '--node']);
    expect(g).toMatchObject({ model: 'org/name', prompt: '-dash', maxTokens: 5, temperature: 0.7, topP: 0.9, seed: 42, dtype: 'q4', runtime: 'node' });
    expect(parseArgs(['generate', '--model', 'm', '--messages', '[{"role":"user","content":"hi"}]'])).toMatchObject({ messages: [{ role: 'user', content: 'hi' }] });
  });

  it('refuses malformed generate options', () => {
    const bad = (args: string[], msg: RegExp) => expect(() => parseArgs(['generate', ...args])).toThrow(msg);
    bad([], /needs --model/);
    bad(['--model', 'm', '--temperature', '3'], /--temperature must be a number in \[0, 2\]/);
    bad(['--model', 'm', '--top-p', '0'], /--top-p must be a number in \(0, 1\]/);
    bad(['--model', 'm', '--max-tokens', '0'], /--max-tokens must be an integer/);
    bad(['--model', 'm', '--seed', '-1'], /--seed needs a value/);
    bad(['--model', 'm', '--dtype', 'bf16'], /--dtype must be one of f32, f16, q4/);
    bad(['--model', 'm', '--messages', '{'], /--messages is not valid JSON/);
    bad(['--model', 'm', '--messages', '[{"content":"x"}]'], /--messages must be a non-empty JSON array/);
    bad(['--model', 'm', '--prompt', 'a', '--messages', '[{"role":"user","content":"x"}]'], /not both/);
    bad(['--model', 'm', '--node', '--browser'], /exclude each other/);
    bad(['--model', 'm', '--quick'], /does not take --quick/);
  });

  it('parses bench decode lists and defaults', () => {
    expect(parseArgs(['bench', 'decode'])).toEqual({ command: 'bench-decode', model: 'stories260k', dtypes: ['f32', 'f16', 'q4'], batches: [1, 4, 8], promptTokens: 16, tokens: 32, plans: ['fused'], kvWindows: [null], json: false, out: undefined, runtime: 'browser' });
    expect(parseArgs(['bench', 'decode', '--plan', 'fused,unfused'])).toMatchObject({ plans: ['fused', 'unfused'] });
    expect(() => parseArgs(['bench', 'decode', '--plan', 'fast'])).toThrow(/--plan must be one of fused, unfused/);
    expect(parseArgs(['train', '--synthetic', 'stories260k', '--plan', 'unfused,fused'])).toMatchObject({ command: 'train-step-bench', plans: ['unfused', 'fused'] });
    expect(parseArgs(['train', '--synthetic', 'stories260k'])).toMatchObject({ plans: ['fused'] });
    expect(() => parseArgs(['train', '--model', 'm', '--pairs', 'p', '--plan', 'fused'])).toThrow('--plan only applies with --synthetic');
    expect(parseArgs(['bench', 'decode', '--model', 'smollm2-135m', '--dtype', 'q4,f16', '--batches', '2', '--tokens', '9', '--prompt-tokens', '3', '--json', '--node'])).toMatchObject({ model: 'smollm2-135m', dtypes: ['q4', 'f16'], batches: [2], tokens: 9, promptTokens: 3, json: true, runtime: 'node' });
    expect(() => parseArgs(['bench', 'decode', '--batches', '1,,4'])).toThrow(/comma-separated list/);
    expect(() => parseArgs(['bench', 'decode', '--dtype', 'f32,f32'])).toThrow(/twice/);
    expect(() => parseArgs(['bench', 'decode', '--tokens', '1'])).toThrow(/--tokens must be an integer in \[2/);
    expect(parseArgs(['bench', 'decode', '--kv-window', 'full,4:60'])).toMatchObject({ kvWindows: [null, { sinks: 4, window: 60 }] });
    expect(() => parseArgs(['bench', 'decode', '--kv-window', '4:0'])).toThrow(/--kv-window takes full or SINKS:WINDOW/);
    expect(() => parseArgs(['bench', 'decode', '--kv-window', '60'])).toThrow(/--kv-window takes/);
    expect(() => parseArgs(['bench', 'nothing'])).toThrow("unknown command 'bench nothing'");
  });
});
