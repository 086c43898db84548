/**
 * The demo's workspace: `<mace-chat>` and `<mace-devtools>` on one engine worker (the panel draws
 * the stats of the very requests and fine-tune steps the chat causes), and a model picker that
 * points the widget at a Hugging Face repository or URL when the browser is online.
 */
import { createWorkerEngine } from '../src/engine/client.ts';
import { defineMaceChat, parseModelAttribute, type MaceChatElement, type MaceStateDetail } from '../src/ui/chat/index.ts';
import '../src/ui/devtools/index.ts';

export const BUNDLED_MODEL = '/models/stories260K/';

function byId<T extends HTMLElement>(id: string, type: { new (): T }): T {
  const el = document.getElementById(id);
  if (!(el instanceof type)) throw new Error(`demo: #${id} is missing from index.html or is not a ${type.name}`);
  return el;
}

function describeModel(detail: MaceStateDetail): string {
  const m = detail.model;
  if (!m) return '';
  const mode = m.hasChatTemplate ? 'chat template' : 'no chat template: completion mode (the model continues your text)';
  return `${m.modelName} · ${m.architecture}, ${m.nLayers} layers, hidden ${m.hiddenSize}, vocab ${m.vocabSize} · ${m.format} weights · context ${m.maxContext} · ${mode} · loaded in ${(m.loadMs / 1000).toFixed(1)} s on ${m.gpu}`;
}

/** The picker: empty = the bundled model; Hub ids need the network (URLs on this origin do not). */
function mountModelPicker(chat: MaceChatElement): void {
  const form = byId('model-form', HTMLFormElement);
  const field = byId('model-id', HTMLInputElement);
  const format = byId('model-format', HTMLSelectElement);
  const note = byId('model-note', HTMLElement);
  const showOnline = () => {
    note.textContent = navigator.onLine ? '' : 'Offline: the bundled model works; Hugging Face models need a connection.';
  };
  addEventListener('online', showOnline);
  addEventListener('offline', showOnline);
  showOnline();
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = field.value.trim() || BUNDLED_MODEL;
    let hub = false;
    try {
      hub = parseModelAttribute(text).kind === 'hub';
    } catch (e) {
      note.textContent = e instanceof Error ? e.message : String(e);
      return;
    }
    if (hub && !navigator.onLine) {
      note.textContent = `Offline: ${text} cannot be downloaded now. The bundled model works offline.`;
      return;
    }
    note.textContent = '';
    chat.setAttribute('format', format.value);
    chat.setAttribute('model', text);
  });
}

export function mountWorkspace(): void {
  const chat = byId('demo-chat', HTMLElement) as MaceChatElement;
  const info = byId('model-info', HTMLElement);
  const engine = createWorkerEngine();
  // Given before the element is defined: it loads its model into this engine, not its own.
  chat.engine = engine;
  chat.addEventListener('mace-state', (e) => {
    info.textContent = e.detail.state === 'ready' ? describeModel(e.detail) : '';
  });
  defineMaceChat();
  mountModelPicker(chat);

  const slot = byId('devtools-slot', HTMLElement);
  try {
    const panel = document.createElement('mace-devtools');
    panel.engine = engine;
    slot.append(panel);
  } catch (e) {
    // The chat works without the panel: say why it is missing instead of stopping the page.
    const p = document.createElement('p');
    p.className = 'error';
    p.textContent = `The performance panel could not start: ${e instanceof Error ? e.message : String(e)}`;
    slot.append(p);
  }
}
