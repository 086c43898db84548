/**
 * Charts of `mace bench drift --plot DIR` as standalone SVG text (no library, no DOM: the runner
 * writes the string to a file, in Node or from the page): lineChart (a metric over time, one line per
 * policy, dashed vertical lines at the drifts) and cdfChart (empirical CDFs, e.g. TBT per policy).
 *
 * What a chart holds, so tests can check it structurally (test/node/drift-plot.test.ts):
 * - one <path class="series"> per series with at least one point (for a line chart: one with a
 *   y; a point with y null breaks the line; each drawn point also gets a <circle>), in series order;
 * - x and y axes (<line class="axis">), ticks at "nice" steps (1, 2 or 5 × 10^k, about 5 per axis)
 *   labelled with just the decimals the step needs, light grid lines at the y ticks;
 * - a legend (<g class="legend">) with each series' name and colour, in series order;
 * - per marker a <line class="marker"> dashed from the top to the bottom of the plot area at the
 *   marker's x, and its label;
 * - every text escaped (&, <, >, quotes; characters XML 1.0 forbids become U+FFFD), so any series
 *   name gives well-formed XML.
 * Colours: the four policies always get the same colour (POLICY_COLOURS, from the Okabe–Ito
 * colour-blind-safe palette), any other series the next of OTHER_COLOURS in order; a series may set
 * its own. Scales: the data's extent (markers included) widened to whole ticks, unless xRange /
 * yRange fix it; points outside a fixed range are clipped to the plot area.
 */
import type { PolicyName } from '../../src/scheduler/stats.ts';
import { DriftError } from './errors.ts';

export const POLICY_COLOURS: Readonly<Record<PolicyName, string>> = Object.freeze({ mace: '#D55E00', periodic: '#0072B2', sync: '#009E73', 'inference-only': '#555555' });
export const OTHER_COLOURS: readonly string[] = Object.freeze(['#E69F00', '#CC79A7', '#56B4E9', '#000000', '#8C564B']);

export interface LineSeries {
  name: string;
  points: { x: number; y: number | null }[];
  colour?: string;
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: LineSeries[];
  markers?: { x: number; label: string }[];
  xRange?: [number, number];
  yRange?: [number, number];
  width?: number;
  height?: number;
}

export interface CdfSeries {
  name: string;
  samples: number[];
  colour?: string;
}

export interface CdfChartOptions {
  title: string;
  xLabel: string;
  /** Default 'share of samples ≤ x'. */
  yLabel?: string;
  series: CdfSeries[];
  xRange?: [number, number];
  width?: number;
  height?: number;
}

/** Space around the plot area (px): the legend lives in the right margin. */
export const MARGIN = Object.freeze({ left: 70, right: 180, top: 44, bottom: 56 });

