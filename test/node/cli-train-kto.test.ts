/**
 * `mace train --thumbs`, spawned as a user runs it, in Node + Dawn (SwiftShader here) on the
 * bundled stories260K: a 4-example TRL KTO JSONL file (two prompts, each with a thumbs-up and a
 * thumbs-down), 3 steps on the GPU trainer, held-out = the same file: exit 0, a KTO metric line per
 * step, held-out reward accuracy 0.5 before (all ties at B = 0); a bad label exits 1 naming the file
 * and line.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

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

const THUMBS = [
  { prompt: 'Once upon a time', completion: ' there was a girl who liked to play.', label: true },
  { prompt: 'Once upon a time', completion: ' there was a dog.', label: false },
  { prompt: 'Tom went to the park', completion: ' and played with his ball.', label: true },
  { prompt: 'Tom went to the park', completion: ' and sat down.', label: false },
];

describe('mace train --thumbs (Node + Dawn)', () => {
  it('KTO-trains 3 steps on a 4-example thumbs file: exit 0, KTO lines, held-out reward accuracy before/after', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mace-kto-'));
    const file = join(dir, 'thumbs.jsonl');
    writeFileSync(file, THUMBS.map((t) => JSON.stringify(t)).join('\n') + '\n');
    const r = await mace(['train', '--model', model, '--thumbs', file, '--eval-thumbs', file, '--steps', '3', '--lr', '1e-3', '--node'], 150_000);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    const steps = lines.filter((l) => l.startsWith('step '));
    expect(steps).toHaveLength(3);
    const num = (line: string, key: string) => Number(new RegExp(`${key} (\\S+)`).exec(line)![1]);
    expect(num(steps[0], 'loss')).toBeCloseTo(0.5, 4); // B = 0: ρ = 0, z0 = 0 → loss w/2
    expect(num(steps[0], 'kl')).toBe(0);
    for (const s of steps) expect(num(s, 'grad_norm')).toBeGreaterThan(0);
    const before = lines.find((l) => l.startsWith('held-out before'))!;
    expect(before).toContain('reward accuracy 0.500 (strict 0.000, 2 ties of 2 same-prompt couples)');
    const after = lines.find((l) => l.startsWith('held-out after'))!;
    expect(num(after, 'loss')).toBeLessThan(0.5);
  }, 180_000);

  it('a bad label exits 1 naming the file and the line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mace-kto-'));
    const file = join(dir, 'bad.jsonl');
    writeFileSync(file, [JSON.stringify(THUMBS[0]), JSON.stringify({ ...THUMBS[1], label: 'no' })].join('\n'));
    const r = await mace(['train', '--model', model, '--thumbs', file, '--steps', '1', '--cpu'], 60_000);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${file} line 2: label must be true or false`);
  }, 90_000);
});
