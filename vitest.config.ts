import { defineConfig } from 'vitest/config';
import { playwright } from '@vitest/browser-playwright';
import { chromiumArgs, findChromium } from './scripts/chromium.mjs';

// Three projects: pure TypeScript (CPU references, layout maths) in Node, GPU kernels in a real
// Chromium with WebGPU (SwiftShader on machines without a GPU, which is slow: tiny shapes only),
// and the end-to-end suite (e2e/: Playwright drives the built demo in the system Chromium).
export default defineConfig({
  test: {
    reporters: ['default', './test/summary-reporter.ts'],
    projects: [
      {
        test: {
          name: 'node',
          include: ['test/node/**/*.test.ts'],
          environment: 'node',
        },
      },
      {
        test: {
          name: 'browser',
          include: ['test/browser/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // One page runs all files in turn: SwiftShader already uses every core.
          fileParallelism: false,
          browser: {
            enabled: true,
            headless: true,
            screenshotFailures: false,
            provider: playwright({
              launchOptions: { executablePath: findChromium(), args: chromiumArgs() },
            }),
            instances: [{ browser: 'chromium' }],
          },
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['e2e/**/*.test.ts'],
          environment: 'node',
          // One `npm run build`, then one browser for every file, one file at a time.
          globalSetup: ['e2e/global-setup.ts'],
          fileParallelism: false,
          testTimeout: 300_000,
          hookTimeout: 180_000,
          // After the other projects: SwiftShader uses every core, so the browser project and this
          // suite would only slow each other down.
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
