/**
 * Text preference pairs → token pairs for the trainer, as TRL's DPOTrainer builds them: the prompt
 * encoded with the tokenizer's special tokens (BOS), or the chat template for message contexts
 * (completion mode when the model has none); each response is the tokens that follow the prompt
 * in the encoding of prompt + response (so a SentencePiece word boundary at the join is encoded as
 * it would be in running text), plus EOS when asked (TRL appends it to file pairs).
 */
import { chatPromptIds } from '../src/engine/openai.ts';
import type { ChatCompletionMessageParam } from '../src/engine/types.ts';
import type { ImportedPair } from '../src/learn/formats.ts';
import type { NamedPair } from '../src/learn/train-loop.ts';
import type { ModelConfig } from '../src/model/config.ts';
import type { TextTokenizer } from '../src/model/tokenizer.ts';
import { syntheticPrompt } from './synthetic-model.ts';

/** The response ids after `promptIds` in the joint encoding, or its own encoding when the join re-tokenized the prompt. */
function responseIds(tokenizer: TextTokenizer, promptText: string | null, promptIds: number[], response: string): number[] {
  if (promptText !== null) {
    const joint = tokenizer.encode(promptText + response);
    if (joint.length > promptIds.length && promptIds.every((id, i) => joint[i] === id)) return joint.slice(promptIds.length);
  }
  return tokenizer.encode(response, false);
}

export interface TokenizeOptions {
  /** Appended to each response (TRL's behaviour for datasets); null: nothing appended. */
  eos: number | null;
}

/** One text pair (a completion prompt or chat messages) as a NamedPair. */
export function tokenizePair(tokenizer: TextTokenizer, p: { prompt?: string; messages?: ChatCompletionMessageParam[]; chosen: string; rejected: string }, name: string, o: TokenizeOptions): NamedPair {
  const chat = p.messages !== undefined;
  const promptIds = chat ? chatPromptIds(tokenizer, p.messages!) : tokenizer.encode(p.prompt ?? '');
  // With a chat template the prompt text is not re-encodable as plain text: responses stand alone.
  const promptText = chat ? null : (p.prompt ?? '');
  const eos = o.eos === null ? [] : [o.eos];
  return {
    name,
    prompt: promptIds,
    chosen: [...responseIds(tokenizer, promptText, promptIds, p.chosen), ...eos],
    rejected: [...responseIds(tokenizer, promptText, promptIds, p.rejected), ...eos],
  };
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
