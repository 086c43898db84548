/** Browser-side helpers of the loader tests: the stories260K tokenizer files from the dev server. */
import type { TokenizerFiles } from '../util/fixtures.ts';

export async function stories260KTokenizer(): Promise<TokenizerFiles> {
  const [tokenizerJson, tokenizerConfig] = await Promise.all(['tokenizer.json', 'tokenizer_config.json'].map((f) => fetch(`/models/stories260K/${f}`).then((r) => r.text())));
  return { tokenizerJson, tokenizerConfig };
}
