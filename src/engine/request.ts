/**
 * One generation request inside the engine: its sequence (prompt + generated ids, KV blocks), its
 * normalised settings and PRNG, the streaming detokenizer and stop matcher, timings, and the
 * channel its events go to. The engine loop drives it; it never touches the GPU itself.
 */
import type { SequenceState } from './batch.ts';
import type { SequenceReuse } from './prefix.ts';
import { Channel } from './channel.ts';
import { isNeutralPenalty, type RowPenalty } from '../kernels/penalties.ts';
import type { RowLogprobs } from '../kernels/logprobs.ts';
import type { StreamDecoder } from '../model/tokenizer.ts';
import type { RequestSettings } from './params.ts';
import { SeenTokens, type SeenUpdate } from './seen.ts';
import type { SampleRow } from './sampler.ts';
import { StopMatcher } from './stop.ts';
import type { CompletionUsage, FinishReason } from './types.ts';
import { mulberry32 } from '../util/prng.ts';
import { GrammarMatcher } from './structured/matcher.ts';

/** Log-probabilities of one generated token (ids; the API layer turns them into strings). */
export interface TokenLogprob {
  id: number;
  logprob: number;
  top: { id: number; logprob: number }[];
}

export type RequestEvent =
  | { kind: 'delta'; text: string; ids: number[]; logprobs: TokenLogprob[] }
  | { kind: 'done'; reason: FinishReason; usage: CompletionUsage; ids: number[]; logprobs: TokenLogprob[] };

const NO_PENALTY: Omit<RowPenalty, 'slot'> = { repetition: 1, presence: 0, frequency: 0, nSeen: 0 };

/** The row of a batch entry that is not sampled (a prefill chunk short of the prompt's end). */
export const IDLE_ROW: SampleRow = { settings: { temperature: 0, topP: 1, minP: 0, topK: 0 }, random: 0, penalty: { ...NO_PENALTY, slot: 0 } };

export interface RequestContext {
  eosIds: ReadonlySet<number>;
  maxContext: number;
  decoder: StreamDecoder;
  now: () => number;
}

export class Request {
  readonly seq: SequenceState;
  /** Seen-token list for the penalties kernel, or null when the penalties are neutral. */
  readonly seen: SeenTokens | null;
  /** Penalty slot (row of the GPU seen table) while running; -1 otherwise. */
  slot = -1;
  readonly output: number[] = [];
  finishReason: FinishReason | null = null;
  readonly events: Channel<RequestEvent>;
  readonly createdAt: number;
  scheduledAt = -1;
  firstTokenAt = -1;
  /** When each output token was accepted (ms): TBTs are their gaps. */
  readonly tokenTimes: number[] = [];
  finishedAt = -1;
  /** Set by an abort signal; the loop finishes the request at its next step boundary. */
  aborted = false;
  /** Prefix-cache state of its sequence (src/engine/prefix.ts). */
  readonly reuse: SequenceReuse = { key: null, registered: 0 };
  /** Prompt tokens its first admission took from the prefix cache. */
  cachedTokens = 0;
  /** Chat messages dropped to fit the context (truncation 'auto'); null: truncation was off. */
  truncatedMessages: number | null = null;
  /** Resolves once the prompt's K/V are computed (the first token came) or the request ended. */
  readonly prefilled: Promise<void>;
  private markPrefilled: () => void = () => {};
  /** Detaches the abort listener once the request is over (set by the engine). */
  cleanup: (() => void) | null = null;
  private readonly rng: () => number;
  private readonly stop: StopMatcher;
  /** The grammar its output follows (response_format, a forced tool call); null: free text. */
  readonly matcher: GrammarMatcher | null;
  private pendingIds: number[] = [];
  private pendingLogprobs: TokenLogprob[] = [];

  constructor(
    readonly id: number,
    readonly promptIds: readonly number[],
    readonly settings: RequestSettings,
    private readonly ctx: RequestContext,
    onCancel: () => void,
  ) {
    this.seq = { tokens: [...promptIds], computed: 0, blocks: [] };
    this.seen = isNeutralPenalty(settings.penalty) ? null : new SeenTokens(promptIds);
    this.rng = mulberry32(settings.seed);
    this.stop = new StopMatcher(settings.stop);
    const g = settings.structured;
    this.matcher = g ? new GrammarMatcher(g.node, g.vocab, g.param) : null;
    this.events = new Channel<RequestEvent>(onCancel);
    this.createdAt = ctx.now();
    this.prefilled = new Promise<void>((resolve) => (this.markPrefilled = resolve));
  }

  get finished(): boolean {
    return this.finishReason !== null;
  }

