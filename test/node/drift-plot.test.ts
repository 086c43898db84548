/**
 * The drift charts' SVG writer (bench/drift/plot.ts): structure (one path per series, ticks, legend,
 * a dashed marker at the right pixel), fixed policy colours, escaping, and well-formed XML (checked
 * by the small parser below: one root, balanced tags, quoted attributes, only known entities).
 */
import { describe, expect, it } from 'vitest';
import { cdfChart, escapeXml, lineChart, MARGIN, niceScale, OTHER_COLOURS, POLICY_COLOURS, seriesColours } from '../../bench/drift/plot.ts';

/** Throws unless `xml` is one well-formed element (no DTD, comments or CDATA: the writer emits none). */
function checkWellFormed(xml: string): void {
  const entity = /&(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-f]+);/gi;
  const text = (s: string, where: string) => {
    if (/[<>]/.test(s) || /&/.test(s.replace(entity, ''))) throw new Error(`bad character data ${where}: ${JSON.stringify(s.slice(0, 60))}`);
  };
  const stack: string[] = [];
  let roots = 0;
  let i = 0;
  const tag = /<(\/?)([A-Za-z_][\w.:-]*)((?:\s+[A-Za-z_][\w.:-]*\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>/y;
  while (i < xml.length) {
    const lt = xml.indexOf('<', i);
    const chunk = xml.slice(i, lt === -1 ? xml.length : lt);
    if (stack.length === 0 && chunk.trim() !== '') throw new Error(`text outside the root: ${JSON.stringify(chunk.slice(0, 40))}`);
    text(chunk, `at ${i}`);
    if (lt === -1) break;
    tag.lastIndex = lt;
    const m = tag.exec(xml);
    if (!m) throw new Error(`malformed tag at ${lt}: ${JSON.stringify(xml.slice(lt, lt + 60))}`);
    const [, close, name, attrs, selfClose] = m;
    const seen = new Set<string>();
    for (const a of attrs.matchAll(/([A-Za-z_][\w.:-]*)\s*=\s*("([^"]*)"|'([^']*)')/g)) {
      if (seen.has(a[1])) throw new Error(`duplicate attribute ${a[1]} on <${name}>`);
      seen.add(a[1]);
      text(a[3] ?? a[4], `in ${name}@${a[1]}`);
    }
    if (close) {
      if (stack.pop() !== name) throw new Error(`</${name}> closes nothing open`);
    } else {
      if (stack.length === 0) roots++;
      if (!selfClose) stack.push(name);
    }
    i = lt + m[0].length;
  }
  if (stack.length) throw new Error(`unclosed <${stack.join('>, <')}>`);
  if (roots !== 1) throw new Error(`${roots} root elements`);
}

const count = (s: string, needle: string) => s.split(needle).length - 1;
const attr = (el: string, name: string) => new RegExp(`\\s${name}="([^"]*)"`).exec(el)?.[1];
const elements = (svg: string, tagAndClass: string): string[] => svg.match(new RegExp(`<${tagAndClass}[^>]*>`, 'g')) ?? [];

/** Four policies over 0..600 s, drift at 300 s. */
function drift(): string {
  const pts = (f: (t: number) => number) => [0, 100, 200, 300, 400, 500, 600].map((x) => ({ x, y: f(x) }));
  return lineChart({
    title: 'Win rate over the base model',
    xLabel: 'time (s)',
    yLabel: 'win rate',
    yRange: [0, 1],
    markers: [{ x: 300, label: 'drift: mentions a cat, dog or ball' }],
    series: [
      { name: 'mace', points: pts((t) => (t < 300 ? 0.5 + t / 1000 : 0.4 + (t - 300) / 1000)) },
      { name: 'periodic', points: pts((t) => (t < 300 ? 0.5 : 0.45)) },
      { name: 'sync', points: pts((t) => (t < 300 ? 0.55 + t / 2000 : 0.42 + (t - 300) / 800)) },
      { name: 'inference-only', points: pts(() => 0.5) },
    ],
  });
}

describe('niceScale', () => {
  it('steps of 1, 2 or 5 x 10^k, widened to whole steps unless fixed', () => {
    expect(niceScale(0, 600)).toEqual({ lo: 0, hi: 600, step: 100, ticks: [0, 100, 200, 300, 400, 500, 600], decimals: 0 });
    expect(niceScale(0, 590)).toMatchObject({ lo: 0, hi: 600, step: 100 });
    expect(niceScale(0.23, 0.87)).toEqual({ lo: 0.2, hi: 0.9, step: 0.1, ticks: [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], decimals: 1 });
    expect(niceScale(0, 1, true)).toEqual({ lo: 0, hi: 1, step: 0.2, ticks: [0, 0.2, 0.4, 0.6, 0.8, 1], decimals: 1 });
    expect(niceScale(-3.7, 12)).toEqual({ lo: -5, hi: 15, step: 5, ticks: [-5, 0, 5, 10, 15], decimals: 0 }); // rough 15.7 / 5 = 3.14 → 5
    expect(niceScale(-3.7, 8)).toEqual({ lo: -4, hi: 8, step: 2, ticks: [-4, -2, 0, 2, 4, 6, 8], decimals: 0 }); // rough 2.34 → 2
    expect(niceScale(0.05, 0.95, true).ticks).toEqual([0.2, 0.4, 0.6, 0.8]);
    expect(niceScale(0, 0)).toMatchObject({ lo: 0, hi: 1 });
    expect(niceScale(5, 5)).toMatchObject({ lo: 4.4, hi: 5.6, step: 0.2 }); // widened to [4.5, 5.5] first
    expect(() => niceScale(2, 1)).toThrow(expect.objectContaining({ field: 'range' }));
  });
});

describe('lineChart', () => {
  it('is well-formed XML with one path per series, in the policy colours, and a legend in series order', () => {
    const svg = drift();
    checkWellFormed(svg);
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg" width="720" height="420" viewBox="0 0 720 420"')).toBe(true);
    const paths = elements(svg, 'path class="series"');
    expect(paths.map((p) => [attr(p, 'data-name'), attr(p, 'stroke')])).toEqual([
      ['mace', POLICY_COLOURS.mace], ['periodic', POLICY_COLOURS.periodic], ['sync', POLICY_COLOURS.sync], ['inference-only', POLICY_COLOURS['inference-only']],
    ]);
    expect(count(svg, '<path')).toBe(4);
    expect(count(svg, '<circle')).toBe(28); // 7 points x 4 series
    const legend = svg.slice(svg.indexOf('<g class="legend">'));
    expect([...legend.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1])).toEqual(['mace', 'periodic', 'sync', 'inference-only']);
    expect([...legend.matchAll(/stroke="([^"]*)"/g)].map((m) => m[1])).toEqual(['#D55E00', '#0072B2', '#009E73', '#555555']);
  });

  it('ticks at nice steps with their labels; axes; y grid lines', () => {
    const svg = drift();
    expect(elements(svg, 'text class="tick-x"').length).toBe(7);
    expect([...svg.matchAll(/<text class="tick-x"[^>]*>([^<]*)</g)].map((m) => m[1])).toEqual(['0', '100', '200', '300', '400', '500', '600']);
    expect([...svg.matchAll(/<text class="tick-y"[^>]*>([^<]*)</g)].map((m) => m[1])).toEqual(['0.0', '0.2', '0.4', '0.6', '0.8', '1.0']);
    expect(elements(svg, 'line class="axis"')).toHaveLength(2);
    expect(elements(svg, 'line class="grid"')).toHaveLength(6);
    expect(svg).toContain('>time (s)</text>');
    expect(svg).toContain('transform="rotate(-90 18 204)">win rate</text>');
  });

  it('a dashed marker line at the drift: x = 70 + 300/600 x (720 − 70 − 180) = 305, top to bottom of the plot', () => {
    const svg = drift();
    const [marker] = elements(svg, 'line class="marker"');
    expect(marker).toBe('<line class="marker" x1="305" x2="305" y1="44" y2="364" stroke="#333333" stroke-dasharray="6 4"/>');
    expect(svg).toContain('<text class="marker-label" x="305" y="38" text-anchor="middle" font-size="11">drift: mentions a cat, dog or ball</text>');
    // The point (300, 0.5) of inference-only sits at pixel (305, 364 − 0.5 x 320 = 204).
    expect(attr(elements(svg, 'path class="series" data-name="inference-only"')[0], 'd')).toBe('M70 204 L148.33 204 L226.67 204 L305 204 L383.33 204 L461.67 204 L540 204');
    expect(MARGIN).toEqual({ left: 70, right: 180, top: 44, bottom: 56 });
  });

  it('escapes every text: a name with <, & and quotes keeps the SVG well-formed', () => {
    const name = 'a<b & "c" \'d\' >e\u0001';
    const svg = lineChart({ title: 'T & <U>', xLabel: 'x < 1', yLabel: 'y & z', series: [{ name, points: [{ x: 0, y: 1 }, { x: 1, y: 2 }] }], markers: [{ x: 0.5, label: '<drift>' }] });
    checkWellFormed(svg);
    const esc = 'a&lt;b &amp; &quot;c&quot; &apos;d&apos; &gt;e\uFFFD';
    expect(escapeXml(name)).toBe(esc);
    expect(svg).toContain(`data-name="${esc}"`);
    expect(svg).toContain(`>${esc}</text>`);
    expect(svg).toContain('<title>T &amp; &lt;U&gt;</title>');
    expect(svg).toContain('>&lt;drift&gt;</text>');
    expect(svg).not.toContain('a<b');
  });

  it('a null y breaks the line; a series of only gaps or no points draws nothing but keeps its legend entry', () => {
    const svg = lineChart({
      title: 't', xLabel: 'x', yLabel: 'y', xRange: [0, 4], yRange: [0, 1],
      series: [
        { name: 'gappy', points: [{ x: 0, y: 0 }, { x: 1, y: 1 }, { x: 2, y: null }, { x: 3, y: 1 }, { x: 4, y: 0 }] },
        { name: 'none', points: [{ x: 1, y: null }] },
        { name: 'empty', points: [] },
      ],
    });
    checkWellFormed(svg);
    expect(elements(svg, 'path class="series"').map((p) => attr(p, 'd'))).toEqual(['M70 364 L187.5 44 M422.5 44 L540 364']);
    expect(count(svg, '<circle')).toBe(4);
    expect(svg).toContain('>none</text>');
    expect(svg).toContain('>empty</text>');
  });

  it('colours: policies fixed wherever they appear, other series the other palette in order, or their own', () => {
    expect(seriesColours([{ name: 'x' }, { name: 'sync' }, { name: 'y' }, { name: 'mace', colour: '#123456' }, { name: 'mace' }])).toEqual([OTHER_COLOURS[0], POLICY_COLOURS.sync, OTHER_COLOURS[1], '#123456', POLICY_COLOURS.mace]);
    expect(seriesColours([{ name: 'toString' }])).toEqual([OTHER_COLOURS[0]]); // not a prototype key
  });

  it('bad input is a DriftError naming the field', () => {
    const base = { title: 't', xLabel: 'x', yLabel: 'y' };
    expect(() => lineChart({ ...base, series: [{ name: 'a', points: [{ x: 0, y: 1 }, { x: NaN, y: 1 }] }] })).toThrow(expect.objectContaining({ field: 'series[0].points[1].x' }));
    expect(() => lineChart({ ...base, series: [{ name: 'a', points: [{ x: 0, y: Infinity }] }] })).toThrow(expect.objectContaining({ field: 'series[0].points[0].y' }));
    expect(() => lineChart({ ...base, series: [], markers: [{ x: NaN, label: 'd' }] })).toThrow(expect.objectContaining({ field: 'markers[0].x' }));
    expect(() => lineChart({ ...base, series: [], yRange: [1, 0] })).toThrow(expect.objectContaining({ field: 'yRange' }));
    expect(() => lineChart({ ...base, series: [{ name: 3 as unknown as string, points: [] }] })).toThrow(expect.objectContaining({ field: 'series[0].name' }));
    expect(() => lineChart({ ...base, series: [], width: 100 })).toThrow(expect.objectContaining({ field: 'width' }));
  });
});

describe('cdfChart', () => {
  it('a step from 0 at the left edge, up at each distinct sample to the share at or below it, to 1 at the right edge', () => {
    const svg = cdfChart({ title: 'TBT', xLabel: 'TBT (ms)', series: [{ name: 'mace', samples: [4, 2, 1, 2] }, { name: 'sync', samples: [] }] });
    checkWellFormed(svg);
    // x: niceScale(1, 4) → step 0.5, [1, 4]: sx(1) = 70, sx(2) = 70 + 470/3, sx(4) = 540; y: 1/4 → 284, 3/4 → 124, 1 → 44.
    expect(elements(svg, 'path class="series"').map((p) => attr(p, 'd'))).toEqual(['M70 364 H70 V284 H226.67 V124 H540 V44 H540']);
    expect([...svg.matchAll(/<text class="tick-x"[^>]*>([^<]*)</g)].map((m) => m[1])).toEqual(['1.0', '1.5', '2.0', '2.5', '3.0', '3.5', '4.0']);
    expect([...svg.matchAll(/<text class="tick-y"[^>]*>([^<]*)</g)].map((m) => m[1])).toEqual(['0.0', '0.2', '0.4', '0.6', '0.8', '1.0']);
    expect(svg).toContain('share of samples ≤ x</text>');
    expect(svg).toContain('>sync</text>'); // no samples: legend only
  });

  it('one path per non-empty series in the policy colours; bad samples name the field', () => {
    const svg = cdfChart({ title: 'TTFT', xLabel: 'ms', xRange: [0, 100], series: ['inference-only', 'mace', 'periodic', 'sync'].map((name, i) => ({ name, samples: [10 + i, 20 + i, 30 + i, 90] })) });
    checkWellFormed(svg);
    expect(elements(svg, 'path class="series"').map((p) => attr(p, 'stroke'))).toEqual([POLICY_COLOURS['inference-only'], POLICY_COLOURS.mace, POLICY_COLOURS.periodic, POLICY_COLOURS.sync]);
    expect(() => cdfChart({ title: 't', xLabel: 'x', series: [{ name: 'a', samples: [1, NaN] }] })).toThrow(expect.objectContaining({ field: 'series[0].samples[1]' }));
  });
});
