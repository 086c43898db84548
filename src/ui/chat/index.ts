/**
 * `<mace-chat>` for ES imports: the element class, its event and state types, and
 * `defineMaceChat()` to register it (importing this module registers nothing by itself).
 */
import { MaceChatElement } from './element.ts';

export { MaceChatElement, type MaceFeedbackDetail, type MaceMessageDetail, type MaceStateDetail, type WidgetState } from './element.ts';
export type { ChatEngine } from './engine.ts';
export { WidgetAttributeError, parseModelAttribute } from './model-spec.ts';
export { WIDGET_CSS } from './styles.ts';

/** Register `<mace-chat>` (or another tag name); registering the same tag twice is a no-op. */
export function defineMaceChat(tagName = 'mace-chat'): typeof MaceChatElement {
  const existing = customElements.get(tagName);
  if (existing) {
    if (existing !== MaceChatElement) throw new Error(`defineMaceChat: <${tagName}> is already defined by another class`);
    return MaceChatElement;
  }
  customElements.define(tagName, MaceChatElement);
  return MaceChatElement;
}
