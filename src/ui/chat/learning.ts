/**
 * `<mace-chat>`'s view of on-device learning: which adapter the visitor's feedback has trained and
 * its version, learnt from the engine's finetune stats and `learning.status()`; the header's
 * "learnt · vN" badge and adapter menu (adapter-menu.ts) that show it; and the adapter a new
 * answer names (conversation.ts `adapterFor`: the `adapter` attribute wins).
 *
 * Split from element.ts because it is its own small state (the learnt adapter) with its own
 * sources; the element tells it when to forget (a new load) and asks it which adapter to answer with.
 * Ratings themselves stay in the element: they change the conversation.
 */
import type { StatsBatch } from '../../scheduler/stats.ts';
import { AdapterMenu } from './adapter-menu.ts';
import { adapterFor, newerLearnt, type LearntAdapter } from './conversation.ts';
import type { ChatEngine } from './engine.ts';
import type { WidgetDom } from './view.ts';

/** What learning reads from the element (afresh each time: the engine and the state change). */
export interface LearningHost {
  engine(): ChatEngine | null;
  /** A model is loaded and answering: only then is the adapter menu offered. */
  ready(): boolean;
  /** The element's `adapter` attribute. */
  adapterAttribute(): string | null;
}

export class LearntAdapterTracker {
  private learnt: LearntAdapter | null = null;
  private readonly adapterMenu: AdapterMenu;

  constructor(
    private readonly dom: WidgetDom,
    private readonly host: LearningHost,
  ) {
    this.adapterMenu = new AdapterMenu(dom.adapterButton, dom.adapterPanel, {
      controls: () => this.host.engine()?.adapter ?? null,
      // A switch or reset may go back in versions: the badge shows what serves now.
      changed: (s) => {
        if (s) this.learnt = { adapter: s.adapter, version: s.version };
        this.update();
      },
    });
  }

  /** Version of the adapter learnt from feedback (0 before the first applied step). */
  get version(): number {
    return this.learnt?.version ?? 0;
  }

  /** The adapter a new answer names, or null for the base model. */
  adapterForAnswer(): string | null {
    return adapterFor(this.host.adapterAttribute(), this.learnt);
  }

  /** Forget what was learnt (another model or profile is loading: its status is read once it is ready). */
  forget(): void {
    this.learnt = null;
    this.update();
  }

  onStats(batch: StatsBatch): void {
    let changed = false;
    for (const r of batch.records) {
      if (r.type !== 'finetune') continue;
      const next = newerLearnt(this.learnt, { adapter: r.adapter, version: r.adapterVersion });
      changed ||= next !== this.learnt;
      this.learnt = next;
    }
    if (changed) this.update();
  }

  /** Ask the engine where learning stands (after a load, and after a rating formed a pair). */
  async refresh(): Promise<void> {
    const engine = this.host.engine();
    if (!engine?.learning) return;
    try {
      const s = await engine.learning.status();
      if (!s || engine !== this.host.engine()) return;
      this.learnt = newerLearnt(this.learnt, { adapter: s.adapter, version: s.version });
      this.update();
    } catch {
      // No model loaded (yet): the badge stays as it is; finetune stats will update it.
    }
  }

  /** Show the badge and the adapter button as the learnt adapter and the widget state say. */
  update(): void {
    const badge = this.dom.learnt;
    const l = this.learnt;
    badge.hidden = !l || l.version < 1;
    this.dom.adapterButton.hidden = !this.host.ready() || !this.host.engine()?.adapter;
    if (this.dom.adapterButton.hidden) this.adapterMenu.close();
    if (!l || l.version < 1) return;
    badge.textContent = `learnt · v${l.version}`;
    const attr = this.host.adapterAttribute();
    const used = adapterFor(attr, l) === l.adapter;
    badge.title = `Learnt from your feedback: adapter "${l.adapter}", version ${l.version}. ${used ? 'New answers use it.' : `Not used: the adapter attribute says "${attr}".`}`;
  }
}
