#!/usr/bin/env node
// Installs what `npm start` / `npm test` / `npm run bench` lack, so the README's two commands work
// on a fresh clone of a fresh Debian machine that has only Node and npm.
//   - node_modules missing or stale (package-lock.json changed since the last install) -> `npm ci`
//   - with --browser: no Chromium found -> Debian's `chromium` via apt-get when root, else a clear
//     message naming the package.
//   - with --vulkan: no Vulkan loader (Dawn in Node) -> Debian's `libvulkan1`, the same way.
// What each flag needs and how it is detected: scripts/system-deps.mjs (tested against an empty
// environment in test/node/system-deps.test.ts).
// Node built-ins only: this runs before any dependency exists.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findChromium } from './chromium.mjs';
import { missingPackages } from './system-deps.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));
const log = (msg) => process.stderr.write(`[ensure] ${msg}\n`);

function run(cmd, argv, opts = {}) {
  log(`$ ${cmd} ${argv.join(' ')}`);
  const r = spawnSync(cmd, argv, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], ...opts });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    log(`'${cmd} ${argv.join(' ')}' failed with exit code ${r.status}`);
    process.exit(r.status ?? 1);
  }
}

function ensureNodeModules() {
  const lock = join(root, 'package-lock.json');
  const stamp = join(root, 'node_modules', '.mace-install-stamp');
  const want = createHash('sha256').update(readFileSync(lock)).digest('hex');
  const have = existsSync(stamp) ? readFileSync(stamp, 'utf8').trim() : '';
  if (have === want && existsSync(join(root, 'node_modules', '.bin', 'vitest'))) return;
  log(existsSync(join(root, 'node_modules')) ? 'node_modules is stale: reinstalling from package-lock.json' : 'node_modules is missing: installing');
  run('npm', ['ci', '--no-audit', '--no-fund']);
  writeFileSync(stamp, want + '\n');
}

function ensureChromium() {
  if (missingPackages(['--browser']).length === 0) return;
  if (process.env.MACE_CHROMIUM) {
    log(`MACE_CHROMIUM is set to '${process.env.MACE_CHROMIUM}', which does not exist. Unset it to use Debian's 'chromium' package.`);
    process.exit(1);
  }
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot) {
    log("No Chromium found. Install Debian's 'chromium' package (sudo apt-get install -y chromium), or set MACE_CHROMIUM to a Chromium binary.");
    process.exit(1);
  }
  log("No Chromium found: installing Debian's 'chromium' package");
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  run('apt-get', ['update', '-qq'], { env });
  run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'chromium'], { env });
  if (!findChromium()) {
    log("apt-get installed 'chromium' but no binary was found at /usr/bin/chromium");
    process.exit(1);
  }
}

function ensureVulkanLoader() {
  if (missingPackages(['--vulkan']).length === 0) return;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot) {
    log("Dawn needs the Vulkan loader: install Debian's 'libvulkan1' package (sudo apt-get install -y libvulkan1).");
    process.exit(1);
  }
  log("No Vulkan loader found: installing Debian's 'libvulkan1' package");
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  run('apt-get', ['update', '-qq'], { env });
  run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'libvulkan1'], { env });
  if (missingPackages(['--vulkan']).length > 0) {
    log("apt-get installed 'libvulkan1' but libvulkan.so.1 was not found");
    process.exit(1);
  }
}

ensureNodeModules();
if (args.has('--browser')) ensureChromium();
if (args.has('--vulkan')) ensureVulkanLoader();
