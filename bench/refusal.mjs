// Time to refuse oversized work (issue 15), through the real engine API on stories260K in Node + Dawn.
// Run from the repository root: node bench/refusal.mjs (figures in docs/BENCHMARKS.md, "Refusing oversized work"). The
// Dawn instance is created before the Vite server starts (created after it, Dawn aborts at start here).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
const root = process.cwd();
const { SWIFTSHADER_ICD } = await import(join(root, 'scripts/chromium.mjs'));
if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD)) process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
const { create, globals } = await import('webgpu');
Object.assign(globalThis, globals);
const gpu = create([]);
const { createServer } = await import('vite');
const server = await createServer({ root, configFile: join(root, 'vite.config.ts'), logLevel: 'error', server: { middlewareMode: true, hmr: false, ws: false, watch: null } });
const load = (p) => server.ssrLoadModule(p);
try {
  const { acquireGpu } = await load('/src/gpu/device.ts');
  const { loadModel } = await load('/src/model/loader.ts');
  const { sourceFromDirectory } = await load('/src/model/source-node.ts');
  const { createEngine } = await load('/src/engine/openai.ts');
  const { parsePreferenceFile } = await load('/src/learn/formats.ts');
  const { PreferenceSet } = await load('/src/learn/pairs.ts');
  const ctx = await acquireGpu({ gpu, label: 'measure' });
  const model = await loadModel(ctx, sourceFromDirectory(join(root, 'public/models/stories260K')), { format: 'f32' });
  const engine = createEngine(ctx, model, { kvBudgetBytes: 2 * 2 ** 20 });
  const time = async (label, fn) => {
    const t0 = performance.now();
    let outcome;
    try {
      await fn();
      outcome = 'ACCEPTED';
    } catch (e) {
      outcome = `${e.name} (${e.code}): ${String(e.message).slice(0, 110)}`;
    }
    console.log(`${label}: ${(performance.now() - t0).toFixed(1)} ms -> ${outcome}`);
  };
  const huge = 'Once upon a time, '.repeat(Math.ceil((80 * 2 ** 20) / 18)).slice(0, 80 * 2 ** 20); // 80 MiB, ~20M tokens
  console.log(`engine maxContext ${engine.core.limits.maxContext}; prompt of ${huge.length} characters`);
  await time('completions.create, 80 MiB prompt string', () => engine.completions.create({ prompt: huge, max_tokens: 1 }));
  await time('chat.completions.create, 80 MiB message', () => engine.chat.completions.create({ messages: [{ role: 'user', content: huge }], max_tokens: 1 }));
  const ids = new Array(20_000_000).fill(403);
  await time('completions.create, 20M token ids', () => engine.completions.create({ prompt: ids, max_tokens: 1 }));
  const big = 'z'.repeat(10 * 2 ** 20);
  const line = JSON.stringify({ prompt: 'Tell me a story.', chosen: big, rejected: 'No.' });
  await time('parsePreferenceFile, one 10 MiB JSONL record (strict)', () => parsePreferenceFile('prefs.jsonl', line, { strict: true }));
  await time('engine.preferences.add, 10 MiB answer', () => engine.preferences.add({ prompt: 'Tell me a story.', chosen: big, rejected: 'No.' }));
  await time('PreferenceSet.add, 10 MiB prompt', () => new PreferenceSet().add({ prompt: big, chosen: 'a', rejected: 'b' }));
  const { TextTokenizer } = await load('/src/model/tokenizer.ts');
  const { readFileSync } = await import('node:fs');
  const tj = readFileSync(join(root, 'public/models/stories260K/tokenizer.json'), 'utf8');
  const tc = JSON.parse(readFileSync(join(root, 'public/models/stories260K/tokenizer_config.json'), 'utf8'));
  const expanding = "{% for i in range(200000) %}xxxxxxxxxx{% endfor %}{% for m in messages %}{{ m['content'] }}{% endfor %}";
  await time('TextTokenizer.load, a chat template expanding every prompt by 2 MB (refused at load)', () => TextTokenizer.load(tj, JSON.stringify({ ...tc, chat_template: expanding }), [2]));
  const repeating = "{% for m in messages %}{% for i in range(10000) %}{{ m['content'] }}{% endfor %}{% endfor %}";
  await time('TextTokenizer.load, a chat template repeating each message 10 000 times (refused at load)', () => TextTokenizer.load(tj, JSON.stringify({ ...tc, chat_template: repeating }), [2]));
  await time('then a good request (greedy, 16 tokens)', async () => {
    const r = await engine.completions.create({ prompt: 'Once upon a time', temperature: 0, max_tokens: 16 });
    console.log(`  -> ${JSON.stringify(r.choices[0].text)}`);
  });
  engine.destroy();
  model.weights.destroy();
} finally {
  await server.close();
}
process.exit(0);
