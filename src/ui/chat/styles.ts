/**
 * The widget's CSS, scoped by its shadow root. Pages theme it with CSS custom properties set on the
 * element (they inherit into the shadow tree), e.g. `mace-chat { --mace-accent: #0a7; height: 40rem }`:
 *
 *   --mace-accent        buttons, the user's bubbles, focus rings       (default #2f6fde / #7aa7ff dark)
 *   --mace-accent-ink    text on the accent colour                      (default white / #0b1220)
 *   --mace-bg            the widget's background                        (default white / #14181f)
 *   --mace-surface       the assistant's bubbles, the input             (default #f2f4f7 / #1e242d)
 *   --mace-ink           text                                           (default #1c2430 / #e6e9ee)
 *   --mace-muted         secondary text                                 (default #5d6b7a / #9aa6b4)
 *   --mace-line          borders                                        (default #dfe3e8 / #2e3641)
 *   --mace-danger        errors                                         (default #b42318 / #ff8a80)
 *   --mace-radius        corner radius                                  (default 12px)
 *   --mace-font          font shorthand                                 (default 15px/1.5 system-ui)
 *
 * Light or dark follows prefers-color-scheme; the `theme` attribute ("light" | "dark") pins one.
 */
/** The dark palette: under prefers-color-scheme dark (unless theme="light") and with theme="dark". */
const DARK = /* css */ `--_accent: var(--mace-accent, #7aa7ff);
  --_accent-ink: var(--mace-accent-ink, #0b1220);
  --_bg: var(--mace-bg, #14181f);
  --_surface: var(--mace-surface, #1e242d);
  --_ink: var(--mace-ink, #e6e9ee);
  --_muted: var(--mace-muted, #9aa6b4);
  --_line: var(--mace-line, #2e3641);
  --_danger: var(--mace-danger, #ff8a80);
  color-scheme: dark;`;

