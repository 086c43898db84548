// Command-line parsing of `mace`: plain data in, plain data out, so it is easy to read and test.

export const USAGE = `Usage: mace <command> [options]

Commands:
  bench kernels    Benchmark the GPU kernels: copy bandwidth, decode GEMV (M = 1, 4) and
                   prefill GEMM (M = 128) in f32/f16/q4 on SmolLM2-135M and Llama-3.2-1B shapes.
                   Prints a markdown table (weight GB/s, roofline = GB/s / copy GB/s).
  help             Show this help.

Options of \`bench kernels\`:
  --quick          SmolLM2-135M only, fewer iterations and GEMM shapes.
  --json           Print only the result JSON on stdout (progress goes to stderr).
  --node           Run in Node through Dawn (the \`webgpu\` package) instead of headless Chromium.
  --out FILE       Also write the result JSON to FILE.
  -h, --help       Show this help.

Environment:
  MACE_CHROMIUM    Chromium binary to use (default: /usr/bin/chromium, Debian package \`chromium\`).
`;

export class UsageError extends Error {}

/**
 * argv (without node and the script) -> { command: 'help' } or
 * { command: 'bench-kernels', json, quick, node, out }. Throws UsageError on anything unknown.
 */
export function parseArgs(argv) {
  const positional = [];
  const flags = { json: false, quick: false, node: false, out: undefined, help: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') flags.help = true;
    else if (a === '--json') flags.json = true;
    else if (a === '--quick') flags.quick = true;
    else if (a === '--node') flags.node = true;
    else if (a === '--out' || a.startsWith('--out=')) {
      const value = a === '--out' ? argv[++i] : a.slice('--out='.length);
      if (!value || value.startsWith('-')) throw new UsageError('--out needs a file name');
      flags.out = value;
    } else if (a.startsWith('-')) throw new UsageError(`unknown option '${a}'`);
    else positional.push(a);
  }
  if (flags.help || positional.length === 0 || (positional.length === 1 && positional[0] === 'help')) return { command: 'help' };
  if (positional[0] === 'bench' && positional[1] === 'kernels' && positional.length === 2) {
    return { command: 'bench-kernels', json: flags.json, quick: flags.quick, node: flags.node, out: flags.out };
  }
  throw new UsageError(`unknown command '${positional.join(' ')}'`);
}
