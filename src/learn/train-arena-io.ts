/**
 * The host side of the trainer's arena (train-arena.ts): what crosses between the CPU and the GPU
 * around a step's work units, and the checks that keep bad input out of it.
 *
 *   in   a pair's (or KTO example's) token ids, validated against the vocabulary and maxTokens, as
 *        each sequence's tokens and next-token targets (padded to the bucketed length with id 0);
 *        the backward's per-position weights (dlogp), written once the loss is known
 *   out  each sequence's token log-probs after a forward, summed over the response positions
 *
 * The loss between the two (DPO or KTO, on the CPU) is the trainer's (trainer.ts).
 */
import { readF32 } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/device.ts';
import type { ModelConfig } from '../model/config.ts';
import { LearnError } from './errors.ts';
import type { TokenKto, TokenPair } from './reference.ts';
import type { SequenceArena, TrainArena } from './train-arena.ts';
import { bucketedLength, SEQS, type SeqName } from './work-units.ts';

/** Summed response log-probs of a pair's two sequences. */
export interface PairLogprobs {
  chosen: number;
  rejected: number;
}

/** A pair or option the trainer cannot take: names the field. */
export class TrainerInputError extends LearnError {
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super('bad-train-input', `${field} ${detail}`);
  }
}

/** A trainer's transfers to and from its arena, with the host staging they reuse. */
export class ArenaIO {
  // Host staging reused by every step (writeBuffer copies at call time): [maxTokens] each.
  private readonly tokensHost: Uint32Array<ArrayBuffer>;
  private readonly targetsHost: Uint32Array<ArrayBuffer>;
  private readonly dlogpHost: Float32Array<ArrayBuffer>;

  /** `config` and `options` are the trainer's own (read at each call, as the trainer reads them). */
  constructor(
    private readonly ctx: GpuContext,
    private readonly arena: TrainArena,
    private readonly config: Pick<ModelConfig, 'vocabSize'>,
    private readonly options: { readonly maxTokens: number },
  ) {
    const T = options.maxTokens;
    this.tokensHost = new Uint32Array(T);
    this.targetsHost = new Uint32Array(T);
    this.dlogpHost = new Float32Array(T);
  }

  /** The length a sequence of T tokens runs at. */
  bucket(T: number): number {
    return bucketedLength(T, this.options.maxTokens);
  }

  /** Check the pair against the vocabulary and maxTokens. */
  checkPair(pair: TokenPair): void {
    const V = this.config.vocabSize;
    const max = this.options.maxTokens;
    for (const part of ['prompt', 'chosen', 'rejected'] as const) {
      const ids = pair[part];
      if (!Array.isArray(ids) || ids.length === 0) throw new TrainerInputError(`pair.${part}`, 'must be a non-empty array of token ids');
      ids.forEach((id, i) => {
        if (!Number.isInteger(id) || id < 0 || id >= V) throw new TrainerInputError(`pair.${part}[${i}]`, `= ${id} is not a token id < vocab ${V}`);
      });
    }
    for (const s of SEQS) {
      const T = pair.prompt.length + pair[s].length;
      if (T > max) throw new TrainerInputError(`pair.${s}`, `prompt + response = ${T} tokens exceeds maxTokens = ${max}`);
    }
  }

  /** Check a KTO example's shape (its token ids are checked as the pair its slots run, by writeInputs). */
  checkKto(e: TokenKto): void {
    if (!e || typeof e !== 'object') throw new TrainerInputError('example', 'must be a KTO example {prompt, completion, label, kl}');
    if (typeof e.label !== 'boolean') throw new TrainerInputError('example.label', `= ${String(e.label)}; it must be true (desirable) or false (undesirable)`);
    for (const part of ['prompt', 'completion', 'kl'] as const) {
      if (!Array.isArray(e[part]) || e[part].length === 0) throw new TrainerInputError(`example.${part}`, 'must be a non-empty array of token ids');
    }
  }

  /** Upload a sequence's tokens and targets (positions promptLen-1 .. T-2 predict tokens[t+1]); the padding is id 0. */
  private writeSequence(seq: SequenceArena, tokens: readonly number[], promptLen: number): void {
    const T = tokens.length;
    const Tb = this.bucket(T);
    this.tokensHost.fill(0);
    this.tokensHost.set(tokens);
    this.targetsHost.fill(0);
    for (let t = promptLen - 1; t < T - 1; t++) this.targetsHost[t] = tokens[t + 1];
    const q = this.ctx.device.queue;
    q.writeBuffer(seq.tokens, 0, this.tokensHost, 0, Tb);
    q.writeBuffer(seq.targets, 0, this.targetsHost, 0, Tb);
  }

  /** Validate the pair and upload both sequences (prompt + response); returns their real lengths. */
  writeInputs(pair: TokenPair): Record<SeqName, number> {
    this.checkPair(pair);
    const lengths = { chosen: 0, rejected: 0 };
    for (const s of SEQS) {
      const tokens = [...pair.prompt, ...pair[s]];
      this.writeSequence(this.arena.seqs[s], tokens, pair.prompt.length);
      lengths[s] = tokens.length;
    }
    return lengths;
  }

  /** Write a sequence's backward weights: `coef` on its response (completion) positions, 0 elsewhere. */
  writeWeights(seq: SeqName, T: number, promptLen: number, coef: number): void {
    this.dlogpHost.fill(0);
    this.dlogpHost.fill(coef, promptLen - 1, T - 1);
    this.ctx.device.queue.writeBuffer(this.arena.seqs[seq].dlogp, 0, this.dlogpHost, 0, this.bucket(T));
  }

  /** Read back one sequence's log-probs and sum the response positions (f64). */
  async responseLogprob(seq: SeqName, T: number, promptLen: number): Promise<number> {
    const lp = await readF32(this.ctx, this.arena.seqs[seq].logp, T);
    let s = 0;
    for (let t = promptLen - 1; t < T - 1; t++) s += lp[t];
    return s;
  }

  /** Summed response log-probs of both sequences after a forward phase ran (reads 2·T floats back). */
  async pairLogprobs(tokens: Readonly<Record<SeqName, number>>, promptLen: number): Promise<PairLogprobs> {
    return { chosen: await this.responseLogprob('chosen', tokens.chosen, promptLen), rejected: await this.responseLogprob('rejected', tokens.rejected, promptLen) };
  }
}
