/**
 * The widget's "Learnt adapter" menu (issue 14): the adapter that feedback trains, managed from the
 * header — which version serves, the saved versions (serve one: a switch or a roll back), back to
 * the base model, download the serving adapter as PEFT files, import PEFT files.
 *
 * The menu is a disclosure: a header button (aria-expanded) and a panel below the header, filled
 * each time it opens from the engine's adapter calls (the page client's `adapter.*`, through the
 * worker to its IndexedDB store). Every action re-reads the versions after it; failures are shown
 * in the panel (role=alert) and change nothing. An engine without some of the calls (a test
 * stand-in, a remote engine) shows only what it has.
 */
import type { AdapterImported, AdapterVersions } from '../../engine/worker-api.ts';
import type { PeftFiles } from '../../learn/peft.ts';
import type { LearningStatus } from '../../scheduler/stats.ts';

/** The engine's adapter calls the menu uses (WorkerEngine['adapter'] has them all). */
export interface AdapterControls {
  export(version?: number): Promise<PeftFiles>;
  versions?(): Promise<AdapterVersions>;
  serve?(version: number): Promise<LearningStatus>;
  reset?(): Promise<LearningStatus>;
  import?(files: PeftFiles): Promise<AdapterImported>;
}

export interface AdapterMenuHost {
  /** The engine's adapter calls, or null (no engine, or one without adapters). */
  controls(): AdapterControls | null;
  /** After a switch, reset or import: the learner's new status (the badge follows it). */
  changed(status: LearningStatus | null): void;
}

/** A saved version's label: the learner's version it holds (the badge's number), else the store's. */
function versionLabel(v: AdapterVersions['versions'][number]): string {
  return `v${v.meta.metrics?.version ?? v.version}`;
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, className?: string, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(label: string, action: string): HTMLButtonElement {
  const b = el('button', undefined, label);
  b.type = 'button';
  b.dataset.action = action;
  return b;
}

/** Offer `blob` as a download named `name` (an object URL on a temporary link, revoked after the click). */
export function saveFile(name: string, blob: Blob): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 0);
}

/** A picked pair of files → PEFT files (the .safetensors weights and the adapter_config.json), or why not. */
export async function peftFromFiles(files: readonly File[]): Promise<PeftFiles> {
  const weights = files.find((f) => f.name.endsWith('.safetensors'));
  const config = files.find((f) => f.name.endsWith('.json'));
  if (!weights || !config || files.length !== 2) throw new Error(`pick two files: adapter_model.safetensors and adapter_config.json (got ${files.map((f) => f.name).join(', ') || 'none'})`);
  return { weights: new Uint8Array(await weights.arrayBuffer()), config: await config.text() };
}

export class AdapterMenu {
  private busy = false;
  private readonly picker: HTMLInputElement;

