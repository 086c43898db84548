/**
 * Where a model's files come from: a URL prefix (any folder serving Hugging Face files, or the Hub
 * itself), files the user picked, or bytes in memory (tests). Every source opens a file as a byte
 * stream, so the loader never holds a whole checkpoint; Node's directory source is in
 * source-node.ts (kept out of browser bundles).
 *
 * URL sources keep what they download in the Cache API ('mace-web-models'): a file is first stored
 * whole in the cache (disk), then streamed back from it. That bounds memory (no tee buffering a
 * slow consumer's backlog) and makes a second load issue no network request at all. Files the
 * server does not have (404) are remembered too, so probing for optional files is also free.
 */

export const MODEL_CACHE_NAME = 'mace-web-models';

/** A file could not be had: HTTP status, network failure, or absent from the picked files. */
export class ModelFileError extends Error {
  readonly code = 'model-file';
  constructor(
    readonly file: string,
    /** HTTP status, or 0 for a network failure / a file that is not among the given files. */
    readonly status: number,
    detail: string,
    readonly url?: string,
  ) {
    super(`model file '${file}'${url ? ` (${url})` : ''}: ${detail}`);
    this.name = 'ModelFileError';
  }
}

export interface OpenedFile {
  stream: ReadableStream<Uint8Array>;
  /** Byte length when the source knows it (Content-Length, File.size, stat). */
  size?: number;
}

export interface OpenOptions {
  signal?: AbortSignal;
  /** Bytes fetched from the network so far (only URL sources on a cache miss call it). */
  onDownload?: (loaded: number, total: number | undefined) => void;
}

export interface ModelSource {
  /** For messages: the URL prefix, "picked files", a directory... */
  readonly description: string;
  /**
   * The model's name as this source knows it (Hub repository id, directory or URL folder name),
   * when it knows one: a PEFT adapter's base_model_name_or_path is checked against it.
   */
  readonly name?: string;
  open(file: string, options?: OpenOptions): Promise<OpenedFile>;
  has(file: string, options?: OpenOptions): Promise<boolean>;
}

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export interface UrlSourceOptions {
  /** Injected fetch (tests count requests with it); default globalThis.fetch. */
  fetch?: FetchLike;
  /** Keep downloads in the Cache API when it exists (default true). */
  cache?: boolean;
  /** Cache name (default MODEL_CACHE_NAME). */
  cacheName?: string;
}

/** Marks a cached "the server has no such file" answer. */
const MISSING_HEADER = 'x-mace-missing';

function joinUrl(base: string, file: string): string {
  return base.endsWith('/') ? base + file : `${base}/${file}`;
}

/** Content-Length is the body size only when the body is not content-encoded. */
function bodySize(res: Response): number | undefined {
  const enc = res.headers.get('content-encoding');
  if (enc && enc !== 'identity') return undefined;
  const len = res.headers.get('content-length');
  const n = len === null ? NaN : Number(len);
  return Number.isInteger(n) && n >= 0 ? n : undefined;
}

/**
 * An HTML page served for a file that is not HTML: the SPA fallback of dev servers and static hosts
 * (they answer 200 with index.html for any unknown path). Treated as "the server has no such file".
 */
function isHtmlFallback(res: Response, file: string): boolean {
  return !/\.html?$/i.test(file) && (res.headers.get('content-type') ?? '').startsWith('text/html');
}

async function openCache(name: string): Promise<Cache | null> {
  const c = (globalThis as { caches?: CacheStorage }).caches;
  if (!c) return null;
  try {
    return await c.open(name);
  } catch {
    return null; // e.g. an opaque origin or storage disabled: work uncached
  }
}

/** A stream that reports the bytes passing through it. */
function counting(body: ReadableStream<Uint8Array>, total: number | undefined, report: (loaded: number, total: number | undefined) => void): ReadableStream<Uint8Array> {
  let loaded = 0;
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctl) {
        loaded += chunk.byteLength;
        report(loaded, total);
        ctl.enqueue(chunk);
      },
    }),
  );
}

