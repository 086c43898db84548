// `mace serve`: the OpenAI-compatible HTTP server (src/server/http.ts) over the engine, run
// headless in Chromium (default: a page of the CLI's Vite dev server, src/server/engine-page.ts,
// each HTTP request bridged into it with page.evaluate and its stream chunks back through an
// exposed function) or in this process through Dawn (--node). Prints the URL on stdout once it
// listens; runs until SIGINT or SIGTERM (or the page dies: exit 1).
import { checkModelDir, modelDirPlugin, resolveModelArg } from './model-source.mjs';
import { nodeSource, pageModel, withChromiumPage, withNodeGpu } from './bench-runners.mjs';

/** Resolves with the signal's name on SIGINT/SIGTERM, rejects when `failure` does. */
function untilStopped(failure) {
  return new Promise((resolve, reject) => {
    const stop = (sig) => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve(sig);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    failure?.catch(reject);
  });
}

/** Start the HTTP server on `backend`, print its URL, and serve until stopped. */
async function serveHttp(vite, backend, opts, log, failure) {
  const { startServer } = await vite.ssrLoadModule('/src/server/http.ts');
  const running = await startServer(backend, {
    host: opts.host,
    port: opts.port,
    apiKey: opts.apiKey,
    maxBodyBytes: opts.maxBodyBytes,
    maxAdapterBytes: opts.maxAdapterBytes,
    maxConcurrent: opts.maxConcurrent,
    maxTokensLimit: opts.maxTokensLimit,
    allowOrigin: opts.allowOrigin,
    modelRoot: opts.model,
    loraModules: opts.loraModules,
    log,
  });
  if (!['127.0.0.1', 'localhost', '::1'].includes(opts.host) && !opts.apiKey) log(`mace serve: listening on ${opts.host} without --api-key: anyone who can reach this port can use the model and load adapters`);
  // stdout carries only this line: scripts and tests read the URL from it.
  process.stdout.write(`mace serve: ${running.url}/v1 (model '${backend.modelName}', ${opts.runtime === 'node' ? 'Node + Dawn' : 'headless Chromium'})\n`);
  try {
    const sig = await untilStopped(failure);
    log(`mace serve: ${sig}, shutting down`);
  } finally {
    await running.close();
  }
}

function engineOptions(opts) {
  return { dtype: opts.dtype, modelName: opts.servedModelName ?? opts.model, maxSeqs: opts.maxSeqs, maxLoras: opts.maxLoras, maxLoraRank: opts.maxLoraRank };
}

/**
 * The page's engine as a ServeBackend (src/server/backend.ts): every call a page.evaluate, stream
 * chunks back through `sinks` (fed by the exposed maceServeChunk), typed errors revived.
 */
function pageBackend(page, info, sinks, reviveError) {
  let nextId = 0;
  const call = async (fn, arg) => {
    const out = await page.evaluate(fn, arg);
    if (!out.ok) throw reviveError(out.error);
    return out.result;
  };
  return {
    modelName: info.modelName,
    maxContext: info.maxContext,
    async run(endpoint, params, onChunk, signal) {
      const id = ++nextId;
      if (onChunk) sinks.set(id, onChunk);
      const abort = () => page.evaluate((i) => window.maceServeAbort(i), id).catch(() => {});
      signal.addEventListener('abort', abort, { once: true });
      try {
        return await call(([i, e, p, s]) => window.maceServeRun(i, e, p, s), [id, endpoint, params, onChunk !== null]);
      } finally {
        signal.removeEventListener('abort', abort);
        sinks.delete(id);
      }
    },
    loadAdapter: (name, files) => call(([n, c, w]) => window.maceServeAdapters('load', n, c, w), [name, files.config, Buffer.from(files.weights).toString('base64')]),
    unloadAdapter: (name) => call((n) => window.maceServeAdapters('unload', n), name),
    listAdapters: () => call(() => window.maceServeAdapters('list')),
  };
}

export async function serve(opts, log) {
  const spec = resolveModelArg(opts.model);
  checkModelDir(spec);
  if (opts.runtime === 'node') {
    return withNodeGpu(log, 'mace serve (node)', async (vite, ctx) => {
      const { createServeEngine } = await vite.ssrLoadModule('/src/server/engine-setup.ts');
      const served = await createServeEngine(ctx, await nodeSource(vite, spec), engineOptions(opts), log);
      try {
        await serveHttp(vite, served.backend, opts, log);
      } finally {
        served.destroy();
      }
    });
  }
  const plugins = spec.kind === 'dir' ? [modelDirPlugin(spec.dir)] : [];
  const sinks = new Map();
  // A chunk for a request that is gone (its client left) is dropped.
  const maceServeChunk = (id, chunk) => sinks.get(id)?.(chunk);
  const expose = { maceServeChunk, maceLog: (m) => log(m) };
  return withChromiumPage(log, { path: '/src/server/engine-page.html', readyFn: 'maceServeStart', plugins, expose }, async (page, vite, origin) => {
    const { reviveError } = await vite.ssrLoadModule('/src/engine/errors-wire.ts');
    const started = await page.evaluate(([m, o]) => window.maceServeStart(m, o), [pageModel(spec, origin), engineOptions(opts)]);
    if (!started.ok) throw reviveError(started.error);
    // The page or the browser going away ends the server with an error (rather than 500s forever).
    const failure = new Promise((_, reject) => {
      page.once('crash', () => reject(new Error('mace serve: the engine page crashed')));
      page.once('close', () => reject(new Error('mace serve: the engine page closed')));
    });
    await serveHttp(vite, pageBackend(page, started.result, sinks, reviveError), opts, log, failure);
  });
}
