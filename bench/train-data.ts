/**
 * Preference data for `mace train`: text pairs → named token pairs (the tokenization itself, as
 * TRL's DPOTrainer builds it, is src/learn/pair-tokens.ts, shared with the engine's learner).
 */
import { tokenizePair as tokenizeTextPair, type TextPair, type TokenizeOptions } from '../src/learn/pair-tokens.ts';
import type { ChatCompletionMessageParam } from '../src/engine/types.ts';
import type { ImportedPair } from '../src/learn/formats.ts';
import type { NamedPair } from '../src/learn/train-loop.ts';
import type { ModelConfig } from '../src/model/config.ts';
import type { TextTokenizer } from '../src/model/tokenizer.ts';
import { syntheticPrompt } from './synthetic-model.ts';

export type { TokenizeOptions } from '../src/learn/pair-tokens.ts';

/** One text pair (a completion prompt or chat messages) as a NamedPair (src/learn/pair-tokens.ts, named). */
export function tokenizePair(tokenizer: TextTokenizer, p: TextPair, name: string, o: TokenizeOptions): NamedPair {
  return { name, ...tokenizeTextPair(tokenizer, p, o) };
}

/** Pairs read from a preference file, named "file record". */
export function tokenizeImported(tokenizer: TextTokenizer, pairs: readonly ImportedPair[], o: TokenizeOptions): NamedPair[] {
  return pairs.map((p) => tokenizePair(tokenizer, { prompt: p.prompt, messages: p.messages as ChatCompletionMessageParam[] | undefined, chosen: p.chosen, rejected: p.rejected }, `${p.file} ${p.record}`, o));
}

/** Standard base64 of bytes (btoa exists in browsers and Node >= 16). */
export function toBase64(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/**
 * A pair of random token ids for the step benchmark: a prompt of `promptTokens` and two responses
 * of `responseTokens` each, uniform over the vocabulary minus BOS/EOS (syntheticPrompt). The cost of
 * a step depends on the lengths only; same seed, same pair.
 */
export function syntheticPair(config: ModelConfig, promptTokens: number, responseTokens: number, seed: number): NamedPair {
  return {
    name: `synthetic ${promptTokens}+${responseTokens} (seed ${seed})`,
    prompt: syntheticPrompt(config, promptTokens, seed),
    chosen: syntheticPrompt(config, responseTokens, seed + 1),
    rejected: syntheticPrompt(config, responseTokens, seed + 2),
  };
}
