#!/usr/bin/env node
// The `mace` command line.
// - `mace generate`: one request on a model (bench/generate.ts), text streamed to stdout, or one
//   JSON object with --json. Node + Dawn by default, headless Chromium with --browser.
// - `mace bench decode`: the inference benchmark (bench/decode.ts), Node + Dawn by default.
// - `mace bench kernels`: bench/kernels.ts in headless Chromium (a Vite dev server serves
//   bench/index.html, Playwright drives it) or, with --node, in Node through Dawn.
// Results go to stdout; progress and errors to stderr. Exit 0 ok, 1 failure, 2 bad command line.
import { writeFileSync } from 'node:fs';
import { USAGE, UsageError, parseArgs } from './args.mjs';
import { runBenchInChromium, runBenchInNode, runDecodeBench, runGenerate } from './bench-runners.mjs';
import { checkModelDir, resolveModelArg } from './model-source.mjs';

const log = (msg) => process.stderr.write(`${msg}\n`);

function writeOut(file, result) {
  if (!file) return;
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  log(`wrote ${file}`);
}

async function benchKernels(opts) {
  const benchOpts = { quick: opts.quick };
  const { result, markdown } = opts.node ? await runBenchInNode(benchOpts, log) : await runBenchInChromium(benchOpts, log);
  writeOut(opts.out, result);
  process.stdout.write(opts.json ? JSON.stringify(result, null, 2) + '\n' : markdown);
}

/** stdout.write that waits when the pipe is full, so streamed text keeps its order and nothing is lost. */
function writeText(text) {
  return new Promise((resolve) => {
    if (process.stdout.write(text)) resolve();
    else process.stdout.once('drain', resolve);
  });
}

async function generate(opts) {
  const spec = resolveModelArg(opts.model);
  checkModelDir(spec);
  const request = { prompt: opts.prompt, messages: opts.messages, maxTokens: opts.maxTokens, temperature: opts.temperature, topP: opts.topP, seed: opts.seed, dtype: opts.dtype };
  let last = '';
  const onText = opts.json ? () => {} : (t) => ((last = t), writeText(t));
  const result = await runGenerate(opts.runtime, spec, request, onText, log);
  if (opts.json) {
    process.stdout.write(JSON.stringify(result) + '\n');
    return;
  }
  if (!last.endsWith('\n')) await writeText('\n');
  const u = result.usage;
  log(`[${result.finish_reason}] ${u.prompt_tokens} prompt + ${u.completion_tokens} generated tokens; TTFT ${u.ttft_ms.toFixed(0)} ms, prefill ${u.prefill_tokens_per_s.toFixed(1)} tok/s, decode ${u.decode_tokens_per_s.toFixed(1)} tok/s`);
}

async function benchDecode(opts) {
  const known = ['stories260k', 'smollm2-135m'];
  let model = opts.model.toLowerCase();
  if (!known.includes(model)) {
    model = resolveModelArg(opts.model);
    if (model.kind !== 'dir') throw new UsageError(`bench decode --model takes ${known.join(', ')} or a local directory, got '${opts.model}'`);
    checkModelDir(model);
  }
  const benchOpts = { model, formats: opts.dtypes, batches: opts.batches, promptTokens: opts.promptTokens, tokens: opts.tokens };
  const { result, markdown } = await runDecodeBench(opts.runtime, benchOpts, log);
  writeOut(opts.out, result);
  process.stdout.write(opts.json ? JSON.stringify(result, null, 2) + '\n' : markdown);
}

const COMMANDS = { 'bench-kernels': benchKernels, generate, 'bench-decode': benchDecode };

function usageFailure(e) {
  log(`mace: ${e.message}\n`);
  log(USAGE);
  return 2;
}

async function main() {
  let cmd;
  try {
    cmd = parseArgs(process.argv.slice(2));
  } catch (e) {
    if (e instanceof UsageError) return usageFailure(e);
    throw e;
  }
  if (cmd.command === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  try {
    await COMMANDS[cmd.command](cmd);
  } catch (e) {
    if (e instanceof UsageError) return usageFailure(e);
    throw e;
  }
  return 0;
}

/** `Name (code): message` for typed errors, the message alone for plain ones. */
function describeError(e) {
  if (!(e instanceof Error)) return String(e);
  const name = e.name && e.name !== 'Error' ? e.name : '';
  const code = typeof e.code === 'string' ? e.code : '';
  const head = name && code ? `${name} (${code})` : name || (code ? `(${code})` : '');
  return head ? `${head}: ${e.message}` : e.message;
}

main().then(
  // Exit explicitly: Dawn and the dev server can keep handles open after the work is done.
  (code) => process.stdout.write('', () => process.exit(code)),
  (e) => {
    log(`mace: ${describeError(e)}`);
    if (process.env.MACE_DEBUG && (e?.pageStack || e?.stack)) log(e.pageStack ?? e.stack);
    process.stdout.write('', () => process.exit(1));
  },
);