  constructor(
    readonly toggleButton: HTMLButtonElement,
    readonly panel: HTMLElement,
    private readonly host: AdapterMenuHost,
  ) {
    this.picker = el('input');
    this.picker.type = 'file';
    this.picker.multiple = true;
    this.picker.accept = '.safetensors,.json';
    this.picker.hidden = true;
    this.picker.setAttribute('aria-label', 'PEFT adapter files to import');
    toggleButton.setAttribute('aria-expanded', 'false');
    toggleButton.addEventListener('click', () => (this.open ? this.close() : void this.show()));
    panel.addEventListener('click', (e) => {
      const b = (e.target as Element).closest<HTMLButtonElement>('button[data-action]');
      if (b && !b.disabled) void this.act(b.dataset.action!, b.dataset.version);
    });
    panel.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') (this.close(), toggleButton.focus());
    });
    this.picker.addEventListener('change', () => void this.importPicked());
  }

  get open(): boolean {
    return !this.panel.hidden;
  }

  close(): void {
    this.panel.hidden = true;
    this.toggleButton.setAttribute('aria-expanded', 'false');
  }

  /** Open (or refresh) the panel from the engine's current versions. */
  async show(error?: string): Promise<void> {
    const c = this.host.controls();
    this.panel.hidden = false;
    this.toggleButton.setAttribute('aria-expanded', 'true');
    let listed: AdapterVersions | null = null;
    let why = error ?? null;
    if (c?.versions) {
      try {
        listed = await c.versions();
      } catch (e) {
        why ??= `Listing the versions failed: ${e instanceof Error ? e.message : String(e)}`;
      }
    }
    this.render(c, listed, why);
  }

  private render(c: AdapterControls | null, listed: AdapterVersions | null, error: string | null): void {
    const p = this.panel;
    p.replaceChildren();
    p.append(el('div', 'menu-title', 'Learnt adapter'));
    const serving = listed?.versions.find((v) => v.version === listed.serving);
    const learnt = listed?.learning;
    const line = serving ? `Serving ${versionLabel(serving)}` : learnt && learnt.version > 0 ? `Serving v${learnt.version} (not saved yet)` : 'Serving the base model (nothing learnt yet)';
    p.append(el('div', 'menu-line', line));
    if (listed && listed.versions.length > 0) {
      const list = el('ul', 'versions');
      list.setAttribute('aria-label', 'Saved versions');
      for (const v of listed.versions) {
        const item = el('li');
        const when = v.savedAt ? new Date(v.savedAt).toLocaleString() : 'unknown time';
        item.append(el('span', 'version', versionLabel(v)), el('span', 'saved', v.bytes < 0 ? 'unreadable' : when));
        const b = button(v.version === listed.serving ? 'Serving' : 'Serve', 'serve');
        b.dataset.version = String(v.version);
        b.disabled = v.version === listed.serving || v.bytes < 0 || !c?.serve;
        b.setAttribute('aria-label', `Serve ${versionLabel(v)}`);
        item.append(b);
        list.append(item);
      }
      p.append(list);
    }
    const row = el('div', 'menu-actions');
    if (c) row.append(button('Download PEFT files', 'download'));
    if (c?.import) row.append(button('Import PEFT files…', 'import'), this.picker);
    if (c?.reset) row.append(button('Reset to base', 'reset'));
    p.append(row);
    if (error) {
      const e = el('div', 'menu-error', error);
      e.setAttribute('role', 'alert');
      p.append(e);
    }
    for (const b of p.querySelectorAll('button')) if (this.busy) b.disabled = true;
  }

  private async act(action: string, version: string | undefined): Promise<void> {
    const c = this.host.controls();
    if (!c || this.busy) return;
    if (action === 'import') return this.picker.click();
    this.busy = true;
    let error: string | undefined;
    try {
      if (action === 'download') await this.download(c);
      else if (action === 'serve' && c.serve) this.host.changed(await c.serve(Number(version)));
      else if (action === 'reset' && c.reset) this.host.changed(await c.reset());
    } catch (e) {
      error = `${action === 'download' ? 'Exporting' : action === 'serve' ? 'Switching' : 'Resetting'} the adapter failed: ${e instanceof Error ? e.message : String(e)}`;
    } finally {
      this.busy = false;
    }
    await this.show(error);
  }

  private async download(c: AdapterControls): Promise<void> {
    const files = await c.export();
    const listed = c.versions ? await c.versions().catch(() => null) : null;
    const serving = listed?.versions.find((v) => v.version === listed.serving);
    const tag = serving ? versionLabel(serving) : `v${listed?.learning?.version ?? 0}`;
    saveFile(`learnt-${tag}-adapter_model.safetensors`, new Blob([files.weights.slice()], { type: 'application/octet-stream' }));
    saveFile(`learnt-${tag}-adapter_config.json`, new Blob([files.config], { type: 'application/json' }));
  }

  private async importPicked(): Promise<void> {
    const c = this.host.controls();
    const files = [...(this.picker.files ?? [])];
    this.picker.value = '';
    if (!c?.import || files.length === 0) return;
    this.busy = true;
    let error: string | undefined;
    try {
      const r = await c.import(await peftFromFiles(files));
      this.host.changed(r.learning);
    } catch (e) {
      error = `Importing the adapter failed: ${e instanceof Error ? e.message : String(e)}`;
    } finally {
      this.busy = false;
    }
    await this.show(error);
  }
}
