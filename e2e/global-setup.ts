/**
 * The e2e suite runs against what ships: `npm run build` once (the demo site in dist/demo, the
 * npm package in dist/lib + dist/types, the standalone widget dist/mace-chat.js), before any test.
 */
import { execFileSync } from 'node:child_process';
import { ROOT } from './server.ts';

export default function buildOnce(): void {
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  try {
    execFileSync(npm, ['run', '--silent', 'build'], { cwd: ROOT, stdio: 'pipe', encoding: 'utf8' });
  } catch (e) {
    const out = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(`e2e: npm run build failed:\n${out.stdout ?? ''}\n${out.stderr ?? out.message}`);
  }
}