  /** Tokens it may still generate (max_tokens and the context), the one sampled next included. */
  get budget(): number {
    const max = this.settings.maxTokens;
    const byContext = this.ctx.maxContext - this.seq.tokens.length;
    return max === null ? byContext : Math.min(max - this.output.length, byContext);
  }

  /** This step's sampling row; draws the next random number (once per sampled token). */
  sampleRow(): SampleRow {
    const p = this.settings.penalty;
    const m = this.matcher;
    if (m) m.budget = this.budget;
    return {
      settings: this.settings.sampling,
      random: this.rng(),
      penalty: this.seen ? { ...p, slot: this.slot, nSeen: this.seen.size } : { ...NO_PENALTY, slot: 0 },
      mask: m,
      bias: this.settings.logitBias,
    };
  }

  /**
   * A token was sampled for this request. Returns the seen-list change the GPU copy needs (or
   * null). May finish the request (EOS, stop string, max_tokens, context full).
   */
  accept(id: number, lp: RowLogprobs | null): SeenUpdate | null {
    const now = this.ctx.now();
    if (this.firstTokenAt < 0) {
      this.firstTokenAt = now;
      this.markPrefilled();
    }
    this.tokenTimes.push(now);
    this.output.push(id);
    this.pendingIds.push(id);
    if (lp && this.settings.topLogprobs !== null) this.pendingLogprobs.push({ id, logprob: lp.chosen, top: lp.top.slice(0, this.settings.topLogprobs) });
    // Under a grammar EOS is sampled only where the output may end (the mask), and ends it. A token
    // outside the mask would be an engine bug: it fails this request only, not the batch.
    try {
      this.matcher?.accept(id);
    } catch (e) {
      this.fail(e);
      return null;
    }
    if (this.ctx.eosIds.has(id) && !this.settings.ignoreEos) {
      this.finish('stop');
      return null;
    }
    const r = this.stop.push(this.ctx.decoder.push(id));
    if (r.emit || r.stopped) this.emit(r.emit);
    if (r.stopped) {
      this.finish('stop', false);
      return null;
    }
    this.seq.tokens.push(id);
    if (this.matcher?.terminal) {
      this.finish('stop'); // the grammar is complete: nothing but its end can follow
      return null;
    }
    const max = this.settings.maxTokens;
    if ((max !== null && this.output.length >= max) || this.seq.tokens.length >= this.ctx.maxContext) {
      this.finish('length');
      return null;
    }
    return this.seen ? this.seen.addOutput(id) : null;
  }

  /** End the request: flush held-back text (unless a stop string cut it), then the final event. */
  finish(reason: FinishReason, flush = true): void {
    if (this.finished) return;
    this.markPrefilled();
    this.finishReason = reason;
    this.finishedAt = this.ctx.now();
    if (flush && reason !== 'abort') {
      const rest = this.stop.push(this.ctx.decoder.flush());
      const text = rest.stopped ? rest.emit : rest.emit + this.stop.flush();
      if (text) this.emit(text);
    }
    this.events.push({ kind: 'done', reason, usage: this.usage(), ids: this.takeIds(), logprobs: this.takeLogprobs() });
    this.events.close();
    this.detach();
  }

  fail(e: unknown): void {
    if (this.finished) return;
    this.markPrefilled();
    this.finishReason = 'abort';
    this.finishedAt = this.ctx.now();
    this.events.fail(e);
    this.detach();
  }

  private detach(): void {
    this.cleanup?.();
    this.cleanup = null;
  }

  usage(): CompletionUsage {
    const prompt = this.promptIds.length;
    const completion = this.output.length;
    const prefillS = (this.firstTokenAt - this.scheduledAt) / 1000;
    const decodeS = (this.finishedAt - this.firstTokenAt) / 1000;
    return {
      prompt_tokens: prompt,
      completion_tokens: completion,
      total_tokens: prompt + completion,
      prefill_tokens_per_s: this.firstTokenAt >= 0 && prefillS > 0 ? prompt / prefillS : 0,
      decode_tokens_per_s: completion > 1 && decodeS > 0 ? (completion - 1) / decodeS : 0,
      ttft_ms: this.firstTokenAt >= 0 ? this.firstTokenAt - this.createdAt : 0,
      prompt_tokens_details: { cached_tokens: this.cachedTokens },
      ...(this.truncatedMessages === null ? {} : { truncated_messages: this.truncatedMessages }),
    };
  }

  private emit(text: string): void {
    this.events.push({ kind: 'delta', text, ids: this.takeIds(), logprobs: this.takeLogprobs() });
  }

  private takeIds(): number[] {
    const ids = this.pendingIds;
    this.pendingIds = [];
    return ids;
  }

  private takeLogprobs(): TokenLogprob[] {
    const lp = this.pendingLogprobs;
    this.pendingLogprobs = [];
    return lp;
  }
}
