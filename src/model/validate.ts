/**
 * Load-time checks beyond each file's own syntax: the config, the checkpoint and the tokenizer must
 * describe the same model (vocabulary sizes, special token ids), and every weight must be a finite
 * number. Each refusal names the file and the field or tensor at fault and what was expected; see
 * docs/ARCHITECTURE.md, "What is validated at load".
 *
 * The finite-value scan runs on the CPU over the bytes as they stream to the GPU (FiniteScan): one
 * byte read per element (two for the rare element whose exponent is all ones), no copy, no GPU
 * work, so it costs a small fraction of the upload it rides on and stops at the first NaN/Inf.
 */
import type { ModelConfig } from './config.ts';

/** Two model files disagree (config vs checkpoint vs tokenizer): names the file and field at fault. */
export class ModelConsistencyError extends Error {
  readonly code = 'inconsistent-model';
  constructor(
    readonly file: string,
    readonly field: string,
    detail: string,
  ) {
    super(`${file}: ${field} ${detail}`);
    this.name = 'ModelConsistencyError';
  }
}

export type NonFiniteValue = 'NaN' | 'Infinity' | '-Infinity';

/** A weight tensor holds NaN or ±Infinity: names the file, the tensor and the first bad element. */
export class NonFiniteWeightError extends Error {
  readonly code = 'non-finite-weight';
  constructor(
    readonly file: string,
    readonly tensor: string,
    readonly index: number,
    readonly value: NonFiniteValue,
    shape: readonly number[],
  ) {
    super(`${file}: tensor '${tensor}' holds ${value} at element ${index}${position(index, shape)}; every weight must be a finite number (a model with NaN/Inf weights generates garbage)`);
    this.name = 'NonFiniteWeightError';
  }
}

/** " (row r, column c)" of a flat index in a 2-D shape; "" otherwise. */
export function position(index: number, shape: readonly number[]): string {
  if (shape.length !== 2 || shape[1] === 0) return '';
  return ` (row ${Math.floor(index / shape[1])}, column ${index % shape[1]})`;
}

export type FloatDtype = 'F32' | 'F16' | 'BF16';

/**
 * First non-finite element of a little-endian F32/F16/BF16 tensor fed in pieces of any size and
 * alignment (an element may straddle two pieces). An element is NaN/Inf iff its exponent bits are
 * all ones; the exponent sits in the element's last byte (and the top bit of the byte before it
 * for F32 and BF16), so the scan reads those bytes only.
 */
export class FiniteScan {
  private readonly eb: number;
  private offset = 0;
  /** The last 4 bytes seen (tail[3] the latest), for elements that straddle pieces. */
  private readonly tail = new Uint8Array(4);

  constructor(readonly dtype: FloatDtype) {
    this.eb = dtype === 'F32' ? 4 : 2;
  }

  /** Feed the next piece; returns the first non-finite element in it, or null. */
  push(bytes: Uint8Array): { index: number; value: NonFiniteValue } | null {
    const eb = this.eb;
    const n = bytes.length;
    const byteAt = (k: number) => (k >= 0 ? bytes[k] : this.tail[4 + k]);
    // The last byte of each element is at tensor offsets eb-1, 2eb-1, ...
    let j = (eb - 1 - (this.offset % eb)) % eb;
    let found = -1;
    if (this.dtype === 'F16') {
      for (; j < n; j += eb) if ((bytes[j] & 0x7c) === 0x7c) { found = j; break; }
    } else {
      for (; j < n; j += eb) {
        if ((bytes[j] & 0x7f) === 0x7f && (byteAt(j - 1) & 0x80) !== 0) { found = j; break; }
      }
    }
    if (found >= 0) {
      const index = (this.offset + found - (eb - 1)) / eb;
      let mantissa: number;
      if (this.dtype === 'F16') mantissa = ((bytes[found] & 0x03) << 8) | byteAt(found - 1);
      else if (this.dtype === 'BF16') mantissa = byteAt(found - 1) & 0x7f;
      else mantissa = (byteAt(found - 1) & 0x7f) | byteAt(found - 2) | byteAt(found - 3);
      const value: NonFiniteValue = mantissa !== 0 ? 'NaN' : bytes[found] & 0x80 ? '-Infinity' : 'Infinity';
      return { index, value };
    }
    if (n >= 4) this.tail.set(bytes.subarray(n - 4));
    else if (n > 0) {
      this.tail.copyWithin(0, n);
      this.tail.set(bytes, 4 - n);
    }
    this.offset += n;
    return null;
  }
}

/** First non-finite value of a host array, or -1. */
export function firstNonFinite(a: ArrayLike<number>): number {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return i;
  return -1;
}

/** What the vocabulary checks need of a tokenizer (TextTokenizer implements it). */
export interface TokenizerVocabulary {
  /** Highest id + 1 over tokenizer.json's model.vocab and added_tokens. */
  readonly vocabSize: number;
  /** Where the highest id is: its field in tokenizer.json and its token text. */
  readonly highestId: { id: number; token: string; field: string };
  /** The token of an id, or undefined when tokenizer.json has no such id. */
  tokenOf(id: number): string | undefined;
}

/** A special token id and where it was read. */
export interface SpecialTokenId {
  file: string;
  field: string;
  id: number;
}

/**
 * Config vocabulary vs tokenizer vocabulary vs special ids. Rules (the decision of issue 15):
 * - the tokenizer may be SMALLER than config.json's vocab_size (checkpoints pad their embedding
 *   to a round size: Qwen2 151,936 rows for 151,665 tokens) but never larger: an id at or above
 *   vocab_size has no embedding row and no logit;
 * - every special id (bos / eos / pad of config.json, generation_config.json, and the tokenizer's
 *   own tokens) must be < vocab_size AND a token tokenizer.json holds: an EOS the model cannot
 *   produce never stops a generation, a BOS the tokenizer does not know cannot be decoded.
 */
export function checkVocabulary(config: ModelConfig, tok: TokenizerVocabulary, specials: readonly SpecialTokenId[]): void {
  const V = config.vocabSize;
  if (tok.vocabSize > V) {
    const h = tok.highestId;
    throw new ModelConsistencyError('tokenizer.json', h.field, `holds token id ${h.id} (${JSON.stringify(h.token)}), but config.json vocab_size = ${V}: the model has no embedding row or logit for ids >= ${V} (a tokenizer may be smaller than vocab_size, never larger)`);
  }
  for (const s of specials) {
    if (s.id >= V) throw new ModelConsistencyError(s.file, s.field, `= ${s.id} is outside the vocabulary: config.json vocab_size = ${V} (ids 0..${V - 1})`);
    if (tok.tokenOf(s.id) === undefined) throw new ModelConsistencyError(s.file, s.field, `= ${s.id} is not a token of tokenizer.json (its ids run 0..${tok.vocabSize - 1})`);
  }
}
