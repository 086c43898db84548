// Where `--model` points and how each runtime reaches it. A local directory is read with
// sourceFromDirectory in Node; for Chromium the CLI's Vite dev server serves it under MODEL_PREFIX
// (a small middleware: GET and HEAD, Content-Length, 404 for anything that is not a regular file).
import { createReadStream, existsSync, statSync } from 'node:fs';
import { isAbsolute, join, normalize, resolve, sep } from 'node:path';

export const MODEL_PREFIX = '/__mace_model/';

/**
 * --model -> { kind: 'url', url } | { kind: 'hub', repo } | { kind: 'dir', dir }. A path that
 * exists, or that is written as a path (absolute, ./, ../, ~), is a directory; otherwise an
 * owner/name id is a Hub repository; anything else is a (missing) directory, so the load names it.
 */
export function resolveModelArg(model) {
  if (/^https?:\/\//i.test(model)) return { kind: 'url', url: model };
  const looksLikePath = isAbsolute(model) || /^(\.{1,2}|~)([/\\]|$)/.test(model);
  if (!looksLikePath && !existsSync(model) && /^[\w.-]+\/[\w.-]+$/.test(model)) return { kind: 'hub', repo: model };
  return { kind: 'dir', dir: resolve(model.replace(/^~(?=[/\\]|$)/, process.env.HOME ?? '~')) };
}

/** Vite plugin: the files of `dir` at MODEL_PREFIX, so a page can load them with sourceFromUrl. */
export function modelDirPlugin(dir) {
  const root = resolve(dir);
  return {
    name: 'mace-model-dir',
    configureServer(server) {
      server.middlewares.use(MODEL_PREFIX.slice(0, -1), (req, res, next) => {
        if (req.method !== 'GET' && req.method !== 'HEAD') return next();
        let rel;
        try {
          rel = decodeURIComponent((req.url ?? '/').split('?')[0]).replace(/^\/+/, '');
        } catch {
          rel = '';
        }
        const path = normalize(join(root, rel));
        let st = null;
        if (rel && (path === root || path.startsWith(root + sep))) {
          try {
            st = statSync(path);
          } catch {
            st = null;
          }
        }
        if (!st?.isFile()) {
          res.statusCode = 404;
          res.setHeader('content-type', 'text/plain');
          res.end(`no file '${rel}' in ${root}\n`);
          return;
        }
        res.statusCode = 200;
        res.setHeader('content-type', path.endsWith('.json') ? 'application/json' : 'application/octet-stream');
        res.setHeader('content-length', String(st.size));
        res.setHeader('cache-control', 'no-store');
        if (req.method === 'HEAD') return res.end();
        createReadStream(path).on('error', (e) => res.destroy(e)).pipe(res);
      });
    },
  };
}

/**
 * Before any runtime starts: a directory without config.json fails now, with the error the Node
 * source would throw (same name, code and message), rather than as an HTTP 404 inside Chromium.
 */
export function checkModelDir(spec) {
  if (spec.kind !== 'dir') return;
  const path = join(spec.dir, 'config.json');
  let ok = false;
  try {
    ok = statSync(path).isFile();
  } catch {
    ok = false;
  }
  if (!ok) {
    const e = new Error(`model file 'config.json': ${path} does not exist or is not a regular file`);
    e.name = 'ModelFileError';
    e.code = 'model-file';
    throw e;
  }
}
