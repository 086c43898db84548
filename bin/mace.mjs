#!/usr/bin/env node
// The `mace` command line. `mace bench kernels` runs bench/kernels.ts in headless Chromium (a Vite
// dev server serves bench/index.html, Playwright drives it) or, with --node, in Node through Dawn.
// Output: a markdown table, or with --json only the result JSON on stdout; progress on stderr.
import { writeFileSync } from 'node:fs';
import { USAGE, UsageError, parseArgs } from './args.mjs';
import { runBenchInChromium, runBenchInNode } from './bench-runners.mjs';

const log = (msg) => process.stderr.write(`${msg}\n`);

async function benchKernels(opts) {
  const benchOpts = { quick: opts.quick };
  const { result, markdown } = opts.node ? await runBenchInNode(benchOpts, log) : await runBenchInChromium(benchOpts, log);
  if (opts.out) {
    writeFileSync(opts.out, JSON.stringify(result, null, 2) + '\n');
    log(`wrote ${opts.out}`);
  }
  process.stdout.write(opts.json ? JSON.stringify(result, null, 2) + '\n' : markdown);
}

async function main() {
  let cmd;
  try {
    cmd = parseArgs(process.argv.slice(2));
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    log(`mace: ${e.message}\n`);
    log(USAGE);
    return 2;
  }
  if (cmd.command === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  await benchKernels(cmd);
  return 0;
}

main().then(
  // Exit explicitly: Dawn and the dev server can keep handles open after the work is done.
  (code) => process.stdout.write('', () => process.exit(code)),
  (e) => {
    log(`mace: ${e?.message ?? e}`);
    if (process.env.MACE_DEBUG && e?.stack) log(e.stack);
    process.exit(1);
  },
);
