// `mace bench all`: every benchmark in one go, on real-model shapes, for the day a GPU machine is
// lent (the device tool): kernels, decode, the training step and the serving benchmark, each in its
// own runtime start, one JSON (and markdown) file per part in --out DIR plus DIR/all.json (device,
// the equivalent command of each part, wall time, failures). A failing part is recorded and the
// rest still run, so one bad kernel never costs the device time of the others.
//
// Sized for an H100-class GPU in under 8 minutes (--quick: a smoke run of the same parts on
// SwiftShader, ~10 minutes on a 2-core CPU).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runBenchInChromium, runBenchInNode, runDecodeBench, runServeBench, runTrainStepBench } from './bench-runners.mjs';

/**
 * The parts, each with the `mace` command it equals (what a person reruns to check one figure).
 * quick: the smallest run that still exercises every path (stories260K shapes, short traces).
 */
export function benchAllPlan(quick) {
  const decodeModels = quick ? ['stories260k'] : ['stories260k', 'smollm2-135m'];
  const parts = [{ name: 'kernels', kind: 'kernels', args: { quick }, command: `mace bench kernels${quick ? ' --quick' : ''} --json` }];
  for (const model of decodeModels) {
    const dtypes = ['f32', 'f16', 'q4'];
    const batches = [1, 4, 8];
    // Both kernel plans in one run: the fused plan against the plan before issue 11 on this device.
    const plans = ['fused', 'unfused'];
    parts.push({ name: `decode-${model}`, kind: 'decode', args: { model, formats: dtypes, batches, promptTokens: 16, tokens: quick ? 8 : 32, plans }, command: `mace bench decode --model ${model} --dtype ${dtypes.join(',')} --batches ${batches.join(',')} --tokens ${quick ? 8 : 32} --plan ${plans.join(',')} --json` });
  }
  const trainModels = quick ? [['stories260k', 'f32']] : [['stories260k', 'f32'], ['smollm2-135m', 'f32'], ['smollm2-135m', 'q4']];
  for (const [model, dtype] of trainModels) {
    parts.push({ name: `train-step-${model}-${dtype}`, kind: 'train-step', args: { model, dtype, steps: 2, rank: 8, seed: 1, promptTokens: 48, responseTokens: 48 }, command: `mace train --synthetic ${model} --dtype ${dtype} --steps 2 --json` });
  }
  // The DPO step with the plan before issue 11, for the speed-up on this device.
  parts.push({ name: 'train-step-stories260k-f32-unfused', kind: 'train-step', args: { model: 'stories260k', dtype: 'f32', steps: 2, rank: 8, seed: 1, promptTokens: 48, responseTokens: 48, plan: 'unfused' }, command: 'mace train --synthetic stories260k --dtype f32 --steps 2 --plan unfused --json' });
  const serveModel = quick ? 'stories260k' : 'smollm2-135m';
  const duration = quick ? 10 : 20;
  parts.push({
    name: `serve-${serveModel}`,
    kind: 'serve',
    args: { model: serveModel, format: 'f32', policies: ['mace', 'inference-only', 'periodic', 'sync'], rates: [0.3], traceParams: { seed: 1, durationS: duration, ratePerS: 2, promptTokens: { min: 8, max: 24 }, answerTokens: { min: 8, max: 24 } }, budgetTbtMultiple: 1.5, rank: 8, horizonFactor: 2, maxSeqs: 4, ablations: [] },
    command: `mace bench serve --model ${serveModel} --duration ${duration} --load 2 --max-seqs 4 --rates 0.3 --json`,
  });
  return parts;
}

async function runPart(part, runtime, log) {
  if (part.kind === 'kernels') {
    const { result, markdown } = runtime === 'node' ? await runBenchInNode(part.args, log) : await runBenchInChromium(part.args, log);
    return { result, markdown };
  }
  if (part.kind === 'decode') return runDecodeBench(runtime, part.args, log);
  if (part.kind === 'train-step') return runTrainStepBench(runtime, part.args, log);
  const result = await runServeBench(runtime, part.args, log);
  return { result, markdown: result.markdown };
}

/** Run every part; write DIR/<part>.json, DIR/<part>.md and DIR/all.json. Returns the index. */
export async function benchAll({ out, quick, runtime }, log) {
  mkdirSync(out, { recursive: true });
  const index = { started: new Date().toISOString(), runtime, quick, vkIcd: process.env.VK_ICD_FILENAMES ?? null, parts: [] };
  const t0 = Date.now();
  for (const part of benchAllPlan(quick)) {
    log(`== ${part.name}: ${part.command}${runtime === 'node' ? ' --node' : ''}`);
    const start = Date.now();
    const entry = { name: part.name, command: `${part.command}${runtime === 'node' ? ' --node' : ''}`, ok: false, wallS: 0, json: null, markdown: null, error: null };
    try {
      const { result, markdown } = await runPart(part, runtime, log);
      entry.json = `${part.name}.json`;
      writeFileSync(join(out, entry.json), JSON.stringify(result, null, 2) + '\n');
      if (markdown) {
        entry.markdown = `${part.name}.md`;
        writeFileSync(join(out, entry.markdown), markdown.endsWith('\n') ? markdown : markdown + '\n');
      }
      entry.ok = true;
    } catch (e) {
      entry.error = `${e?.name ?? 'Error'}: ${e?.message ?? String(e)}`;
      log(`   ${part.name} failed: ${entry.error}`);
    }
    entry.wallS = (Date.now() - start) / 1000;
    index.parts.push(entry);
    writeFileSync(join(out, 'all.json'), JSON.stringify({ ...index, wallS: (Date.now() - t0) / 1000 }, null, 2) + '\n');
  }
  return { ...index, wallS: (Date.now() - t0) / 1000 };
}
