// The two runtimes of the CLI: headless Chromium on a page of a Vite dev server (Playwright drives
// it), or Node through Dawn (the `webgpu` package) with Vite's SSR loader. `bench kernels` runs
// bench/kernels.ts, `bench decode` bench/decode.ts, `generate` bench/generate.ts and `train`
// bench/train.ts in either.
import { existsSync, readFileSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { SWIFTSHADER_ICD, chromiumArgs, findChromium } from '../scripts/chromium.mjs';
import { MODEL_PREFIX, modelDirPlugin } from './model-source.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Vite's logger, but on stderr and without the dev-server chatter: stdout is the command's output. */
function stderrLogger(log) {
  const seen = new Set();
  const logger = {
    hasWarned: false,
    info() {},
    warn(msg) {
      logger.hasWarned = true;
      log(`[vite] ${msg}`);
    },
    warnOnce(msg) {
      if (!seen.has(msg)) {
        seen.add(msg);
        logger.warn(msg);
      }
    },
    error(msg) {
      log(`[vite] ${msg}`);
    },
    clearScreen() {},
    hasErrorLogged: () => false,
  };
  return logger;
}

/** A free TCP port on 127.0.0.1 (the OS picks it). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createNetServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function viteServer(log, server, plugins = []) {
  const { createServer } = await import('vite');
  return createServer({
    root,
    configFile: join(root, 'vite.config.ts'),
    customLogger: stderrLogger(log),
    clearScreen: false,
    server,
    plugins,
  });
}

/**
 * Headless system Chromium on a page of the CLI's Vite dev server: `fn(page, server, origin)` runs
 * once `readyFn` (a window function the page defines) exists. Extra Vite plugins (a model
 * directory) and Playwright bindings (`expose`: name -> function) are set up first.
 */
export async function withChromiumPage(log, { path, readyFn, plugins = [], expose = {} }, fn) {
  const executablePath = findChromium();
  if (!executablePath) {
    throw new Error(
      process.env.MACE_CHROMIUM
        ? `MACE_CHROMIUM='${process.env.MACE_CHROMIUM}' does not exist`
        : "no Chromium found: install Debian's `chromium` package (apt-get install chromium), set MACE_CHROMIUM, or use --node",
    );
  }
  const port = await freePort();
  // No HMR and no file watching: an edit to a source file mid-run must not reload the page.
  const server = await viteServer(log, { host: '127.0.0.1', port, strictPort: true, hmr: false, watch: null }, plugins);
  let browser;
  try {
    await server.listen();
    const { chromium } = await import('playwright');
    // Developer features turn off Chromium's 100 µs quantization of GPU timestamps.
    browser = await chromium.launch({ executablePath, args: [...chromiumArgs(), '--enable-webgpu-developer-features'], headless: true });
    const page = await browser.newPage();
    page.on('pageerror', (e) => log(`[page] ${e.message}`));
    page.on('console', (m) => {
      // The loader probes optional model files (shard index, generation config): their 404s are expected.
      if (m.type() === 'error' && (m.location()?.url ?? '').includes(MODEL_PREFIX) && /status of 404/.test(m.text())) return;
      if (m.type() === 'error' || m.type() === 'warning') log(`[page ${m.type()}] ${m.text()}`);
    });
    for (const [name, f] of Object.entries(expose)) await page.exposeFunction(name, f);
    const origin = `http://127.0.0.1:${port}`;
    log(`page ${origin}${path} in ${executablePath}`);
    await page.goto(origin + path);
    await page.waitForFunction((name) => typeof window[name] === 'function', readyFn, { timeout: 60_000 });
    return await fn(page, server, origin);
  } finally {
    await browser?.close();
    await server.close();
  }
}

/** Headless system Chromium opens bench/index.html from a Vite dev server and calls window.maceBench. */
export async function runBenchInChromium(benchOpts, log) {
  const maceProgress = (message, fraction) => log(`[${String(Math.round(100 * fraction)).padStart(3)}%] ${message}`);
  return withChromiumPage(log, { path: '/bench/index.html', readyFn: 'maceBench', expose: { maceProgress } }, async (page, server) => {
    const result = await page.evaluate((opts) => window.maceBench(opts), benchOpts);
    const { benchToMarkdown } = await server.ssrLoadModule('/bench/report.ts');
    return { result, markdown: benchToMarkdown(result) };
  });
}

/** Whether the Vulkan loader Dawn needs can be found. */
function haveLibVulkan() {
  try {
    return /libvulkan\.so\.1/.test(execFileSync('ldconfig', ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
  } catch {
    return ['/usr/lib/x86_64-linux-gnu/libvulkan.so.1', '/usr/lib/aarch64-linux-gnu/libvulkan.so.1', '/usr/lib/libvulkan.so.1'].some((p) => existsSync(p));
  }
}

const NEED_LIBVULKAN = "Dawn (the `webgpu` package) needs the Vulkan loader: install Debian's `libvulkan1` package (apt-get install libvulkan1)";

/** A GPU object from Dawn (the `webgpu` package), with SwiftShader as the Vulkan driver when none is set. */
async function dawnGpu(log) {
  if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD)) {
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    log(`VK_ICD_FILENAMES unset: using Chromium's SwiftShader Vulkan driver (${SWIFTSHADER_ICD})`);
  }
  try {
    const { create, globals } = await import('webgpu');
    Object.assign(globalThis, globals);
    return create([]);
  } catch (e) {
    throw new Error(`${/vulkan/i.test(String(e?.message)) || !haveLibVulkan() ? NEED_LIBVULKAN : 'cannot load the `webgpu` package'}: ${e?.message ?? e}`);
  }
}

/**
 * Dawn in this process: `fn(server, ctx)` with a GpuContext and Vite's SSR loader (so the
 * TypeScript sources and their ?raw WGSL imports load as in the browser).
 */
export async function withNodeGpu(log, label, fn) {
  const gpu = await dawnGpu(log);
  return withSsr(log, async (server) => {
    const { acquireGpu, describeGpu } = await server.ssrLoadModule('/src/gpu/device.ts');
    let ctx;
    try {
      ctx = await acquireGpu({ gpu, label });
    } catch (e) {
      if (e?.code === 'no-adapter' && !haveLibVulkan()) throw new Error(`${NEED_LIBVULKAN} (${e.message})`);
      throw e;
    }
    try {
      log(`GPU: ${describeGpu(ctx)}`);
      return await fn(server, ctx);
    } finally {
      ctx.destroy();
    }
  });
}

/** `fn(server)` with Vite's SSR loader in this process (TypeScript sources and ?raw WGSL imports), closed after. */
async function withSsr(log, fn) {
  const server = await viteServer(log, { middlewareMode: true, hmr: false, ws: false, watch: null });
  try {
    return await fn(server);
  } finally {
    await server.close();
  }
}

/** Dawn in this process runs bench/kernels.ts, loaded through Vite's SSR loader (so ?raw WGSL imports work). */
export async function runBenchInNode(benchOpts, log) {
  return withNodeGpu(log, 'mace bench (node)', async (server, ctx) => {
    const bench = await server.ssrLoadModule('/bench/kernels.ts');
    const onProgress = (message, fraction) => log(`[${String(Math.round(100 * fraction)).padStart(3)}%] ${message}`);
    const result = await bench.runKernelBench(ctx, { ...benchOpts, env: 'node', onProgress });
    return { result, markdown: bench.benchToMarkdown(result) };
  });
}

// ---------------------------------------------------------------- generate and bench decode

/** The page's { ok: false, error } as a thrown Error that keeps the typed error's name and code. */
function pageFailure(error) {
  const e = new Error(error.message);
  e.name = error.name;
  if (error.code) e.code = error.code;
  if (error.stack) e.pageStack = error.stack;
  return e;
}

/** A model spec (resolveModelArg) as a ModelSource in Node. */
export async function nodeSource(server, spec) {
  if (spec.kind === 'dir') return (await server.ssrLoadModule('/src/model/source-node.ts')).sourceFromDirectory(spec.dir);
  const { sourceFromUrl, sourceFromHub } = await server.ssrLoadModule('/src/model/source.ts');
  return spec.kind === 'url' ? sourceFromUrl(spec.url) : sourceFromHub(spec.repo);
}

/** A model spec as the page sees it: a local directory becomes a URL of the dev server. */
export function pageModel(spec, origin) {
  if (spec.kind === 'dir') return { kind: 'url', url: origin + MODEL_PREFIX, name: spec.dir };
  return spec;
}

/**
 * Run one generation (bench/generate.ts) in Node or Chromium. `onText` gets the text deltas in
 * order; resolves with the GenerateResult.
 */
export async function runGenerate(runtime, spec, request, onText, log) {
  if (runtime === 'node') {
    return withNodeGpu(log, 'mace generate (node)', async (server, ctx) => {
      const { runGenerate: run } = await server.ssrLoadModule('/bench/generate.ts');
      return run(ctx, await nodeSource(server, spec), request, { onText, onLog: log });
    });
  }
  const plugins = spec.kind === 'dir' ? [modelDirPlugin(spec.dir)] : [];
  const expose = { maceText: (t) => onText(t), maceLog: (m) => log(m) };
  return withChromiumPage(log, { path: '/bench/decode.html', readyFn: 'maceGenerate', plugins, expose }, async (page, _server, origin) => {
    const out = await page.evaluate(([m, r]) => window.maceGenerate(m, r), [pageModel(spec, origin), request]);
    if (!out.ok) throw pageFailure(out.error);
    return out.result;
  });
}

/**
 * Run the inference benchmark (bench/decode.ts). `opts.model` is a synthetic model id or a
 * directory spec. Resolves with { result, markdown }.
 */
export async function runDecodeBench(runtime, opts, log) {
  const synthetic = typeof opts.model === 'string';
  if (runtime === 'node') {
    return withNodeGpu(log, 'mace bench decode (node)', async (server, ctx) => {
      const bench = await server.ssrLoadModule('/bench/decode.ts');
      const model = synthetic ? opts.model : { source: await nodeSource(server, opts.model), name: opts.model.dir };
      const result = await bench.runDecodeBench(ctx, { ...opts, model, env: 'node', onProgress: log });
      return { result, markdown: bench.decodeToMarkdown(result) };
    });
  }
  const plugins = synthetic ? [] : [modelDirPlugin(opts.model.dir)];
  return withChromiumPage(log, { path: '/bench/decode.html', readyFn: 'maceDecodeBench', plugins, expose: { maceLog: (m) => log(m) } }, async (page, server, origin) => {
    const model = synthetic ? opts.model : pageModel(opts.model, origin);
    const out = await page.evaluate((o) => window.maceDecodeBench(o), { ...opts, model });
    if (!out.ok) throw pageFailure(out.error);
    const { decodeToMarkdown } = await server.ssrLoadModule('/bench/decode-report.ts');
    return { result: out.result, markdown: decodeToMarkdown(out.result) };
  });
}

// ---------------------------------------------------------------- train

/**
 * Run DPO training (bench/train.ts) in Node or Chromium. `onStep` gets each step's metrics in
 * order; resolves with the TrainResult.
 */
export async function runTrain(runtime, spec, request, onStep, log) {
  if (runtime === 'cpu') {
    // No GPU: the CPU references, loaded through Vite's SSR loader like the Node runtime.
    return withSsr(log, async (server) => {
      const { trainOn } = await server.ssrLoadModule('/bench/train.ts');
      const { cpuTrainBackend } = await server.ssrLoadModule('/bench/train-cpu.ts');
      const backend = await cpuTrainBackend(await nodeSource(server, spec));
      log(`device: ${backend.device}`);
      return trainOn(backend, request, { onStep, onLog: log });
    });
  }
  if (runtime === 'node') {
    return withNodeGpu(log, 'mace train (node)', async (server, ctx) => {
      const { runTrain: run } = await server.ssrLoadModule('/bench/train.ts');
      return run(ctx, await nodeSource(server, spec), request, { onStep, onLog: log });
    });
  }
  const plugins = spec.kind === 'dir' ? [modelDirPlugin(spec.dir)] : [];
  const expose = { maceStep: (m) => onStep(m), maceLog: (m) => log(m) };
  return withChromiumPage(log, { path: '/bench/train.html', readyFn: 'maceTrain', plugins, expose }, async (page, _server, origin) => {
    const out = await page.evaluate(([m, r]) => window.maceTrain(m, r), [pageModel(spec, origin), request]);
    if (!out.ok) throw pageFailure(out.error);
    return out.result;
  });
}

/**
 * The training-step benchmark (bench/train-step.ts runTrainStepBench) on a synthetic model in Node or
 * Chromium. Resolves with { result, markdown }.
 */
export async function runTrainStepBench(runtime, opts, log) {
  if (runtime === 'node') {
    return withNodeGpu(log, 'mace train --synthetic (node)', async (server, ctx) => {
      const bench = await server.ssrLoadModule('/bench/train-step.ts');
      const result = await bench.runTrainStepBench(ctx, opts, log);
      return { result, markdown: bench.trainStepToMarkdown(result) };
    });
  }
  return withChromiumPage(log, { path: '/bench/train.html', readyFn: 'maceTrainStepBench', expose: { maceLog: (m) => log(m) } }, async (page, server) => {
    const out = await page.evaluate((o) => window.maceTrainStepBench(o), opts);
    if (!out.ok) throw pageFailure(out.error);
    const { trainStepToMarkdown } = await server.ssrLoadModule('/bench/train-step.ts');
    return { result: out.result, markdown: trainStepToMarkdown(out.result) };
  });
}

// ---------------------------------------------------------------- serve

/**
 * The serving benchmark (bench/serve/run.ts) in Node or Chromium. `opts.trace` is the parsed trace
 * (or undefined). Resolves with the ServeBenchResult (markdown included).
 */
export async function runServeBench(runtime, opts, log) {
  if (runtime === 'node') {
    return withNodeGpu(log, 'mace bench serve (node)', async (server, ctx) => {
      const bench = await server.ssrLoadModule('/bench/serve/run.ts');
      return bench.runServeBench(ctx, { ...opts, env: 'node', onProgress: log });
    });
  }
  return withChromiumPage(log, { path: '/bench/serve.html', readyFn: 'maceServeBench', expose: { maceLog: (m) => log(m) } }, async (page) => {
    const out = await page.evaluate((o) => window.maceServeBench(o), opts);
    if (!out.ok) throw pageFailure(out.error);
    return out.result;
  });
}

// ---------------------------------------------------------------- prefix

/** The prefix-cache benchmark (bench/prefix.ts) in Node or Chromium; resolves with its result (markdown included). */
export async function runPrefixBench(runtime, opts, log) {
  if (runtime === 'node') {
    return withNodeGpu(log, 'mace bench prefix (node)', async (server, ctx) => {
      const bench = await server.ssrLoadModule('/bench/prefix.ts');
      return bench.runPrefixBench(ctx, { ...opts, env: 'node', onProgress: log });
    });
  }
  return withChromiumPage(log, { path: '/bench/prefix.html', readyFn: 'macePrefixBench', expose: { maceLog: (m) => log(m) } }, async (page) => {
    const out = await page.evaluate((o) => window.macePrefixBench(o), opts);
    if (!out.ok) throw pageFailure(out.error);
    return out.result;
  });
}

// ---------------------------------------------------------------- prune

/**
 * The KV-pruning experiment (bench/prune.ts) on the CPU reference: a model directory's files read
 * here (a single model.safetensors), the experiment loaded through Vite's SSR loader. Resolves with
 * its result (markdown included).
 */
export async function runPruneBench(dir, opts, log) {
  const read = (f) => {
    try {
      return readFileSync(join(dir, f));
    } catch (e) {
      const err = new Error(`model file '${f}': ${join(dir, f)} cannot be read (${e.code ?? e.message}); bench prune needs config.json, model.safetensors, tokenizer.json and tokenizer_config.json`);
      err.name = 'ModelFileError';
      err.code = 'model-file';
      throw err;
    }
  };
  const files = { name: basename(dir), config: read('config.json').toString('utf8'), safetensors: new Uint8Array(read('model.safetensors')), tokenizer: read('tokenizer.json').toString('utf8'), tokenizerConfig: read('tokenizer_config.json').toString('utf8') };
  return withSsr(log, async (server) => {
    const bench = await server.ssrLoadModule('/bench/prune.ts');
    return bench.runPruneOnModel(files, { ...opts, onProgress: log });
  });
}

// ---------------------------------------------------------------- drift

/**
 * The drift experiment (bench/drift/run.ts) on a real model in Node or Chromium. Resolves with the
 * DriftBenchResult (markdown and SVG charts included).
 */
export async function runDriftBench(runtime, spec, opts, log) {
  if (runtime === 'node') {
    return withNodeGpu(log, 'mace bench drift (node)', async (server, ctx) => {
      const bench = await server.ssrLoadModule('/bench/drift/run.ts');
      return bench.runDriftBench(ctx, await nodeSource(server, spec), { ...opts, env: 'node', onProgress: log });
    });
  }
  const plugins = spec.kind === 'dir' ? [modelDirPlugin(spec.dir)] : [];
  return withChromiumPage(log, { path: '/bench/drift.html', readyFn: 'maceDriftBench', plugins, expose: { maceLog: (m) => log(m) } }, async (page, _server, origin) => {
    const out = await page.evaluate(([m, o]) => window.maceDriftBench(m, o), [pageModel(spec, origin), opts]);
    if (!out.ok) throw pageFailure(out.error);
    return out.result;
  });
}
