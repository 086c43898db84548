/**
 * The pure layer of the widget's markdown (src/ui/markdown.ts): model output never yields markup
 * the renderer did not make. Raw HTML is escaped, unsafe link targets become text, links carry
 * rel=noopener, images do not load. (DOMPurify, the second layer, is checked in the browser:
 * test/browser/widget.test.ts.)
 */
import { describe, expect, it } from 'vitest';
import { LINK_REL, escapeHtml, markdownToHtml, safeHref } from '../../src/ui/markdown.ts';

/** Every tag name the HTML opens. */
function tags(html: string): string[] {
  return [...html.matchAll(/<([a-zA-Z][\w-]*)/g)].map((m) => m[1].toLowerCase());
}

describe('markdownToHtml', () => {
  it('renders the usual markdown', () => {
    const html = markdownToHtml('# Title\n\nSome **bold**, *em*, `code` and ~~gone~~.\n\n- one\n- two\n\n```js\nlet a = 1 < 2;\n```');
    expect(html).toContain('<h1>Title</h1>');
    expect(html).toContain('<strong>bold</strong>');
    expect(html).toContain('<em>em</em>');
    expect(html).toContain('<code>code</code>');
    expect(html).toContain('<del>gone</del>');
    expect(html).toMatch(/<ul>\s*<li>one<\/li>\s*<li>two<\/li>\s*<\/ul>/);
    expect(html).toContain('let a = 1 &lt; 2;');
  });

  it('keeps single newlines as line breaks (stories, poems)', () => {
    expect(markdownToHtml('line one\nline two')).toBe('<p>line one<br>line two</p>\n');
  });

  it('escapes raw HTML: an <img onerror> or a <script> in the text is shown as text', () => {
    const payloads = [
      '<img src=x onerror="window.__pwned = 1">',
      '<script>window.__pwned = 1</script>',
      'before <b onmouseover="alert(1)">x</b> after',
      '<iframe src="https://example.com"></iframe>',
      '<svg><animate onbegin=alert(1) attributeName=x dur=1s>',
      '<a href="javascript:alert(1)">click</a>',
    ];
    for (const p of payloads) {
      const html = markdownToHtml(p);
      expect(tags(html).every((t) => ['p', 'br'].includes(t)), `${p} → ${html}`).toBe(true);
      expect(html).toContain('&lt;');
    }
    expect(markdownToHtml('<img src=x onerror="alert(1)">')).toBe('<p>&lt;img src=x onerror=&quot;alert(1)&quot;&gt;</p>\n');
  });

  it('links: http(s) and mailto only, always rel=noopener… and target=_blank', () => {
    const html = markdownToHtml('[docs](https://example.com/a?b=1&c=2 "the docs") and <https://example.org> and [mail](mailto:a@b.c)');
    expect(html).toContain(`<a href="https://example.com/a?b=1&amp;c=2" title="the docs" rel="${LINK_REL}" target="_blank">docs</a>`);
    expect(html).toContain(`<a href="https://example.org/" rel="${LINK_REL}" target="_blank">https://example.org</a>`);
    expect(html).toContain(`<a href="mailto:a@b.c" rel="${LINK_REL}" target="_blank">mail</a>`);
    for (const bad of ['javascript:alert(1)', 'JaVaScRiPt:alert(1)', 'data:text/html,<script>alert(1)</script>', 'vbscript:x', '/relative/path', 'file:///etc/passwd']) {
      const out = markdownToHtml(`[click](${bad})`);
      expect(tags(out), `${bad} → ${out}`).not.toContain('a');
      expect(out).toContain('click');
    }
  });

  it('images become links (nothing loads from a host the model chose)', () => {
    const html = markdownToHtml('![a cat](https://tracker.example/cat.png)');
    expect(tags(html)).not.toContain('img');
    expect(html).toContain(`<a href="https://tracker.example/cat.png" rel="${LINK_REL}" target="_blank">[image: a cat]</a>`);
    expect(markdownToHtml('![x](javascript:alert(1))')).toBe('<p>[image: x]</p>\n');
  });

  it('a title attribute cannot break out of its quotes', () => {
    const html = markdownToHtml('[x](https://example.com "a\\" onmouseover=\\"alert(1)")');
    expect(html).not.toMatch(/"\s+onmouseover=/);
    expect(html).toContain('&quot;');
  });

  it('task-list checkboxes are characters, not inputs', () => {
    const html = markdownToHtml('- [x] done\n- [ ] todo');
    expect(tags(html)).not.toContain('input');
    expect(html).toContain('☑ done');
    expect(html).toContain('☐ todo');
  });

  it('refuses non-string input with a typed error', () => {
    expect(() => markdownToHtml(42 as unknown as string)).toThrow(TypeError);
  });
});

describe('escapeHtml and safeHref', () => {
  it('escapes the five markup characters', () => {
    expect(escapeHtml(`<a href="x" title='y'>&</a>`)).toBe('&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;');
  });

  it('accepts absolute http(s) and mailto URLs only', () => {
    expect(safeHref('https://example.com')).toBe('https://example.com/');
    expect(safeHref(' http://example.com/a b ')).toBe('http://example.com/a%20b');
    expect(safeHref('mailto:x@y.z')).toBe('mailto:x@y.z');
    expect(safeHref('javascript:alert(1)')).toBeNull();
    expect(safeHref('java\nscript:alert(1)')).toBeNull();
    expect(safeHref('//example.com')).toBeNull();
    expect(safeHref('not a url')).toBeNull();
  });
});
