// The Debian packages the project needs beyond Node and npm, what each is for, and how its presence
// is detected. scripts/ensure.mjs installs the missing ones; test/node/system-deps.test.ts runs the
// same detection against an empty environment, so a package the tests need but ensure.mjs does not
// know about is caught by the tests themselves. Node built-ins only (this runs before npm ci).
import { existsSync } from 'node:fs';
import { findChromium } from './chromium.mjs';

const VULKAN_LOADER_PATHS = ['/usr/lib/x86_64-linux-gnu/libvulkan.so.1', '/usr/lib/aarch64-linux-gnu/libvulkan.so.1', '/usr/lib/libvulkan.so.1'];

/** One system package: the ensure.mjs flag that asks for it, its Debian name, why, and its detection. */
export const SYSTEM_DEPS = [
  {
    flag: '--browser',
    pkg: 'chromium',
    why: 'browser tests, e2e and the CLI run in headless Chromium (WebGPU on SwiftShader)',
    present: (exists, env) => findChromium(exists, env) !== undefined,
  },
  {
    flag: '--vulkan',
    pkg: 'libvulkan1',
    why: 'Dawn in Node (the `webgpu` package: CLI --node, bench --node) dlopens the Vulkan loader libvulkan.so.1',
    present: (exists) => VULKAN_LOADER_PATHS.some((p) => exists(p)),
  },
];

/** The packages `flags` ask for that are missing, given a file-exists test and an environment. */
export function missingPackages(flags, exists = existsSync, env = process.env) {
  return SYSTEM_DEPS.filter((d) => flags.includes(d.flag) && !d.present(exists, env));
}