/** Text safe inside an XML element or a quoted attribute. */
export function escapeXml(s: string): string {
  return s
    .replace(/[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu, '\uFFFD')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

/** A pixel coordinate with at most 2 decimals (no '-0'). */
function px(n: number): string {
  const r = Math.round(n * 100) / 100;
  return String(r === 0 ? 0 : r);
}

export interface Scale {
  lo: number;
  hi: number;
  step: number;
  ticks: number[];
  /** Decimals of the tick labels. */
  decimals: number;
}

/**
 * Ticks about `count` apart at 1, 2 or 5 × 10^k over [min, max]: widened to whole steps unless
 * `fixed` (then only the ticks inside). An empty range is widened to [min − 1, max + 1] (or [0, 1]).
 */
export function niceScale(min: number, max: number, fixed = false, count = 5): Scale {
  if (!(Number.isFinite(min) && Number.isFinite(max)) || max < min) throw new DriftError('range', `[${min}, ${max}] must be finite with max >= min`);
  if (fixed && max === min) throw new DriftError('range', `[${min}, ${max}] must not be empty`);
  if (max === min) [min, max] = min === 0 ? [0, 1] : [min - Math.abs(min) * 0.1, max + Math.abs(max) * 0.1];
  const rough = (max - min) / count;
  const mag = 10 ** Math.floor(Math.log10(rough));
  const norm = rough / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  const round = (v: number) => Number(v.toFixed(decimals + 2));
  const lo = fixed ? min : round(Math.floor(min / step + 1e-9) * step);
  const hi = fixed ? max : round(Math.ceil(max / step - 1e-9) * step);
  const ticks: number[] = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) ticks.push(round(k * step));
  return { lo, hi, step, ticks, decimals };
}

interface Frame {
  width: number;
  height: number;
  x: Scale;
  y: Scale;
  /** Data → pixel. */
  sx(v: number): number;
  sy(v: number): number;
}

function frame(width: number, height: number, x: Scale, y: Scale): Frame {
  const left = MARGIN.left;
  const right = width - MARGIN.right;
  const top = MARGIN.top;
  const bottom = height - MARGIN.bottom;
  return { width, height, x, y, sx: (v) => left + ((v - x.lo) / (x.hi - x.lo)) * (right - left), sy: (v) => bottom - ((v - y.lo) / (y.hi - y.lo)) * (bottom - top) };
}

function checkName(v: unknown, field: string): string {
  if (typeof v !== 'string') throw new DriftError(field, `must be a string, got ${typeof v}`);
  return v;
}

function checkSize(o: { width?: number; height?: number }): { width: number; height: number } {
  const width = o.width ?? 720;
  const height = o.height ?? 420;
  if (!Number.isInteger(width) || width < MARGIN.left + MARGIN.right + 100) throw new DriftError('width', `= ${String(width)}; it must be an integer >= ${MARGIN.left + MARGIN.right + 100}`);
  if (!Number.isInteger(height) || height < MARGIN.top + MARGIN.bottom + 100) throw new DriftError('height', `= ${String(height)}; it must be an integer >= ${MARGIN.top + MARGIN.bottom + 100}`);
  return { width, height };
}

function checkRange(r: [number, number] | undefined, field: string): void {
  if (r === undefined) return;
  if (!Array.isArray(r) || r.length !== 2 || !Number.isFinite(r[0]) || !Number.isFinite(r[1]) || !(r[1] > r[0])) throw new DriftError(field, `= ${JSON.stringify(r)}; it must be [lo, hi] with finite lo < hi`);
}

/** Colour of each series, in order (see the file comment). */
export function seriesColours(series: readonly { name: string; colour?: string }[]): string[] {
  let other = 0;
  return series.map((s) => s.colour ?? (Object.hasOwn(POLICY_COLOURS, s.name) ? POLICY_COLOURS[s.name as PolicyName] : OTHER_COLOURS[other++ % OTHER_COLOURS.length]));
}

/** Background, title, grid, axes, ticks, axis labels, clip path: everything but the data. */
function chrome(f: Frame, title: string, xLabel: string, yLabel: string): string[] {
  const { width, height } = f;
  const [l, r, t, b] = [MARGIN.left, width - MARGIN.right, MARGIN.top, height - MARGIN.bottom];
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<defs><clipPath id="plot-area"><rect x="${l}" y="${t}" width="${r - l}" height="${b - t}"/></clipPath></defs>`,
    `<text class="title" x="${px(width / 2)}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
  ];
  for (const v of f.y.ticks) out.push(`<line class="grid" x1="${l}" x2="${r}" y1="${px(f.sy(v))}" y2="${px(f.sy(v))}" stroke="#e6e6e6"/>`);
  out.push(`<line class="axis" x1="${l}" x2="${r}" y1="${b}" y2="${b}" stroke="#000000"/>`, `<line class="axis" x1="${l}" x2="${l}" y1="${t}" y2="${b}" stroke="#000000"/>`);
  for (const v of f.x.ticks) {
    const x = px(f.sx(v));
    out.push(`<line class="tick" x1="${x}" x2="${x}" y1="${b}" y2="${b + 5}" stroke="#000000"/>`, `<text class="tick-x" x="${x}" y="${b + 18}" text-anchor="middle">${v.toFixed(f.x.decimals)}</text>`);
  }
  for (const v of f.y.ticks) {
    const y = px(f.sy(v));
    out.push(`<line class="tick" x1="${l - 5}" x2="${l}" y1="${y}" y2="${y}" stroke="#000000"/>`, `<text class="tick-y" x="${l - 8}" y="${y}" text-anchor="end" dominant-baseline="middle">${v.toFixed(f.y.decimals)}</text>`);
  }
  const cy = px((t + b) / 2);
  out.push(`<text class="xlabel" x="${px((l + r) / 2)}" y="${height - 14}" text-anchor="middle">${escapeXml(xLabel)}</text>`, `<text class="ylabel" x="18" y="${cy}" text-anchor="middle" transform="rotate(-90 18 ${cy})">${escapeXml(yLabel)}</text>`);
  return out;
}