export const WIDGET_CSS = /* css */ `
:host {
  --_accent: var(--mace-accent, #2f6fde);
  --_accent-ink: var(--mace-accent-ink, #ffffff);
  --_bg: var(--mace-bg, #ffffff);
  --_surface: var(--mace-surface, #f2f4f7);
  --_ink: var(--mace-ink, #1c2430);
  --_muted: var(--mace-muted, #5d6b7a);
  --_line: var(--mace-line, #dfe3e8);
  --_danger: var(--mace-danger, #b42318);
  --_radius: var(--mace-radius, 12px);
  display: flex;
  flex-direction: column;
  height: 32rem;
  min-height: 18rem;
  font: var(--mace-font, 15px/1.5 system-ui, -apple-system, 'Segoe UI', sans-serif);
  color: var(--_ink);
  background: var(--_bg);
  border: 1px solid var(--_line);
  border-radius: var(--_radius);
  overflow: hidden;
  color-scheme: light;
  contain: content;
}
:host([hidden]) { display: none; }
@media (prefers-color-scheme: dark) {
  :host(:not([theme='light'])) {
    ${DARK}
  }
}
:host([theme='dark']) {
  ${DARK}
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
button {
  font: inherit; font-size: 0.85rem; color: inherit; background: transparent; border: 1px solid transparent;
  border-radius: 8px; padding: 0.3rem 0.55rem; cursor: pointer; display: inline-flex; align-items: center; gap: 0.3rem;
}
button:hover:not(:disabled) { background: color-mix(in srgb, var(--_ink) 8%, transparent); }
button:disabled { opacity: 0.45; cursor: default; }
button:focus-visible, textarea:focus-visible { outline: 2px solid var(--_accent); outline-offset: 1px; }
.icon { fill: none; stroke: currentColor; stroke-width: 2; stroke-linecap: round; stroke-linejoin: round; flex: none; }
.visually-hidden { position: absolute; width: 1px; height: 1px; margin: -1px; overflow: hidden; clip-path: inset(50%); white-space: nowrap; }

.bar { display: flex; align-items: center; gap: 0.5rem; padding: 0.5rem 0.75rem; border-bottom: 1px solid var(--_line); min-height: 2.6rem; }
.title { font-weight: 600; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.subtitle { color: var(--_muted); font-size: 0.8rem; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.learnt {
  font-size: 0.75rem; color: var(--_muted); border: 1px solid var(--_line); border-radius: 999px; padding: 0 0.5rem;
  white-space: nowrap; font-variant-numeric: tabular-nums;
}
.spacer { flex: 1; }
.adapter-menu { padding: 0.6rem 0.75rem; border-bottom: 1px solid var(--_line); display: grid; gap: 0.4rem; font-size: 0.85rem; }
.adapter-menu .menu-title { font-weight: 600; }
.adapter-menu .menu-line { color: var(--_muted); }
.adapter-menu .versions { list-style: none; margin: 0; padding: 0; display: grid; gap: 0.15rem; max-height: 9rem; overflow-y: auto; }
.adapter-menu .versions li { display: flex; align-items: center; gap: 0.5rem; }
.adapter-menu .version { font-variant-numeric: tabular-nums; min-width: 2.5rem; }
.adapter-menu .saved { color: var(--_muted); flex: 1; font-size: 0.78rem; }
.adapter-menu .menu-actions { display: flex; flex-wrap: wrap; gap: 0.3rem; }
.adapter-menu button { border-color: var(--_line); }
.adapter-menu .menu-error { color: var(--_danger); overflow-wrap: anywhere; }

.status { padding: 0.75rem; display: grid; gap: 0.4rem; border-bottom: 1px solid var(--_line); }
.status progress { width: 100%; height: 0.5rem; accent-color: var(--_accent); }
.status .line { font-size: 0.85rem; color: var(--_muted); overflow-wrap: anywhere; }
.notice { margin: 0.75rem; padding: 0.75rem; border-radius: 8px; border: 1px solid var(--_line); display: grid; gap: 0.5rem; }
.notice.error { border-color: color-mix(in srgb, var(--_danger) 45%, var(--_line)); color: var(--_danger); }
.notice.info { color: var(--_muted); }
.notice button { justify-self: start; background: var(--_accent); color: var(--_accent-ink); }

.log { flex: 1; overflow-y: auto; padding: 0.75rem; display: flex; flex-direction: column; gap: 0.75rem; overscroll-behavior: contain; }
.empty { margin: auto; color: var(--_muted); text-align: center; font-size: 0.9rem; max-width: 22rem; }
.msg { display: flex; flex-direction: column; gap: 0.25rem; }
.msg.user { align-items: flex-end; }
.bubble { max-width: 88%; padding: 0.5rem 0.8rem; border-radius: var(--_radius); overflow-wrap: anywhere; }
.msg.user .bubble { background: var(--_accent); color: var(--_accent-ink); white-space: pre-wrap; border-bottom-right-radius: 4px; }
.msg.assistant .bubble { background: var(--_surface); border-bottom-left-radius: 4px; }
.msg.assistant[aria-busy='true'] .bubble:empty::after { content: '…'; color: var(--_muted); }
.bubble > :first-child { margin-top: 0; }
.bubble > :last-child { margin-bottom: 0; }
.bubble p { margin: 0.4rem 0; }
.bubble pre { overflow-x: auto; padding: 0.5rem; border-radius: 6px; background: color-mix(in srgb, var(--_ink) 7%, transparent); }
.bubble code { font: 0.85em/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; }
.bubble a { color: inherit; text-decoration: underline; }
.bubble table { border-collapse: collapse; }
.bubble th, .bubble td { border: 1px solid var(--_line); padding: 0.2rem 0.4rem; }
.continues { color: var(--_muted); }
.meta { font-size: 0.75rem; color: var(--_muted); }
.actions { display: flex; align-items: center; gap: 0.15rem; color: var(--_muted); flex-wrap: wrap; }
.actions button[aria-pressed='true'] { color: var(--_accent); }
.actions button[aria-pressed='true'] .icon { fill: currentColor; }
.pager { display: inline-flex; align-items: center; font-size: 0.8rem; font-variant-numeric: tabular-nums; }
.offer { font-size: 0.8rem; }
.offer button { color: var(--_accent); border-color: var(--_line); }

.composer { display: flex; gap: 0.5rem; padding: 0.6rem 0.75rem 0.35rem; border-top: 1px solid var(--_line); align-items: flex-end; }
textarea {
  flex: 1; font: inherit; color: inherit; background: var(--_surface); border: 1px solid var(--_line); border-radius: 10px;
  padding: 0.5rem 0.7rem; resize: none; min-height: 2.6rem; max-height: 9rem; field-sizing: content;
}
.composer button { background: var(--_accent); color: var(--_accent-ink); padding: 0.55rem 0.8rem; }
.composer button.stop { background: var(--_surface); color: var(--_ink); border-color: var(--_line); }
.hint { margin: 0; padding: 0 0.8rem 0.45rem; font-size: 0.72rem; color: var(--_muted); }
`;

let shared: CSSStyleSheet | null = null;

/** Put the CSS in a shadow root: one constructed sheet shared by every widget where supported. */
export function adoptStyles(root: ShadowRoot): void {
  if ('adoptedStyleSheets' in root && typeof CSSStyleSheet === 'function' && 'replaceSync' in CSSStyleSheet.prototype) {
    if (!shared) {
      shared = new CSSStyleSheet();
      shared.replaceSync(WIDGET_CSS);
    }
    root.adoptedStyleSheets = [shared];
    return;
  }
  const style = document.createElement('style');
  style.textContent = WIDGET_CSS;
  root.append(style);
}
