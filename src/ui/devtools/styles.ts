/**
 * The panel's shadow-root CSS: uPlot's own stylesheet (inlined as a string by Vite) plus the panel's
 * layout. Theme through custom properties on the host (they inherit into the shadow root):
 * --mace-devtools-bg, -fg, -muted, -border, -accent, -font, and the chart colours
 * --mace-devtools-<palette key> (prefill, decode, finetune, budget, slo, ... see charts.ts Palette).
 */
import uplotCss from 'uplot/dist/uPlot.min.css?inline';

const panelCss = `
:host {
  display: block;
  color: var(--mace-devtools-fg, #c9d1d9);
  background: var(--mace-devtools-bg, #0d1117);
  border: 1px solid var(--mace-devtools-border, #30363d);
  border-radius: 8px;
  font: 12px/1.4 var(--mace-devtools-font, ui-monospace, SFMono-Regular, Menlo, Consolas, monospace);
  contain: content;
}
:host([hidden]) { display: none; }
header { display: flex; align-items: center; gap: 8px; padding: 6px 8px; min-width: 0; }
button.toggle {
  flex: none; display: inline-flex; align-items: center; gap: 6px;
  font: inherit; color: inherit; background: transparent;
  border: 1px solid var(--mace-devtools-border, #30363d); border-radius: 6px; padding: 2px 8px; cursor: pointer;
}
button.toggle:hover { background: rgba(127, 127, 127, 0.15); }
button.toggle:focus-visible { outline: 2px solid var(--mace-devtools-accent, #4e9af1); outline-offset: 1px; }
button.toggle .chevron { display: inline-block; transition: transform 120ms ease; }
button.toggle[aria-expanded='true'] .chevron { transform: rotate(90deg); }
.summary { margin: 0; flex: 1; min-width: 0; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; font-variant-numeric: tabular-nums; }
.error { margin: 0 8px 6px; color: var(--mace-devtools-error, #f85149); }
.error:empty { display: none; }
.body { padding: 0 8px 8px; }
.body[hidden] { display: none; }
.session { margin: 0 0 6px; color: var(--mace-devtools-muted, #8b949e); }
.memory { margin: 0 0 8px; border-collapse: collapse; font-variant-numeric: tabular-nums; }
.memory caption { text-align: left; font-weight: 600; margin-bottom: 2px; }
.memory td { padding: 1px 12px 1px 0; }
.memory tr[data-owner='total'] td { border-top: 1px solid var(--mace-devtools-border, #30363d); font-weight: 600; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(280px, 1fr)); gap: 8px; }
figure { margin: 0; padding: 6px; border: 1px solid var(--mace-devtools-border, #30363d); border-radius: 6px; min-width: 0; }
figcaption { font-weight: 600; margin-bottom: 4px; }
.plot { min-height: 140px; }
.chart-summary { margin: 4px 0 0; color: var(--mace-devtools-muted, #8b949e); font-variant-numeric: tabular-nums; }
.uplot { font-family: inherit; }
.u-legend { font-size: 11px; text-align: left; }
.u-legend .u-marker { width: 0.8em; height: 0.8em; }
@media (prefers-reduced-motion: reduce) { button.toggle .chevron { transition: none; } }
`;

export const PANEL_CSS = `${uplotCss}\n${panelCss}`;
