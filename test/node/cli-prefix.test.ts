/**
 * `mace bench prefix`: its options parsed, and a tiny run in Node + Dawn (SwiftShader here) whose
 * JSON has both traces with the cache off and on: the same requests, no cached tokens without the
 * cache, and with it the prefill tokens computed drop (the figures themselves are benchmarks).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseArgs } from '../../bin/args.mjs';

const root = fileURLToPath(new URL('../../', import.meta.url));

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

describe('mace bench prefix', () => {
  it('parses its options, defaults and refusals', () => {
    expect(parseArgs(['bench', 'prefix'])).toEqual({
      command: 'bench-prefix', model: 'stories260k', dtype: 'f32', conversations: 4, turns: 4, userTokens: 48, replyTokens: 24, systemTokens: 160, requests: 16, clients: 4, repeats: 4, seed: 1, json: false, out: undefined, runtime: 'browser',
    });
    expect(parseArgs(['bench', 'prefix', '--turns', '3', '--system-tokens', '64', '--node', '--json'])).toMatchObject({ turns: 3, systemTokens: 64, runtime: 'node', json: true });
    expect(() => parseArgs(['bench', 'prefix', '--turns', '0'])).toThrow(/--turns must be an integer in \[1/);
    expect(() => parseArgs(['bench', 'prefix', '--model', 'gpt2'])).toThrow(/--model takes/);
    expect(() => parseArgs(['bench', 'prefix', '--policy', 'mace'])).toThrow('`bench prefix` does not take --policy');
  });

  it('a tiny run: both traces, cache off and on, in one JSON', async () => {
    const args = ['bench', 'prefix', '--node', '--json', '--conversations', '2', '--turns', '2', '--user-tokens', '20', '--reply-tokens', '4', '--system-tokens', '40', '--requests', '3', '--clients', '1', '--repeats', '1'];
    const r = await mace(args, 240_000);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { runs: { trace: string; prefixCache: boolean; requests: number; cachedTokens: number; prefillTokensComputed: number; promptTokens: number }[]; comparisons: { trace: string; prefillComputedDrop: number }[] };
    expect(out.runs.map((x) => [x.trace, x.prefixCache, x.requests])).toEqual([
      ['multi-turn', false, 4],
      ['multi-turn', true, 4],
      ['shared-system', false, 3],
      ['shared-system', true, 3],
    ]);
    for (const x of out.runs.filter((y) => !y.prefixCache)) expect(x.cachedTokens).toBe(0);
    // Turn 2 of each chat reuses turn 1 (21 + 3 computed tokens: 1 block); requests 2 and 3 reuse the 41-token system prompt (2 blocks).
    expect(out.runs.filter((y) => y.prefixCache).map((x) => x.cachedTokens)).toEqual([32, 64]);
    for (const c of out.comparisons) expect(c.prefillComputedDrop).toBeGreaterThan(0);
  }, 300_000);
});
