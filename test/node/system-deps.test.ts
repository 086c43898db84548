/**
 * The install step's detection (scripts/system-deps.mjs, used by scripts/ensure.mjs) against an empty
 * environment: on a bare Debian machine every system package the tests need is reported missing, and
 * the README's test command asks ensure.mjs for all of them (issue 15: libvulkan1 was once installed
 * by hand only, and `npm test` failed on a fresh machine).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
// @ts-expect-error plain .mjs without types: Node built-ins only, it runs before npm ci
import { missingPackages, SYSTEM_DEPS } from '../../scripts/system-deps.mjs';

interface Dep {
  flag: string;
  pkg: string;
  why: string;
}

const root = join(__dirname, '..', '..');
const scripts = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).scripts as Record<string, string>;
const flagsOf = (script: string) => (/scripts\/ensure\.mjs((?: --[a-z]+)*)/.exec(script)?.[1] ?? '').trim().split(/\s+/).filter(Boolean);
const nothing = () => false;

describe('system packages (scripts/system-deps.mjs)', () => {
  it('on an empty machine every package is missing, each named with its Debian package and reason', () => {
    const missing = (missingPackages(['--browser', '--vulkan'], nothing, {}) as Dep[]).map((d) => d.pkg);
    expect(missing).toEqual(['chromium', 'libvulkan1']);
    for (const d of SYSTEM_DEPS as Dep[]) expect(d.why.length, d.pkg).toBeGreaterThan(10);
    // MACE_CHROMIUM pointing at nothing is not a Chromium either.
    expect((missingPackages(['--browser'], nothing, { MACE_CHROMIUM: '/nope' }) as Dep[]).map((d) => d.pkg)).toEqual(['chromium']);
    // Detection by the files each package installs.
    const only = (path: string) => (p: string) => p === path;
    expect(missingPackages(['--browser'], only('/usr/bin/chromium'), {})).toEqual([]);
    expect(missingPackages(['--vulkan'], only('/usr/lib/x86_64-linux-gnu/libvulkan.so.1'), {})).toEqual([]);
  });

  it('npm test asks for every system package; npm start and npm run bench ask for what they run', () => {
    const all = (SYSTEM_DEPS as Dep[]).map((d) => d.flag);
    expect(flagsOf(scripts.test)).toEqual(expect.arrayContaining(all));
    expect(flagsOf(scripts.bench)).toEqual(expect.arrayContaining(all)); // bench kernels runs in Chromium, --node in Dawn
    expect(scripts.start).toMatch(/scripts\/ensure\.mjs/);
    // .ci/run is the README's test command.
    expect(readFileSync(join(root, '.ci', 'run'), 'utf8')).toMatch(/npm test/);
  });

  it('on this machine, after ensure ran (npm test runs it first), nothing is missing', () => {
    expect((missingPackages(['--browser', '--vulkan']) as Dep[]).map((d) => d.pkg)).toEqual([]);
  });
});
