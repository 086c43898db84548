// The two ways `mace bench kernels` runs bench/kernels.ts: in headless Chromium through the bench
// page, or in Node through Dawn (the `webgpu` package). Both return { result, markdown }.
import { existsSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { SWIFTSHADER_ICD, chromiumArgs, findChromium } from '../scripts/chromium.mjs';

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

async function viteServer(log, server) {
  const { createServer } = await import('vite');
  return createServer({
    root,
    configFile: join(root, 'vite.config.ts'),
    customLogger: stderrLogger(log),
    clearScreen: false,
    server,
  });
}

/** Headless system Chromium opens bench/index.html from a Vite dev server and calls window.maceBench. */
export async function runBenchInChromium(benchOpts, log) {
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
  const server = await viteServer(log, { host: '127.0.0.1', port, strictPort: true, hmr: false, watch: null });
  let browser;
  try {
    await server.listen();
    const { chromium } = await import('playwright');
    // Developer features turn off Chromium's 100 µs quantization of GPU timestamps.
    browser = await chromium.launch({ executablePath, args: [...chromiumArgs(), '--enable-webgpu-developer-features'], headless: true });
    const page = await browser.newPage();
    page.on('pageerror', (e) => log(`[page] ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') log(`[page ${m.type()}] ${m.text()}`);
    });
    await page.exposeFunction('maceProgress', (message, fraction) => log(`[${String(Math.round(100 * fraction)).padStart(3)}%] ${message}`));
    const url = `http://127.0.0.1:${port}/bench/index.html`;
    log(`bench page ${url} in ${executablePath}`);
    await page.goto(url);
    await page.waitForFunction(() => typeof window.maceBench === 'function', undefined, { timeout: 60_000 });
    const result = await page.evaluate((opts) => window.maceBench(opts), benchOpts);
    const { benchToMarkdown } = await server.ssrLoadModule('/bench/report.ts');
    return { result, markdown: benchToMarkdown(result) };
  } finally {
    await browser?.close();
    await server.close();
  }
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

/** Dawn in this process runs bench/kernels.ts, loaded through Vite's SSR loader (so ?raw WGSL imports work). */
export async function runBenchInNode(benchOpts, log) {
  if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD)) {
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    log(`VK_ICD_FILENAMES unset: using Chromium's SwiftShader Vulkan driver (${SWIFTSHADER_ICD})`);
  }
  let gpu;
  try {
    const { create, globals } = await import('webgpu');
    Object.assign(globalThis, globals);
    gpu = create([]);
  } catch (e) {
    throw new Error(`${/vulkan/i.test(String(e?.message)) || !haveLibVulkan() ? NEED_LIBVULKAN : 'cannot load the `webgpu` package'}: ${e?.message ?? e}`);
  }
  const server = await viteServer(log, { middlewareMode: true, hmr: false, ws: false, watch: null });
  try {
    const { acquireGpu, describeGpu } = await server.ssrLoadModule('/src/gpu/device.ts');
    const bench = await server.ssrLoadModule('/bench/kernels.ts');
    let ctx;
    try {
      ctx = await acquireGpu({ gpu, label: 'mace bench (node)' });
    } catch (e) {
      if (e?.code === 'no-adapter' && !haveLibVulkan()) throw new Error(`${NEED_LIBVULKAN} (${e.message})`);
      throw e;
    }
    try {
      log(`GPU: ${describeGpu(ctx)}`);
      const onProgress = (message, fraction) => log(`[${String(Math.round(100 * fraction)).padStart(3)}%] ${message}`);
      const result = await bench.runKernelBench(ctx, { ...benchOpts, env: 'node', onProgress });
      return { result, markdown: bench.benchToMarkdown(result) };
    } finally {
      ctx.destroy();
    }
  } finally {
    await server.close();
  }
}
