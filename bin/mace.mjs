#!/usr/bin/env node
// The `mace` command line.
// - `mace generate`: one request on a model (bench/generate.ts), text streamed to stdout, or one
//   JSON object with --json. Node + Dawn by default, headless Chromium with --browser.
// - `mace train`: DPO (pairs) or KTO (unpaired thumbs) training of a LoRA adapter (bench/train.ts): the metric curve on stdout, a
//   line per step (or one JSON object with --json); PEFT files with --out DIR. `mace train
//   --synthetic ID` times one DPO step on a synthetic model instead (the training-step benchmark).
// - `mace bench decode`: the inference benchmark (bench/decode.ts), Node + Dawn by default.
// - `mace bench serve`: the serving benchmark (bench/serve/): a trace replayed under each scheduling
//   policy; headless Chromium by default.
// - `mace bench prefix`: the prefix-cache benchmark (bench/prefix.ts): multi-turn and shared-system-
//   prompt traces with the cache off and on; headless Chromium by default.
// - `mace bench prune`: the KV-pruning experiment on the CPU reference (bench/prune.ts).
// - `mace bench all`: every benchmark on real-model shapes, one file each (bin/bench-all.mjs).
// - `mace serve`: an OpenAI-compatible HTTP server on the engine (bin/serve.mjs, src/server/).
// - `mace adapters push`: load a PEFT adapter into a vLLM-style server (bin/adapters-push.mjs).
// - `mace bench kernels`: bench/kernels.ts in headless Chromium (a Vite dev server serves
//   bench/index.html, Playwright drives it) or, with --node, in Node through Dawn.
// Results go to stdout; progress and errors to stderr. Exit 0 ok, 1 failure, 2 bad command line.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { USAGE, UsageError, parseArgs } from './args.mjs';
import { runBenchInChromium, runBenchInNode, runDecodeBench, runDriftBench, runGenerate, runPrefixBench, runPruneBench, runServeBench, runTrain, runTrainStepBench } from './bench-runners.mjs';
import { checkModelDir, resolveModelArg } from './model-source.mjs';
import { benchAll } from './bench-all.mjs';
import { serve } from './serve.mjs';
import { pushAdapter } from './adapters-push.mjs';

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
  const benchOpts = { model, formats: opts.dtypes, batches: opts.batches, promptTokens: opts.promptTokens, tokens: opts.tokens, plans: opts.plans, kvWindows: opts.kvWindows };
  const { result, markdown } = await runDecodeBench(opts.runtime, benchOpts, log);
  writeOut(opts.out, result);
  process.stdout.write(opts.json ? JSON.stringify(result, null, 2) + '\n' : markdown);
}

