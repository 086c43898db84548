/**
 * Shared by the `mace serve` tests: start the real CLI (`node bin/mace.mjs serve`) on stories260K
 * with port 0, read its URL from stdout, stop it with SIGTERM; and write a PEFT adapter directory
 * with the project's own exporter (src/learn/peft.ts), random weights large enough to change what
 * the model says.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { adapterLayout, type AdapterConfig } from '../../src/learn/adapter.ts';
import { exportPeft } from '../../src/learn/peft.ts';
import { parseModelConfig } from '../../src/model/config.ts';
import { randomF32 } from '../util/random.ts';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const STORIES = 'public/models/stories260K';
export const MACE = join(ROOT, 'bin/mace.mjs');

export interface MaceServer {
  /** http://127.0.0.1:PORT */
  url: string;
  /** The openai client's baseURL. */
  baseURL: string;
  proc: ChildProcess;
  stderr(): string;
  stop(): Promise<void>;
}

/** `mace serve --model stories260K --port 0 ...args`, resolved once it prints its URL. */
export function startMace(args: string[], timeoutMs = 90_000): Promise<MaceServer> {
  const proc = spawn(process.execPath, [MACE, 'serve', '--model', STORIES, '--port', '0', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const stop = () =>
    new Promise<void>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
      proc.once('exit', () => resolve());
      proc.kill('SIGTERM');
      // A server that does not stop within 10 s is killed (and the test that waits on it fails on its own).
      setTimeout(() => proc.kill('SIGKILL'), 10_000).unref();
    });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void stop();
      reject(new Error(`mace serve printed no URL in ${timeoutMs} ms; stderr:\n${err}`));
    }, timeoutMs);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`mace serve exited (${code}) before listening; stderr:\n${err}`));
    });
    proc.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /(http:\/\/[^\s/]+)\/v1/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ url: m[1], baseURL: `${m[1]}/v1`, proc, stderr: () => err, stop });
      }
    });
  });
}

const modelConfig = () => parseModelConfig(readFileSync(join(ROOT, STORIES, 'config.json'), 'utf8'));

const made: string[] = [];

/** Remove the directories writeAdapterDir made (afterAll). */
export function removeAdapterDirs(): void {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** A PEFT adapter directory (adapter_config.json + adapter_model.safetensors) for stories260K. */
export function writeAdapterDir(seed: number, r = 4): string {
  const model = modelConfig();
  const c: AdapterConfig = { r, loraAlpha: 2 * r, useRslora: false, targetModules: ['q_proj', 'v_proj', 'o_proj', 'down_proj'], baseModelNameOrPath: '' };
  const l = adapterLayout(model, c);
  // Scale 1 on both factors: a delta as large as the weights, so greedy text changes.
  const host = { config: c, tensors: l.slices.map((s, i) => ({ layer: s.layer, module: s.module, A: randomF32(r * s.inDim, seed + 2 * i), B: randomF32(s.outDim * r, seed + 2 * i + 1) })) };
  const files = exportPeft(model, host);
  const dir = mkdtempSync(join(tmpdir(), 'mace-serve-adapter-'));
  made.push(dir);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'adapter_model.safetensors'), files.weights);
  writeFileSync(join(dir, 'adapter_config.json'), files.config);
  return dir;
}

/** Run `node bin/mace.mjs ...args` to its end. */
export function runMace(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [MACE, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    p.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** POST JSON (or raw text) and return status + parsed body (text when not JSON). */
export async function post(url: string, body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }): Promise<{ status: number; body: any; text: string }> {
  const res = await fetch(url, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* plain text */
  }
  return { status: res.status, body: parsed, text };
}
