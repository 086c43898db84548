/**
 * Markdown for untrusted text (model output), in two layers so that neither alone has to be perfect:
 *
 * 1. `markdownToHtml` (pure, runs in Node too): `marked` with a renderer that never passes HTML
 *    through. Raw HTML in the text is escaped and shown as text; links keep only absolute http(s)
 *    and mailto targets (anything else, e.g. `javascript:`, stays plain text) and always get
 *    rel="noopener noreferrer nofollow" and target="_blank"; images become links (an <img> would
 *    fetch from a host the model chose, on render, without a click); task-list checkboxes become
 *    characters.
 * 2. `renderMarkdown` (browser): the HTML from layer 1 goes through DOMPurify with an allow-list
 *    of tags and attributes, and comes back as a DocumentFragment, never as a string assigned to
 *    innerHTML by the caller.
 */
import DOMPurify, { type DOMPurify as Purifier } from 'dompurify';
import { Marked, type Tokens } from 'marked';

/** Link targets allowed through (checked on the parsed URL's protocol). */
const SAFE_PROTOCOLS = new Set(['http:', 'https:', 'mailto:']);
/** What every rendered link carries: no window.opener, no referrer, no ranking credit. */
export const LINK_REL = 'noopener noreferrer nofollow';

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text → HTML text: the five characters that can start markup or end an attribute. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

/** The absolute URL to link to, or null when the target is relative, malformed or not http(s)/mailto. */
export function safeHref(href: string): string | null {
  let url: URL;
  try {
    url = new URL(href.trim());
  } catch {
    return null;
  }
  return SAFE_PROTOCOLS.has(url.protocol) ? url.href : null;
}

function anchor(href: string, title: string | null | undefined, inner: string): string {
  const t = title ? ` title="${escapeHtml(title)}"` : '';
  return `<a href="${escapeHtml(href)}"${t} rel="${LINK_REL}" target="_blank">${inner}</a>`;
}

const marked = new Marked({
  gfm: true,
  // Model output uses single newlines as line breaks (stories, poems): keep them.
  breaks: true,
  async: false,
  renderer: {
    html({ text, block }: Tokens.HTML | Tokens.Tag): string {
      const shown = escapeHtml(text);
      return block ? `<p>${shown}</p>\n` : shown;
    },
    link({ href, title, tokens }: Tokens.Link): string {
      const inner = this.parser.parseInline(tokens);
      const safe = safeHref(href);
      return safe ? anchor(safe, title, inner) : inner;
    },
    image({ href, title, text }: Tokens.Image): string {
      const label = escapeHtml(text || 'image');
      const safe = safeHref(href);
      return safe ? anchor(safe, title, `[image: ${label}]`) : `[image: ${label}]`;
    },
    checkbox({ checked }: Tokens.Checkbox): string {
      return checked ? '☑ ' : '☐ ';
    },
  },
});

/** Markdown → HTML in which every tag was made by the renderer (input HTML is escaped). */
export function markdownToHtml(text: string): string {
  if (typeof text !== 'string') throw new TypeError(`markdownToHtml: text must be a string, got ${typeof text}`);
  return marked.parse(text, { async: false });
}

/** Tags the renderer above produces; anything else is dropped by the sanitizer. */
const ALLOWED_TAGS = [
  'p', 'br', 'strong', 'em', 'del', 'code', 'pre', 'blockquote', 'ul', 'ol', 'li', 'a', 'hr',
  'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'table', 'thead', 'tbody', 'tr', 'th', 'td',
];
const ALLOWED_ATTR = ['href', 'title', 'rel', 'target', 'start', 'align'];

let purifier: Purifier | null = null;

/** A DOMPurify instance of our own, so its hook does not change the page's DOMPurify. */
function getPurifier(): Purifier {
  if (purifier) return purifier;
  if (typeof window === 'undefined') throw new Error('renderMarkdown needs a DOM (window); use markdownToHtml outside a browser');
  const p = DOMPurify(window);
  // An unsupported DOMPurify returns its input unchanged: refuse rather than pass HTML through.
  if (!p.isSupported) throw new Error('renderMarkdown: DOMPurify cannot run in this environment');
  p.addHook('afterSanitizeAttributes', (node) => {
    if (node.nodeName === 'A') {
      node.setAttribute('rel', LINK_REL);
      node.setAttribute('target', '_blank');
    }
  });
  purifier = p;
  return p;
}

/** Untrusted markdown → sanitized DOM nodes, ready to append. */
export function renderMarkdown(text: string): DocumentFragment {
  // trim: no whitespace text node after the last block.
  return getPurifier().sanitize(markdownToHtml(text).trim(), {
    ALLOWED_TAGS,
    ALLOWED_ATTR,
    ALLOWED_URI_REGEXP: /^(?:https?:|mailto:)/i,
    RETURN_DOM_FRAGMENT: true,
  });
}

let warmed = false;
/** Touches the renderer's paths, Unicode punctuation included (its regular expressions compile lazily). */
const WARM_TEXT = '…, a *warm* **up** — “quoted”, _em_, ~~del~~, `code`, <b>x</b>, [a link](https://example.com) https://example.org\n\n# Title\n> quote\n\n1. one\n2. two\n\n| a | b |\n|---|---|\n| 1 | 2 |';

/**
 * Run the renderer once, soon, in two idle tasks (marked, then DOMPurify): both compile their
 * regular expressions and code paths on first use, which would otherwise land on the first frame
 * of the first streaming answer (a long task of tens of ms). Once per page; later calls do nothing.
 */
export function warmMarkdownWhenIdle(): void {
  if (warmed) return;
  warmed = true;
  const soon = (task: () => void) => (typeof requestIdleCallback === 'function' ? requestIdleCallback(task, { timeout: 500 }) : setTimeout(task, 50));
  soon(() => {
    markdownToHtml(WARM_TEXT);
    soon(() => void renderMarkdown(WARM_TEXT));
  });
}