function legend(f: Frame, names: string[], colours: string[]): string {
  const x = f.width - MARGIN.right + 16;
  const rows = names.map((n, i) => {
    const y = MARGIN.top + 8 + i * 20;
    return `<line x1="${x}" x2="${x + 22}" y1="${y}" y2="${y}" stroke="${colours[i]}" stroke-width="3"/><text x="${x + 28}" y="${y}" dominant-baseline="middle">${escapeXml(names[i])}</text>`;
  });
  return `<g class="legend">${rows.join('')}</g>`;
}

/** A metric over time: one line per series, dashed markers (see the file comment). */
export function lineChart(o: LineChartOptions): string {
  const { width, height } = checkSize(o);
  const title = checkName(o.title, 'title');
  const xLabel = checkName(o.xLabel, 'xLabel');
  const yLabel = checkName(o.yLabel, 'yLabel');
  if (!Array.isArray(o.series)) throw new DriftError('series', 'must be a list of { name, points }');
  const markers = o.markers ?? [];
  if (!Array.isArray(markers)) throw new DriftError('markers', 'must be a list of { x, label }');
  checkRange(o.xRange, 'xRange');
  checkRange(o.yRange, 'yRange');
  const xs: number[] = [];
  const ys: number[] = [];
  o.series.forEach((s, i) => {
    checkName(s?.name, `series[${i}].name`);
    if (!Array.isArray(s.points)) throw new DriftError(`series[${i}].points`, 'must be a list of { x, y }');
    s.points.forEach((p, j) => {
      if (!Number.isFinite(p?.x)) throw new DriftError(`series[${i}].points[${j}].x`, `= ${String(p?.x)}; it must be a finite number`);
      if (p.y !== null && !Number.isFinite(p.y)) throw new DriftError(`series[${i}].points[${j}].y`, `= ${String(p.y)}; it must be a finite number or null (a gap)`);
      xs.push(p.x);
      if (p.y !== null) ys.push(p.y);
    });
  });
  markers.forEach((m, i) => {
    if (!Number.isFinite(m?.x)) throw new DriftError(`markers[${i}].x`, `= ${String(m?.x)}; it must be a finite number`);
    checkName(m.label, `markers[${i}].label`);
    xs.push(m.x);
  });
  const ext = (v: number[]): [number, number] => (v.length === 0 ? [0, 1] : [Math.min(...v), Math.max(...v)]);
  const x = o.xRange ? niceScale(o.xRange[0], o.xRange[1], true) : niceScale(...ext(xs));
  const y = o.yRange ? niceScale(o.yRange[0], o.yRange[1], true) : niceScale(...ext(ys));
  const f = frame(width, height, x, y);
  const out = chrome(f, title, xLabel, yLabel);
  const colours = seriesColours(o.series);
  out.push('<g clip-path="url(#plot-area)">');
  o.series.forEach((s, i) => {
    if (s.points.length === 0) return;
    let d = '';
    let pen = false;
    const dots: string[] = [];
    for (const p of s.points) {
      if (p.y === null) {
        pen = false;
        continue;
      }
      d += `${d === '' ? '' : ' '}${pen ? 'L' : 'M'}${px(f.sx(p.x))} ${px(f.sy(p.y))}`;
      pen = true;
      dots.push(`<circle cx="${px(f.sx(p.x))}" cy="${px(f.sy(p.y))}" r="2.5" fill="${colours[i]}"/>`);
    }
    if (d === '') return; // only gaps: nothing to draw, the legend still names it
    out.push(`<path class="series" data-name="${escapeXml(s.name)}" d="${d}" fill="none" stroke="${colours[i]}" stroke-width="2"/>`, ...dots);
  });
  out.push('</g>');
  const [top, bottom] = [MARGIN.top, height - MARGIN.bottom];
  for (const m of markers) {
    const mx = px(f.sx(m.x));
    out.push(`<line class="marker" x1="${mx}" x2="${mx}" y1="${top}" y2="${bottom}" stroke="#333333" stroke-dasharray="6 4"/>`, `<text class="marker-label" x="${mx}" y="${top - 6}" text-anchor="middle" font-size="11">${escapeXml(m.label)}</text>`);
  }
  out.push(legend(f, o.series.map((s) => s.name), colours), '</svg>');
  return out.join('\n') + '\n';
}

