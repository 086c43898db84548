/**
 * The page e2e/shared-worker.test.ts opens in several tabs: this tab's client of the shared engine
 * (createSharedEngine), and a few helpers the test calls through page.evaluate. A request's
 * chunks are kept in `window.maceTabs.streams[name]`, the engine's finished-request records (all
 * tabs: the stats stream is the engine's) in `window.maceTabs.finished`. With `?widget` the tab
 * shows a `<mace-chat>` that makes its own engine (the default: shared), and the helpers use that.
 */
import type { WorkerEngine } from '../../src/engine/client.ts';
import { createSharedEngine } from '../../src/engine/shared-client.ts';
import type { LoadRequest, ModelInfo } from '../../src/engine/worker-api.ts';
import type { RequestStats } from '../../src/scheduler/stats.ts';
import { defineMaceChat } from '../../src/ui/chat/index.ts';
import { OwnEngine } from '../../src/ui/chat/own-engine.ts';

export interface TabStream {
  content: string;
  chunks: number;
  ids: string[];
  finishReason: string | null;
  error: string | null;
  done: boolean;
}

// The test's stand-ins for tabs that die without a word: `no-goodbye` swallows 'pagehide' before
// the client hears it (the worker must notice through the tab's lock), `no-locks` hides Web Locks
// as in a browser without them (the heartbeat must tell).
const params = new URLSearchParams(location.search);
if (params.has('no-goodbye')) addEventListener('pagehide', (e) => e.stopImmediatePropagation());
if (params.has('no-locks')) Object.defineProperty(navigator, 'locks', { value: undefined, configurable: true });

const streams: Record<string, TabStream> = {};
const finished: RequestStats[] = [];

/** The engine the helpers use: this page's client, or the widget's (it may change engine: ask each time). */
let current: () => Promise<WorkerEngine>;
if (params.has('widget')) {
  defineMaceChat();
  const chat = document.createElement('mace-chat');
  chat.setAttribute('model', '/models/stories260K/');
  chat.setAttribute('max-tokens', '8');
  document.body.append(chat); // connected: it makes its engine now
  const own = chat.engine;
  if (!(own instanceof OwnEngine)) throw new Error('shared-tabs: <mace-chat> did not make its own engine');
  current = () => own.engine();
} else {
  const client = createSharedEngine({ frames: false }).then((engine) => {
    engine.onStats((batch) => {
      for (const r of batch.records) if (r.type === 'request') finished.push(r);
    });
    return engine;
  });
  current = () => client;
}

/** The test's load: the bundled model, no feedback store or learning (nothing else competes for SwiftShader). */
function request(format: LoadRequest['format']): LoadRequest {
  return { source: { kind: 'url', base: '/models/stories260K/' }, format, engine: { kvBudgetBytes: 8 * 2 ** 20, maxSeqs: 4 }, feedbackStore: false, learning: false };
}

async function stream(engine: WorkerEngine, name: string, prompt: string, maxTokens: number): Promise<void> {
  const s: TabStream = { content: '', chunks: 0, ids: [], finishReason: null, error: null, done: false };
  streams[name] = s;
  try {
    const chunks = await engine.chat.completions.create({ messages: [{ role: 'user', content: prompt }], max_tokens: maxTokens, temperature: 0.8, seed: 7, ignore_eos: true, stream: true });
    for await (const c of chunks) {
      s.chunks++;
      if (!s.ids.includes(c.id)) s.ids.push(c.id);
      s.content += c.choices[0]?.delta?.content ?? '';
      s.finishReason = c.choices[0]?.finish_reason ?? s.finishReason;
    }
  } catch (e) {
    s.error = e instanceof Error ? `${(e as { code?: string }).code ?? ''}: ${e.message}` : String(e);
  } finally {
    s.done = true;
  }
}

const tabs = {
  streams,
  finished,
  kind: async (): Promise<string> => (await current()).kind,
  /** Load reports this tab's loads received (a reused model reports none: nothing was loaded). */
  progressReports: 0,
  load: async (format: LoadRequest['format'] = 'f32'): Promise<ModelInfo> => (await current()).load(request(format), () => void tabs.progressReports++),
  /** A load that is expected to fail: its error's code and message. */
  loadError: async (format: LoadRequest['format']): Promise<{ code: string; message: string } | null> => {
    try {
      await (await current()).load(request(format));
      return null;
    } catch (e) {
      return { code: String((e as { code?: unknown }).code), message: (e as Error).message };
    }
  },
  /** Start a streamed chat (not awaited: its progress is in `streams[name]`). */
  start: async (name: string, prompt: string, maxTokens: number): Promise<void> => {
    void stream(await current(), name, prompt, maxTokens);
  },
  status: async () => (await current()).sharedStatus(),
  stats: async () => (await current()).stats(),
  weightsBytes: async (): Promise<number> => (await (await current()).gpuMemory())?.byOwner.weights?.bytes ?? 0,
};

(window as unknown as { maceTabs: typeof tabs }).maceTabs = tabs;
