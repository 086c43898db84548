/**
 * <mace-devtools>: the in-page performance panel. Feed it with `engine = client` (anything with
 * onStats) or `push(batch)`. Collapsed (the default) it shows one line: tok/s, TTFT p95, KV use,
 * adapter version; expanded, nine uPlot charts with a sentence each.
 *
 * Cost discipline: a batch only updates the aggregator's rings (and emits Performance-panel measures,
 * unless performance-tracks="off"); drawing happens in at most one animation frame per frame, only
 * while the panel is on screen, and charts are only touched while expanded. When the stream stops,
 * one last refresh lets tok/s fall to 0, then nothing runs.
 */
import uPlot from 'uplot';
import type { StatsBatch } from '../../scheduler/stats.ts';
import { StatsAggregator } from './aggregate.ts';
import { CHARTS, DEFAULT_PALETTE, type ChartId, type ChartSpec, type Palette } from './charts.ts';
import { StatsInputError } from './errors.ts';
import { PANEL_CSS } from './styles.ts';
import { describeCharts, formatBytes, formatMs, formatSummaryLine, memoryRows, prefixLine, summarize } from './summary.ts';
import { emitPerformanceTracks } from './tracks.ts';

/** What the panel needs from an engine client (WorkerEngine.onStats): subscribe, get an unsubscribe. */
export type StatsSource = { onStats(listener: (batch: StatsBatch) => void): () => void };

/** Main-thread time the panel has spent, ms since it was created (see cost.ts). */
export interface PanelCost {
  batches: number;
  /** Validating and aggregating batches. */
  pushMs: number;
  /** Making Performance-panel measures. */
  tracksMs: number;
  /** Frames that redrew something, and their time (summary, chart data, uPlot drawing). */
  renders: number;
  renderMs: number;
}

/** Detail of the `mace-devtools-error` event: a batch from the engine that failed validation. */
export interface DevtoolsErrorDetail {
  error: StatsInputError;
}

const CHART_HEIGHT = 140;
/**
 * Charts redraw at most this often (the summary line every frame): a 10-second window gains nothing
 * from 60 redraws a second, and nine canvases per frame are the panel's largest cost.
 */
const CHART_INTERVAL_MS = 100;

export class MaceDevtoolsElement extends HTMLElement {
  static readonly observedAttributes = ['expanded'];

  readonly aggregator = new StatsAggregator();
  readonly cost: PanelCost = { batches: 0, pushMs: 0, tracksMs: 0, renders: 0, renderMs: 0 };

  private readonly root: ShadowRoot;
  private readonly toggleButton: HTMLButtonElement;
  private readonly summaryLine: HTMLParagraphElement;
  private readonly errorLine: HTMLParagraphElement;
  private readonly body: HTMLDivElement;
  private readonly sessionLine: HTMLParagraphElement;
  /** "GPU memory by owner": the latest memory record (live buffers and bytes per owner). */
  private readonly memoryTable: HTMLTableElement;
  /** "Prefix cache: hit rate …" from the latest prefix record (hidden before the first). */
  private readonly prefixLine: HTMLParagraphElement;
  private readonly figures = new Map<ChartId, { spec: ChartSpec; plot: HTMLDivElement; text: HTMLParagraphElement }>();
  private readonly plots = new Map<ChartId, uPlot>();

  private source: StatsSource | null = null;
  private unsubscribe: (() => void) | null = null;
  private frame = 0;
  private dirty = true;
  /** Data changed since the charts last drew. */
  private chartsDirty = true;
  private chartsDrawnAt = -Infinity;
  private chartTimer: ReturnType<typeof setTimeout> | null = null;
  /**
   * What the IntersectionObserver last reported; null before its first report (it arrives a frame
   * after connecting, and a panel connected off screen must not draw in that frame).
   */
  private onScreen: boolean | null = null;
  private idleTimer: ReturnType<typeof setTimeout> | null = null;
  private intersection: IntersectionObserver | null = null;
  private resize: ResizeObserver | null = null;

