// Where the system Chromium is and how we launch it for WebGPU. Shared by vitest, the CLI and e2e.
import { existsSync } from 'node:fs';

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome', '/usr/bin/google-chrome-stable'];

/** Path of a Chromium binary, or undefined. MACE_CHROMIUM overrides the search. (exists/env: injectable for tests.) */
export function findChromium(exists = existsSync, env = process.env) {
  const fromEnv = env.MACE_CHROMIUM;
  if (fromEnv) return exists(fromEnv) ? fromEnv : undefined;
  return CANDIDATES.find((p) => exists(p));
}

/** Flags: WebGPU on, no sandbox as root, and no background traffic to hosts we cannot reach. */
export function chromiumArgs() {
  const args = [
    '--enable-unsafe-webgpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-quic',
    '--no-first-run',
  ];
  if (typeof process.getuid === 'function' && process.getuid() === 0) args.push('--no-sandbox');
  return args;
}

/** Vulkan ICD of Chromium's SwiftShader, for Dawn in Node where there is no GPU. */
export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
