import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const root = fileURLToPath(new URL('.', import.meta.url));

// The demo site: the demo (index.html: <mace-chat>, the devtools panel, GPU report, kernel
// benchmark) and the kernel benchmark page that `mace bench kernels` drives through Playwright
// (bench/index.html). `vite build` writes it to dist/demo (the e2e suite serves that); the npm
// package and the standalone widget are built by vite.lib.config.ts. Tests are configured in
// vitest.config.ts, not here.
export default defineConfig({
  root,
  server: {
    host: '127.0.0.1',
    // WGSL sources are imported with ?raw from shaders/: let the dev server read the whole project.
    fs: { allow: [root] },
  },
  preview: { host: '127.0.0.1' },
  build: {
    target: 'es2022',
    outDir: 'dist/demo',
    emptyOutDir: true,
    rollupOptions: {
      input: {
        main: resolve(root, 'index.html'),
        bench: resolve(root, 'bench/index.html'),
      },
    },
  },
});