/** Files under a URL prefix: `${base}/${file}`. */
export function sourceFromUrl(base: string, options: UrlSourceOptions = {}): ModelSource {
  const doFetch: FetchLike = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const useCache = options.cache ?? true;
  let cachePromise: Promise<Cache | null> | null = null;
  const cache = () => (useCache ? (cachePromise ??= openCache(options.cacheName ?? MODEL_CACHE_NAME)) : Promise.resolve(null));

  const request = async (file: string, url: string, init: RequestInit): Promise<Response> => {
    try {
      return await doFetch(url, init);
    } catch (e) {
      if ((e as Error).name === 'AbortError') throw e;
      throw new ModelFileError(file, 0, `network error: ${(e as Error).message}`, url);
    }
  };
  const httpError = (file: string, url: string, res: Response) => new ModelFileError(file, res.status, `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`, url);
  const rememberMissing = async (c: Cache | null, url: string) => {
    await c?.put(url, new Response(null, { status: 404, headers: { [MISSING_HEADER]: '1' } })).catch(() => undefined);
  };

  return {
    description: base,
    name: folderName(base),
    async has(file, opts = {}) {
      const url = joinUrl(base, file);
      const c = await cache();
      const hit = await c?.match(url);
      if (hit) return !hit.headers.has(MISSING_HEADER);
      const res = await request(file, url, { method: 'HEAD', signal: opts.signal });
      if (res.status === 404 || (res.ok && isHtmlFallback(res, file))) {
        await rememberMissing(c, url);
        return false;
      }
      if (!res.ok) throw httpError(file, url, res);
      return true;
    },
    async open(file, opts = {}) {
      const url = joinUrl(base, file);
      const c = await cache();
      const hit = await c?.match(url);
      if (hit?.headers.has(MISSING_HEADER)) throw new ModelFileError(file, 404, 'HTTP 404 (remembered in the model cache)', url);
      if (hit) return { stream: hit.body ?? new Blob([]).stream(), size: bodySize(hit) };
      const res = await request(file, url, { signal: opts.signal });
      if (!res.ok || !res.body) {
        if (res.status === 404) await rememberMissing(c, url);
        throw httpError(file, url, res);
      }
      if (isHtmlFallback(res, file)) {
        await res.body.cancel().catch(() => undefined);
        throw new ModelFileError(file, 404, 'the server answered with an HTML page (no such file: a single-page-app fallback)', url);
      }
      const size = bodySize(res);
      const body = opts.onDownload ? counting(res.body, size, opts.onDownload) : res.body;
      if (!c) return { stream: body, size };
      // Store the whole file, then stream it back from disk. A failed put (quota, abort) caches
      // nothing: the file is fetched again, uncached, so the load still works.
      try {
        await c.put(url, new Response(body, { headers: res.headers }));
        const stored = await c.match(url);
        if (stored?.body) return { stream: stored.body, size: bodySize(stored) ?? size };
      } catch (e) {
        if (opts.signal?.aborted) throw e;
      }
      const again = await request(file, url, { signal: opts.signal });
      if (!again.ok || !again.body) throw httpError(file, url, again);
      return { stream: again.body, size: bodySize(again) };
    },
  };
}

/** The last path segment of a URL or path ("/models/stories260K/" -> "stories260K"), or undefined. */
export function folderName(path: string): string | undefined {
  let p = path;
  try {
    p = new URL(path).pathname;
  } catch {
    /* a relative URL or a file path */
  }
  const last = p.split(/[\\/]/).filter((seg) => seg !== '' && seg !== '.' && seg !== '..').pop();
  if (last === undefined) return undefined;
  try {
    return decodeURIComponent(last);
  } catch {
    return last;
  }
}

/** A Hugging Face Hub repository at a revision (branch, tag or commit). */
export function sourceFromHub(repoId: string, revision = 'main', options: UrlSourceOptions = {}): ModelSource {
  if (!/^[\w.-]+(\/[\w.-]+)?$/.test(repoId)) throw new ModelFileError('(repository)', 0, `'${repoId}' is not a Hub repository id (owner/name)`);
  return { ...sourceFromUrl(`https://huggingface.co/${repoId}/resolve/${encodeURIComponent(revision)}/`, options), name: repoId };
}

/** Files the user picked (<input type=file multiple> or a folder drop), looked up by name. */
export function sourceFromFiles(files: readonly File[]): ModelSource {
  const byName = new Map<string, File>();
  for (const f of files) byName.set(f.name, f);
  return {
    description: `picked files (${[...byName.keys()].join(', ')})`,
    async has(file) {
      return byName.has(file);
    },
    async open(file) {
      const f = byName.get(file);
      if (!f) throw new ModelFileError(file, 0, `is not among the picked files (${[...byName.keys()].join(', ') || 'none'})`);
      return { stream: f.stream() as ReadableStream<Uint8Array>, size: f.size };
    },
  };
}

export interface MemorySourceOptions {
  /** Bytes per stream chunk (tests use odd sizes so tensors and rows straddle chunks). */
  chunkBytes?: number;
  /** Leave out the size, as a server without Content-Length would. */
  hideSize?: boolean;
}

/** Files held in memory (fixtures, tests); strings are UTF-8 encoded. */
export function sourceFromMemory(files: ReadonlyMap<string, Uint8Array | string> | Record<string, Uint8Array | string>, options: MemorySourceOptions = {}): ModelSource {
  const map = files instanceof Map ? files : new Map(Object.entries(files));
  const chunk = options.chunkBytes ?? 65536;
  return {
    description: `memory (${[...map.keys()].join(', ')})`,
    async has(file) {
      return map.has(file);
    },
    async open(file) {
      const v = map.get(file);
      if (v === undefined) throw new ModelFileError(file, 0, 'is not among the files in memory');
      const bytes = typeof v === 'string' ? new TextEncoder().encode(v) : v;
      let at = 0;
      const stream = new ReadableStream<Uint8Array>({
        pull(ctl) {
          if (at >= bytes.length) return ctl.close();
          ctl.enqueue(bytes.slice(at, at + chunk));
          at += chunk;
        },
      });
      return { stream, size: options.hideSize ? undefined : bytes.length };
    },
  };
}

/** A whole (small) file as text: config.json, tokenizer.json... */
export async function readText(source: ModelSource, file: string, options?: OpenOptions): Promise<string> {
  const { stream } = await source.open(file, options);
  return await new Response(stream).text();
}
