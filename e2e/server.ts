/**
 * A small static server for the e2e suite: the built demo (dist/demo) at /, the standalone widget
 * (dist/mace-chat.js) at /mace-chat.js, and the suite's own pages (e2e/pages) at /e2e/. Only GET
 * and HEAD of files under those folders; everything else is a 404. Every request it serves is
 * logged (the suite's same-origin audit compares what the browser asked for with this).
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const DEMO_DIR = join(ROOT, 'dist', 'demo');
export const WIDGET_FILE = join(ROOT, 'dist', 'mace-chat.js');
const PAGES_DIR = join(ROOT, 'e2e', 'pages');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.safetensors': 'application/octet-stream',
};

export interface StaticServer {
  origin: string;
  /** Paths requested so far (with query), in order. */
  served: string[];
  close(): Promise<void>;
}

/** `base` + the URL path, or null when the path leaves `base`. */
function inside(base: string, urlPath: string): string | null {
  const file = normalize(join(base, decodeURIComponent(urlPath)));
  return file === base || file.startsWith(base + sep) ? file : null;
}

function fileFor(pathname: string): string | null {
  if (pathname === '/mace-chat.js') return WIDGET_FILE;
  if (pathname.startsWith('/e2e/')) return inside(PAGES_DIR, pathname.slice('/e2e/'.length));
  const path = pathname.endsWith('/') ? `${pathname}index.html` : pathname;
  return inside(resolve(DEMO_DIR), path);
}

export async function startStaticServer(): Promise<StaticServer> {
  const served: string[] = [];
  const server: Server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    served.push(url.pathname + url.search);
    const file = req.method === 'GET' || req.method === 'HEAD' ? fileFor(url.pathname) : null;
    const info = file ? await stat(file).catch(() => null) : null;
    if (!file || !info?.isFile()) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'content-length': info.size, 'cache-control': 'no-store' });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    served,
    close: () => new Promise<void>((ok, fail) => server.close((e) => (e ? fail(e) : ok()))),
  };
}