/** The empirical CDF of each series' samples: a step from 0 to 1 (see the file comment). */
export function cdfChart(o: CdfChartOptions): string {
  const { width, height } = checkSize(o);
  const title = checkName(o.title, 'title');
  const xLabel = checkName(o.xLabel, 'xLabel');
  const yLabel = checkName(o.yLabel ?? 'share of samples ≤ x', 'yLabel');
  if (!Array.isArray(o.series)) throw new DriftError('series', 'must be a list of { name, samples }');
  checkRange(o.xRange, 'xRange');
  let min = Infinity;
  let max = -Infinity;
  const sorted = o.series.map((s, i) => {
    checkName(s?.name, `series[${i}].name`);
    if (!Array.isArray(s.samples)) throw new DriftError(`series[${i}].samples`, 'must be a list of numbers');
    s.samples.forEach((v, j) => {
      if (!Number.isFinite(v)) throw new DriftError(`series[${i}].samples[${j}]`, `= ${String(v)}; it must be a finite number`);
    });
    const a = [...s.samples].sort((p, q) => p - q);
    if (a.length > 0) [min, max] = [Math.min(min, a[0]), Math.max(max, a[a.length - 1])];
    return a;
  });
  const x = o.xRange ? niceScale(o.xRange[0], o.xRange[1], true) : min === Infinity ? niceScale(0, 1) : niceScale(min, max);
  const f = frame(width, height, x, niceScale(0, 1, true));
  const out = chrome(f, title, xLabel, yLabel);
  const colours = seriesColours(o.series);
  out.push('<g clip-path="url(#plot-area)">');
  sorted.forEach((a, i) => {
    if (a.length === 0) return;
    // From the left edge at 0; at each distinct value up to the share ≤ it; on to the right edge at 1.
    let d = `M${px(f.sx(x.lo))} ${px(f.sy(0))}`;
    for (let k = 0; k < a.length; k++) {
      if (k + 1 < a.length && a[k + 1] === a[k]) continue;
      d += ` H${px(f.sx(a[k]))} V${px(f.sy((k + 1) / a.length))}`;
    }
    d += ` H${px(f.sx(x.hi))}`;
    out.push(`<path class="series" data-name="${escapeXml(o.series[i].name)}" d="${d}" fill="none" stroke="${colours[i]}" stroke-width="2"/>`);
  });
  out.push('</g>', legend(f, o.series.map((s) => s.name), colours), '</svg>');
  return out.join('\n') + '\n';
}