/** A trace file parsed as JSON (validated against the trace format in the page/Node run). */
function readTrace(file) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`--trace ${file} cannot be read: ${e.code === 'ENOENT' ? 'it does not exist' : e.message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UsageError(`--trace ${file} is not JSON: ${e.message}`);
  }
}

async function benchServe(opts) {
  const trace = opts.trace ? readTrace(opts.trace) : undefined;
  const benchOpts = {
    model: opts.model, format: opts.dtype, policies: opts.policies, rates: opts.rates, trace,
    traceParams: { seed: opts.seed, durationS: opts.duration, ratePerS: opts.load, promptTokens: opts.promptTokens, answerTokens: opts.answerTokens },
    budgetTbtMultiple: opts.budgetMultiple, rank: opts.rank, horizonFactor: opts.horizon, ablations: opts.ablations, maxSeqs: opts.maxSeqs, keepRecords: opts.records !== undefined, unloaded: opts.unloaded,
  };
  const result = await runServeBench(opts.runtime, benchOpts, log);
  if (opts.records) {
    // The raw records go to their own file: the result JSON stays small.
    writeOut(opts.records, { runs: result.runs.map((r) => ({ policy: r.metrics.policy, ablation: r.metrics.ablation, retrainRate: r.metrics.retrainRate, budgetMs: r.budgetMs, ...r.records })) });
    for (const r of result.runs) delete r.records;
  }
  writeOut(opts.out, result);
  process.stdout.write(opts.json ? JSON.stringify(result, null, 2) + '\n' : result.markdown + '\n');
}

async function benchPrefix(opts) {
  const { command: _c, runtime, json, out, dtype, ...rest } = opts;
  const result = await runPrefixBench(runtime, { ...rest, format: dtype }, log);
  writeOut(out, result);
  process.stdout.write(json ? JSON.stringify(result, null, 2) + '\n' : result.markdown + '\n');
}

async function benchPrune(opts) {
  const { command: _c, json, out, model, ...rest } = opts;
  const spec = resolveModelArg(model);
  if (spec.kind !== 'dir') throw new UsageError(`bench prune --model takes a local directory, got '${model}'`);
  checkModelDir(spec);
  const result = await runPruneBench(spec.dir, rest, log);
  writeOut(out, result);
  process.stdout.write(json ? JSON.stringify(result, null, 2) + '\n' : result.markdown + '\n');
}

/** A preference file's text; a missing or unreadable file is an error naming it. */
function readTextFile(file, what) {
  try {
    return { file, content: readFileSync(file, 'utf8') };
  } catch (e) {
    const err = new Error(`${what} file ${file} cannot be read: ${e.code === 'ENOENT' ? 'it does not exist' : e.message}`);
    err.name = 'TrainFileError';
    err.code = 'train-file';
    throw err;
  }
}

const f4 = (x) => (Number.isFinite(x) ? x.toFixed(4) : String(x));

function stepLine(m) {
  const skip = m.skipped ? ' SKIPPED (non-finite gradient)' : '';
  if ('kl' in m) return `step ${String(m.step).padStart(4)}  loss ${f4(m.loss)}  kl ${f4(m.kl)}  rewards/chosen ${f4(m['rewards/chosen'])}  rewards/rejected ${f4(m['rewards/rejected'])}  grad_norm ${f4(m.grad_norm)}  lr ${m.learning_rate.toExponential(2)}${skip}\n`;
  return `step ${String(m.step).padStart(4)}  loss ${f4(m.loss)}  rewards/accuracies ${m['rewards/accuracies'].toFixed(2)}  rewards/margins ${f4(m['rewards/margins'])}  grad_norm ${f4(m.grad_norm)}  lr ${m.learning_rate.toExponential(2)}${skip}\n`;
}

function evalLine(label, e) {
  return `held-out ${label}: loss ${f4(e.loss)}  rewards/accuracies ${e['rewards/accuracies'].toFixed(3)} (ties ${e.ties}/${e.pairs}, ties as half ${e.accuracy_ties_half.toFixed(3)})  rewards/margins ${f4(e['rewards/margins'])}  rewards/chosen ${f4(e['rewards/chosen'])}  rewards/rejected ${f4(e['rewards/rejected'])}\n`;
}

function ktoEvalLine(label, e) {
  const acc = e.reward_accuracy === null ? 'n/a (no held-out prompt has both labels)' : `${e.reward_accuracy.toFixed(3)} (strict ${e.reward_accuracy_strict.toFixed(3)}, ${e.reward_ties} ties of ${e.reward_pairs} same-prompt couples)`;
  return `held-out ${label}: reward accuracy ${acc}  loss ${f4(e.loss)}  kl ${f4(e.kl)}  rewards/chosen ${f4(e['rewards/chosen'])}  rewards/rejected ${f4(e['rewards/rejected'])}  rewards/margins ${f4(e['rewards/margins'])}  (${e.examples} examples)\n`;
}

function storiesText(s) {
  const lines = [`rule: ${s.rule.description}`, `held-out prompts: greedy mean rule score ${s.greedyMeanBefore.toFixed(3)} before -> ${s.greedyMeanAfter.toFixed(3)} after`];
  if (s.sampled) lines.push(`held-out prompts, ${s.sampled.perPrompt} samples each at temperature 1: share preferred ${s.sampled.meanBefore.toFixed(3)} before -> ${s.sampled.meanAfter.toFixed(3)} after`);
  for (const c of s.greedy) lines.push(`  ${JSON.stringify(c.prompt)}`, `    before [${c.scoreBefore}]: ${JSON.stringify(c.before)}`, `    after  [${c.scoreAfter}]: ${JSON.stringify(c.after)}`);
  return lines.join('\n') + '\n';
}

function writePeft(dir, peft) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'adapter_model.safetensors'), Buffer.from(peft.weightsBase64, 'base64'));
  writeFileSync(join(dir, 'adapter_config.json'), peft.config + '\n');
  log(`wrote ${join(dir, 'adapter_model.safetensors')} and ${join(dir, 'adapter_config.json')}`);
}

/** --save-thumbs DIR: the generated thumbs as TRL KTO JSONL (train.jsonl, heldout.jsonl). */
function writeThumbs(dir, thumbs) {
  mkdirSync(dir, { recursive: true });
  for (const [name, list] of [['train.jsonl', thumbs.train], ['heldout.jsonl', thumbs.heldOut]]) {
    writeFileSync(join(dir, name), list.map((r) => JSON.stringify(r)).join('\n') + '\n');
    log(`wrote ${list.length} thumbs to ${join(dir, name)}`);
  }
}

async function train(opts) {
  const spec = resolveModelArg(opts.model);
  checkModelDir(spec);
  const request = {
    dtype: opts.dtype,
    pairs: opts.pairs ? readTextFile(opts.pairs, '--pairs') : undefined,
    eval: opts.eval ? readTextFile(opts.eval, '--eval') : undefined,
    thumbs: opts.thumbs ? readTextFile(opts.thumbs, '--thumbs') : undefined,
    evalThumbs: opts.evalThumbs ? readTextFile(opts.evalThumbs, '--eval-thumbs') : undefined,
    desirableWeight: opts.desirableWeight,
    undesirableWeight: opts.undesirableWeight,
    evalEvery: opts.evalEvery,
    returnThumbs: opts.saveThumbs !== undefined || undefined,
    eos: opts.noEos ? false : undefined,
    stories: opts.stories ? { samplesPerPrompt: opts.samples, tokens: opts.tokens, rejectedPerChosen: opts.rejectedPerChosen, thumbs: opts.thumbsFromStories || undefined } : undefined,
    steps: opts.steps,
    epochs: opts.epochs,
    batch: opts.batch,
    lr: opts.lr,
    warmup: opts.warmup,
    beta: opts.beta,
    rank: opts.rank,
    alpha: opts.alpha,
    seed: opts.seed,
    maxTokens: opts.maxLength,
    exportPeft: opts.out !== undefined,
  };
  // With --json the curve still shows as progress, on stderr.
  const onStep = opts.json ? (m) => process.stderr.write(stepLine(m)) : (m) => writeText(stepLine(m));
  const result = await runTrain(opts.runtime, spec, request, onStep, log);
  const { peft, thumbs, ...report } = result;
  if (opts.out) writePeft(opts.out, peft);
  if (opts.saveThumbs) writeThumbs(opts.saveThumbs, thumbs);
  const kto = report.method === 'kto';
  for (const s of kto ? report.examples.skipped : report.pairs.skipped) log(`skipped ${s.name}: ${s.reason}`);
  if (opts.json) {
    process.stdout.write(JSON.stringify(report) + '\n');
    return;
  }
  const line = kto ? ktoEvalLine : evalLine;
  if (report.before) await writeText(line('before', report.before));
  if (report.after) await writeText(line('after ', report.after));
  if (report.stories) await writeText(storiesText(report.stories));
  const t = report.timing;
  log(`${report.steps.length} steps (${report.nonFiniteSteps} non-finite, skipped) in ${(t.trainMs / 1000).toFixed(1)} s: ${t.msPerStep.toFixed(0)} ms/step, ${t.tokensPerSec.toFixed(1)} forward+backward tokens/s; arena ${(report.arenaBytes / 2 ** 20).toFixed(1)} MiB`);
}

/** `train --synthetic`: one DPO step's cost on a synthetic model (bench/train-step.ts runTrainStepBench). */
async function trainStepBench(opts) {
  // One run per kernel plan (--plan fused,unfused compares them in one command, plan by plan).
  const runs = [];
  for (const plan of opts.plans) {
    const benchOpts = { model: opts.synthetic, dtype: opts.dtype, steps: opts.steps, rank: opts.rank, seed: opts.seed, promptTokens: opts.promptTokens, responseTokens: opts.responseTokens, plan };
    runs.push(await runTrainStepBench(opts.runtime, benchOpts, log));
  }
  if (runs.length === 1) {
    process.stdout.write(opts.json ? JSON.stringify(runs[0].result, null, 2) + '\n' : runs[0].markdown);
    return;
  }
  const byPlan = Object.fromEntries(runs.map((r) => [r.result.plan, r.result.summary.stepMs]));
  const speedup = byPlan.unfused && byPlan.fused ? byPlan.unfused / byPlan.fused : undefined;
  if (opts.json) process.stdout.write(JSON.stringify({ runs: runs.map((r) => r.result), stepSpeedupFusedOverUnfused: speedup }, null, 2) + '\n');
  else process.stdout.write(runs.map((r) => `### plan ${r.result.plan}\n\n${r.markdown}`).join('\n') + (speedup ? `\nDPO step, unfused ÷ fused: ${speedup.toFixed(2)}×\n` : ''));
}