  constructor() {
    super();
    this.root = this.attachShadow({ mode: 'open' });
    const style = document.createElement('style');
    style.textContent = PANEL_CSS;

    const header = document.createElement('header');
    this.toggleButton = document.createElement('button');
    this.toggleButton.type = 'button';
    this.toggleButton.className = 'toggle';
    this.toggleButton.setAttribute('aria-expanded', 'false');
    this.toggleButton.setAttribute('aria-controls', 'body');
    this.toggleButton.innerHTML = '<span class="chevron" aria-hidden="true">▸</span><span>mace-web performance</span>';
    this.toggleButton.addEventListener('click', () => (this.expanded = !this.expanded));
    this.summaryLine = document.createElement('p');
    this.summaryLine.className = 'summary';
    header.append(this.toggleButton, this.summaryLine);

    this.errorLine = document.createElement('p');
    this.errorLine.className = 'error';
    this.errorLine.setAttribute('role', 'alert');

    this.body = document.createElement('div');
    this.body.id = 'body';
    this.body.className = 'body';
    this.body.hidden = true;
    this.sessionLine = document.createElement('p');
    this.sessionLine.className = 'session';
    const grid = document.createElement('div');
    grid.className = 'grid';
    for (const spec of CHARTS) {
      const figure = document.createElement('figure');
      figure.dataset.chart = spec.id;
      const caption = document.createElement('figcaption');
      caption.id = `caption-${spec.id}`;
      caption.textContent = spec.title;
      const plot = document.createElement('div');
      plot.className = 'plot';
      plot.setAttribute('role', 'img');
      plot.setAttribute('aria-label', spec.ariaLabel);
      const text = document.createElement('p');
      text.className = 'chart-summary';
      figure.setAttribute('aria-labelledby', caption.id);
      figure.append(caption, plot, text);
      grid.append(figure);
      this.figures.set(spec.id, { spec, plot, text });
    }
    this.memoryTable = document.createElement('table');
    this.memoryTable.className = 'memory';
    const memCaption = this.memoryTable.createCaption();
    memCaption.textContent = 'GPU memory by owner';
    this.memoryTable.createTBody();
    this.prefixLine = document.createElement('p');
    this.prefixLine.className = 'prefix';
    this.prefixLine.hidden = true;
    this.body.append(this.sessionLine, this.memoryTable, this.prefixLine, grid);
    this.root.append(style, header, this.errorLine, this.body);
    this.summaryLine.textContent = formatSummaryLine(summarize(this.aggregator, 0));
  }

  /** The stats source; the panel subscribes while it is in the document. */
  get engine(): StatsSource | null {
    return this.source;
  }

  set engine(source: StatsSource | null) {
    if (source !== null && typeof source?.onStats !== 'function') throw new TypeError('mace-devtools: engine must have an onStats(listener) method');
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.source = source;
    if (this.isConnected) this.subscribe();
  }

  get expanded(): boolean {
    return this.hasAttribute('expanded');
  }

  set expanded(v: boolean) {
    this.toggleAttribute('expanded', v);
  }

  /** Performance-panel tracks (on unless the attribute performance-tracks="off"). */
  get performanceTracks(): boolean {
    return this.getAttribute('performance-tracks') !== 'off';
  }

  set performanceTracks(on: boolean) {
    if (on) this.removeAttribute('performance-tracks');
    else this.setAttribute('performance-tracks', 'off');
  }

  /** The uPlot instances created so far (they exist once the panel has been expanded on screen). */
  get charts(): ReadonlyMap<ChartId, uPlot> {
    return this.plots;
  }

