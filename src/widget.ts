/**
 * The standalone widget: one script tag defines `<mace-chat>` (the engine worker is inlined in
 * the built file, dist/mace-chat.js, so nothing else needs hosting besides the model files):
 *
 *   <script type="module" src="mace-chat.js"></script>
 *   <mace-chat model="HuggingFaceTB/SmolLM2-135M-Instruct" format="q4"></mace-chat>
 */
import { defineMaceChat } from './ui/chat/index.ts';

export { MaceChatElement } from './ui/chat/index.ts';

defineMaceChat();
