import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const root = fileURLToPath(new URL('.', import.meta.url));

// Two pages: the demo (index.html) and the kernel benchmark page that `mace bench kernels` drives
// through Playwright (bench/index.html). Tests are configured in vitest.config.ts, not here.
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
    rollupOptions: {
      input: {
        main: resolve(root, 'index.html'),
        bench: resolve(root, 'bench/index.html'),
      },
    },
  },
});
