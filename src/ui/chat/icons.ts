/**
 * The widget's icons as SVG built with createElementNS from fixed path data (no markup strings).
 * They are decorative: the buttons that hold them carry the accessible names.
 */
const SVG_NS = 'http://www.w3.org/2000/svg';

/** A thumb up with its cuff on the left. */
const THUMB = 'M7 11v9H4a1 1 0 0 1-1-1v-7a1 1 0 0 1 1-1h3Zm0 0 4-8a2 2 0 0 1 2.9 2.2L13 10h6a2 2 0 0 1 2 2.3l-1.2 6A2 2 0 0 1 17.8 20H7';

const PATHS = {
  thumbUp: THUMB,
  // The thumb up turned over (see ROTATED).
  thumbDown: THUMB,
  regenerate: 'M20 11a8 8 0 1 0-2.3 5.7M20 4v7h-7',
  send: 'M4 12 20 4l-4 16-4-7-8-1Zm8 1 8-9',
  stop: 'M7 7h10v10H7z',
  clear: 'M4 7h16M9 7V4h6v3m-8 0 1 13h8l1-13',
  download: 'M12 4v11m-5-5 5 5 5-5M5 20h14',
  layers: 'M12 3 3 8l9 5 9-5-9-5Zm-9 9 9 5 9-5M3 16l9 5 9-5',
  chevronLeft: 'M15 5l-7 7 7 7',
  chevronRight: 'M9 5l7 7-7 7',
} as const;

export type IconName = keyof typeof PATHS;

/** Icons drawn as another icon turned half a turn. */
const ROTATED: ReadonlySet<IconName> = new Set(['thumbDown']);

/** Outline icons for the actions, filled ones for the thumbs (their pressed state fills via CSS). */
export function icon(name: IconName): SVGSVGElement {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', '18');
  svg.setAttribute('height', '18');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.classList.add('icon', `icon-${name}`);
  const path = document.createElementNS(SVG_NS, 'path');
  path.setAttribute('d', PATHS[name]);
  if (ROTATED.has(name)) path.setAttribute('transform', 'rotate(180 12 12)');
  svg.append(path);
  return svg;
}