  /**
   * Adds one batch. Throws StatsInputError (naming the field) for a malformed batch and applies
   * nothing from it.
   */
  push(batch: StatsBatch): void {
    const t0 = performance.now();
    this.aggregator.ingest(batch);
    const t1 = performance.now();
    this.cost.pushMs += t1 - t0;
    this.cost.batches++;
    if (this.performanceTracks) {
      emitPerformanceTracks(batch);
      this.cost.tracksMs += performance.now() - t1;
    }
    this.invalidate();
    // One refresh after the stream goes quiet, so the decode rate falls to 0 instead of freezing.
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      this.invalidate();
    }, this.aggregator.rateWindowMs + 50);
  }

  /** Forgets all stats (e.g. after loading another model). */
  clear(): void {
    this.aggregator.clear();
    this.errorLine.textContent = '';
    this.invalidate();
  }

  connectedCallback(): void {
    this.subscribe();
    this.intersection = new IntersectionObserver((entries) => {
      this.onScreen = entries[entries.length - 1].isIntersecting;
      if (this.onScreen) this.schedule();
    });
    this.intersection.observe(this);
    this.resize = new ResizeObserver(() => this.resizeCharts());
    this.resize.observe(this.body);
    this.schedule();
  }

  disconnectedCallback(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.intersection?.disconnect();
    this.resize?.disconnect();
    this.intersection = this.resize = null;
    this.onScreen = null; // unknown until the next connection's first report
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    if (this.chartTimer !== null) clearTimeout(this.chartTimer);
    this.idleTimer = this.chartTimer = null;
    // uPlot listens on window (resize/scroll): destroy, and rebuild if the panel comes back.
    for (const u of this.plots.values()) u.destroy();
    this.plots.clear();
    this.dirty = true;
  }

  attributeChangedCallback(name: string): void {
    if (name !== 'expanded') return;
    const open = this.expanded;
    this.toggleButton.setAttribute('aria-expanded', String(open));
    this.body.hidden = !open;
    this.invalidate();
  }

  private subscribe(): void {
    if (!this.source || this.unsubscribe) return;
    this.unsubscribe = this.source.onStats((batch) => {
      try {
        this.push(batch);
      } catch (e) {
        // A bad batch from the engine must not break the engine's own dispatch loop: show and report it.
        if (!(e instanceof StatsInputError)) throw e;
        this.errorLine.textContent = e.message;
        this.dispatchEvent(new CustomEvent<DevtoolsErrorDetail>('mace-devtools-error', { detail: { error: e }, bubbles: true, composed: true }));
      }
    });
  }

  private invalidate(): void {
    this.dirty = true;
    this.chartsDirty = true;
    this.schedule();
  }

  private schedule(): void {
    if (this.frame || !this.dirty || !this.isConnected || this.onScreen === false) return;
    this.frame = requestAnimationFrame(() => this.render());
  }

  private render(): void {
    this.frame = 0;
    if (!this.dirty || !this.visible()) return;
    const t0 = performance.now();
    this.dirty = false;
    this.summaryLine.textContent = formatSummaryLine(summarize(this.aggregator, t0));
    if (this.expanded && this.chartsDirty) {
      const wait = CHART_INTERVAL_MS - (t0 - this.chartsDrawnAt);
      if (wait <= 0) {
        this.renderCharts();
        this.chartsDirty = false;
        this.chartsDrawnAt = t0;
      } else {
        // Too soon for the charts: come back once the interval has passed (one timer, not a frame loop).
        this.chartTimer ??= setTimeout(() => {
          this.chartTimer = null;
          this.dirty = true;
          this.schedule();
        }, wait);
      }
    }
    this.cost.renders++;
    this.cost.renderMs += performance.now() - t0;
  }

  /** On screen: the observer's report, or before its first one, the panel's box against the viewport. */
  private visible(): boolean {
    if (this.onScreen !== null) return this.onScreen;
    const r = this.getBoundingClientRect(); // inside a frame callback: the layout the frame needs anyway
    return (r.width > 0 || r.height > 0) && r.bottom > 0 && r.right > 0 && r.top < innerHeight && r.left < innerWidth;
  }

  private renderMemory(): void {
    const rows = memoryRows(this.aggregator);
    const body = this.memoryTable.tBodies[0];
    this.memoryTable.hidden = rows.length === 0;
    body.replaceChildren(
      ...rows.map((r) => {
        const tr = document.createElement('tr');
        tr.dataset.owner = r.owner;
        for (const text of [r.owner, `${r.buffers} buffers`, formatBytes(r.bytes)]) tr.insertCell().textContent = text;
        return tr;
      }),
    );
  }

  private renderCharts(): void {
    const s = this.aggregator.session;
    this.sessionLine.textContent = s
      ? `${s.modelName} · policy ${s.policy} · budget ${Number.isFinite(s.budgetMs) ? formatMs(s.budgetMs) : 'none'} · SLO TTFT ${formatMs(s.slo.ttftMs)}, TBT ${formatMs(s.slo.tbtMs)}${this.aggregator.timing === 'wall' ? ' · GPU time is wall time (no timestamp queries)' : ''}`
      : 'No session announced yet.';
    this.renderMemory();
    const prefix = prefixLine(this.aggregator);
    this.prefixLine.hidden = prefix === null;
    this.prefixLine.textContent = prefix ?? '';
    const words = describeCharts(this.aggregator);
    let palette: Palette | null = null; // read from CSS only when a chart is created
    for (const [id, { spec, plot, text }] of this.figures) {
      text.textContent = words[id];
      const data = spec.data(this.aggregator) as uPlot.AlignedData;
      const u = this.plots.get(id);
      if (u) u.batch(() => u.setData(data)); // batch: draw now, inside the timed render (setData alone draws in a microtask)
      else this.plots.set(id, new uPlot(spec.options(this.plotWidth(plot), CHART_HEIGHT, (palette ??= this.palette())), data, plot));
    }
  }

  private plotWidth(plot: HTMLElement): number {
    return Math.max(200, Math.floor(plot.clientWidth) || 280);
  }

  private resizeCharts(): void {
    if (!this.expanded) return;
    for (const [id, u] of this.plots) {
      const width = this.plotWidth(this.figures.get(id)!.plot);
      if (width !== u.width) u.setSize({ width, height: CHART_HEIGHT });
    }
  }

  /** Chart colours from --mace-devtools-<key> custom properties, else the defaults. */
  private palette(): Palette {
    const css = getComputedStyle(this);
    const p = { ...DEFAULT_PALETTE };
    for (const key of Object.keys(p) as (keyof Palette)[]) {
      const v = css.getPropertyValue(`--mace-devtools-${key}`).trim();
      if (v) p[key] = v;
    }
    return p;
  }
}

/** Registers the element as <mace-devtools> (once; importing twice is harmless). */
export function defineMaceDevtools(tag = 'mace-devtools'): void {
  if (!customElements.get(tag)) customElements.define(tag, tag === 'mace-devtools' ? MaceDevtoolsElement : class extends MaceDevtoolsElement {});
}

declare global {
  interface HTMLElementTagNameMap {
    'mace-devtools': MaceDevtoolsElement;
  }
}
