/**
 * The library builds (`npm run build` runs both after the demo's own `vite build`):
 *
 * - `--mode package`: the ES module package, dist/lib/index.js from src/index.ts. Dependencies
 *   stay imports (they are the package's dependencies); the engine worker is its own file next to
 *   it, found through `new URL(…, import.meta.url)` as bundlers expect. Type declarations come
 *   from `tsc -p tsconfig.lib.json` (dist/types).
 * - `--mode widget`: the standalone widget, one minified file dist/mace-chat.js from src/widget.ts, with
 *   every dependency and the engine worker inlined (the worker starts from a blob: URL; a page
 *   with a Content-Security-Policy needs `worker-src blob:`).
 */
import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin } from 'vite';

const root = fileURLToPath(new URL('.', import.meta.url));

/** Packages the package build leaves as imports (package.json dependencies). */
const DEPENDENCIES = [/^comlink/, /^marked/, /^dompurify/, /^idb-keyval/, /^uplot/, /^@huggingface\//];

/** The worker construction in src/engine/client.ts (its default worker). */
const CLIENT_WORKER = /new Worker\(\s*new URL\(\s*'\.\.\/\.\.\/workers\/engine\.worker\.ts'\s*,\s*import\.meta\.url\s*\)\s*,/;
/** The shared worker construction in src/engine/shared-client.ts (createSharedEngine's default). */
const CLIENT_SHARED_WORKER = /new SharedWorker\(\s*new URL\(\s*'\.\.\/\.\.\/workers\/shared-engine\.worker\.ts'\s*,\s*import\.meta\.url\s*\)\s*,/;
/**
 * The one-file widget has no shared engine: a SharedWorker is shared by URL, and an inlined one
 * (blob: or data: URL) is a new URL per page (blob) or an opaque origin without IndexedDB or
 * same-origin model files (data). Its construction throws instead, and createSharedEngine() falls
 * back to the inlined dedicated worker.
 */
const NO_SHARED_WORKER = `const maceNoSharedWorker = () => { throw new Error('the one-file widget (mace-chat.js) cannot start a shared worker'); };\n`;

/**
 * For the one-file widget: client.ts's default worker is built from the inlined worker bundle
 * (Vite's `?worker&inline`) instead of a separate file. If client.ts stops constructing its worker
 * that way, the build fails here rather than quietly emitting a second file.
 */
function inlineEngineWorker(): Plugin {
  return {
    name: 'mace:inline-engine-worker',
    enforce: 'pre',
    transform(code, id) {
      const path = id.replaceAll('\\', '/');
      if (path.endsWith('/src/engine/shared-client.ts')) {
        if (!CLIENT_SHARED_WORKER.test(code)) this.error(`src/engine/shared-client.ts no longer constructs its shared worker as "new SharedWorker(new URL('../../workers/shared-engine.worker.ts', import.meta.url), …)"; update ${CLIENT_SHARED_WORKER} in vite.lib.config.ts`);
        return { code: `${NO_SHARED_WORKER}${code.replace(CLIENT_SHARED_WORKER, 'maceNoSharedWorker(')}`, map: null };
      }
      if (!path.endsWith('/src/engine/client.ts')) return null;
      if (!CLIENT_WORKER.test(code)) this.error(`src/engine/client.ts no longer constructs its worker as "new Worker(new URL('../../workers/engine.worker.ts', import.meta.url), …)"; update ${CLIENT_WORKER} in vite.lib.config.ts`);
      const inlined = code.replace(CLIENT_WORKER, 'new MaceInlineEngineWorker(');
      return { code: `import MaceInlineEngineWorker from '../../workers/engine.worker.ts?worker&inline';\n${inlined}`, map: null };
    },
  };
}

export default defineConfig(({ mode }) => {
  if (mode !== 'package' && mode !== 'widget') throw new Error(`vite.lib.config.ts: --mode must be 'package' or 'widget', got '${mode}'`);
  const widget = mode === 'widget';
  return {
    root,
    // The bundled model and other demo files are not part of the library.
    publicDir: false,
    plugins: widget ? [inlineEngineWorker()] : [],
    // Module workers (the worker imports nothing at run time; its bundle is minified with the build).
    worker: { format: 'es' },
    build: {
      target: 'es2022',
      // The widget is one file in dist/ (beside lib/, types/ and demo/, which it leaves alone).
      outDir: widget ? 'dist' : 'dist/lib',
      emptyOutDir: !widget,
      sourcemap: !widget,
      // A script tag's file is minified (whitespace too: Vite's library default keeps it); the package
      // is left readable (the consumer's bundler minifies).
      minify: widget ? 'oxc' : false,
      lib: widget
        ? { entry: 'src/widget.ts', formats: ['es'], fileName: () => 'mace-chat.js' }
        : { entry: 'src/index.ts', formats: ['es'], fileName: () => 'index.js' },
      rollupOptions: widget ? { output: { minify: true } } : { external: DEPENDENCIES },
    },
  };
});