/** `bench drift`: the MACE experiment (bench/drift/run.ts); --plot DIR writes its SVG charts. */
async function benchDrift(opts) {
  const spec = resolveModelArg(opts.model ?? fileURLToPath(new URL('../public/models/stories260K', import.meta.url)));
  checkModelDir(spec);
  const result = await runDriftBench(opts.runtime, spec, opts.options, log);
  if (opts.plot) {
    mkdirSync(opts.plot, { recursive: true });
    for (const [name, svg] of Object.entries(result.plots)) writeFileSync(join(opts.plot, name), svg);
    log(`wrote ${Object.keys(result.plots).length} charts to ${opts.plot}`);
  }
  writeOut(opts.out, result);
  process.stdout.write(opts.json ? JSON.stringify(result, null, 2) + '\n' : result.markdown + '\n');
}

/** `bench all`: every benchmark, one file each in --out DIR (bin/bench-all.mjs). */
async function benchAllCommand(opts) {
  const index = await benchAll(opts, log);
  const failed = index.parts.filter((p) => !p.ok);
  log(`bench all: ${index.parts.length - failed.length}/${index.parts.length} parts in ${index.wallS.toFixed(0)} s; results in ${opts.out}`);
  if (opts.json) process.stdout.write(JSON.stringify(index, null, 2) + '\n');
  if (failed.length) throw new Error(`bench all: ${failed.map((p) => `${p.name} (${p.error})`).join('; ')}`);
}

/** `adapters push`: the server's reply on stdout. */
async function adaptersPush(opts) {
  const reply = await pushAdapter(opts, log);
  process.stdout.write(reply.endsWith('\n') ? reply : `${reply}\n`);
}

const COMMANDS = { serve: (opts) => serve(opts, log), 'adapters-push': adaptersPush, 'bench-kernels': benchKernels, generate, 'bench-decode': benchDecode, 'bench-serve': benchServe, 'bench-prefix': benchPrefix, 'bench-prune': benchPrune, 'bench-all': benchAllCommand, 'bench-drift': benchDrift, train, 'train-step-bench': trainStepBench };

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
