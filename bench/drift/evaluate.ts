/**
 * The offline evaluation of `mace bench drift`: after a policy's live run, every snapshot of the
 * adapter that was serving is measured on held-out material the trace never used, under the rule in
 * force at the snapshot's time (bench/drift/metrics.ts defines each figure):
 *
 *   win rate     the served adapter's answer vs the base model's answer to the same held-out prompt
 *                and seed (temperature 1), judged by the current rule, ties as half;
 *   CLPD         mean over the current rule's held-out pairs of the adapter's chosen-minus-rejected
 *                log-prob difference minus the base model's;
 *   reward acc.  DPO's implicit-reward accuracy on those pairs;
 *   distinct     distinct word-bigram ratio of the held-out answers (collapse shows as a fall).
 *
 * Held-out pairs per rule are made once from the base model's own sampled continuations of the
 * held-out prompts (makeStoryPairs, the same as `mace train --stories`), so every policy and every
 * snapshot is measured on the same pairs. Answers and log-probs come from the GPU: an eval engine
 * (the snapshot loaded as adapter 'snap') and an eval DpoTrainer (its own adapter, written from the
 * snapshot). Snapshots of the same version are measured once.
 */
import { createEngine, type Engine } from '../../src/engine/openai.ts';
import type { EngineModel } from '../../src/engine/engine.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import { createAdapter, writeAdapter, type AdapterConfig, type GpuAdapter, type HostAdapter } from '../../src/learn/adapter.ts';
import { tokenizePair, truncatePair } from '../../src/learn/pair-tokens.ts';
import type { TokenPair } from '../../src/learn/reference.ts';
import { makeStoryPairs, type StoryRule } from '../../src/learn/stories-prefs.ts';
import { DpoTrainer, TOKEN_BUCKET, type PairLogprobs } from '../../src/learn/trainer.ts';
import { clpd, distinctBigramRatio, rewardAccuracy, winRate } from './metrics.ts';
import type { DriftSchedule } from './rules.ts';

export interface EvalOptions {
  heldOutPrompts: readonly string[];
  /** Seeds per held-out prompt for the win rate (same seed for base and adapter). */
  seedsPerPrompt: number;
  /** Base samples per held-out prompt to build each rule's held-out pairs. */
  pairSamplesPerPrompt: number;
  answerTokens: number;
  beta: number;
  /** Longest pair (prompt + response) the eval trainer takes. */
  maxTokens: number;
  seed: number;
}

export interface EvalPoint {
  winRate: number;
  clpd: number;
  rewardAccuracy: number;
  distinctBigrams: number;
  pairs: number;
}

interface RulePairs {
  tokens: TokenPair[];
  base: PairLogprobs[];
}

/** What every snapshot is measured against: base answers and each phase's held-out pairs. */
export class DriftEvaluator {
  private readonly engine: Engine;
  private trainer: DpoTrainer | null = null;
  private adapter: GpuAdapter | null = null;
  private baseAnswers: string[] = [];
  private readonly pairs = new Map<string, RulePairs>();
  private readonly cache = new Map<string, EvalPoint>();
  /** The base model's log-probs of anchor pairs (they never change), by the pair's token ids. */
  private readonly baseByPair = new Map<string, PairLogprobs>();

  constructor(
    private readonly ctx: GpuContext,
    private readonly model: EngineModel,
    private readonly o: EvalOptions,
    /** The learnt adapters' config (the learner's: rank r, alpha 2r, all seven modules). */
    private readonly adapterConfig: AdapterConfig,
  ) {
    const rank = adapterConfig.r;
    this.engine = createEngine(ctx, model, { maxSeqs: 8, maxTokensPerIteration: 256, kvBudgetBytes: 16 * 2 ** 20, modelName: 'drift-eval', adapters: { slots: 1, maxRank: rank }, scheduler: { budgetMs: 0 } });
  }

  private tasks(): { prompt: string; seed: number }[] {
    return this.o.heldOutPrompts.flatMap((prompt, p) => Array.from({ length: this.o.seedsPerPrompt }, (_, s) => ({ prompt, seed: this.o.seed + 7_000_000 + p * 1000 + s })));
  }

  private async answers(adapter: string | null): Promise<string[]> {
    const run = (t: { prompt: string; seed: number }) => this.engine.completions.create({ prompt: t.prompt, max_tokens: this.o.answerTokens, temperature: 1, seed: t.seed, adapter }).then((r) => r.choices[0].text);
    return Promise.all(this.tasks().map(run));
  }

  /** Base answers and every phase's held-out pairs with their base log-probs (once per run). */
  async prepare(schedule: DriftSchedule, log: (m: string) => void): Promise<void> {
    this.baseAnswers = await this.answers(null);
    const tok = this.model.tokenizer;
    for (const phase of schedule.phases) {
      if (this.pairs.has(phase.name)) continue;
      const made = await makeStoryPairs({
        complete: (p, s) => this.engine.completions.create({ prompt: p, max_tokens: this.o.answerTokens, temperature: 1, seed: s }).then((r) => r.choices[0].text),
        prompts: [...this.o.heldOutPrompts], samplesPerPrompt: this.o.pairSamplesPerPrompt, rule: phase.rule, seed: this.o.seed * 100_000 + 5_000_000, heldOutFraction: 0,
      });
      const tokens = made.train.map((p) => truncatePair(tokenizePair(tok, p, { eos: null }), this.o.maxTokens)).filter((p): p is TokenPair => p !== null);
      const trainer = await this.trainerFor(null);
      const base: PairLogprobs[] = [];
      for (const p of tokens) base.push(await trainer.logprobs(p, false));
      this.pairs.set(phase.name, { tokens, base });
      log(`  eval pairs for '${phase.name}' (${phase.rule.name}): ${tokens.length} from ${made.totals.samples} base samples of ${this.o.heldOutPrompts.length} held-out prompts (${made.totals.preferred} preferred)`);
    }
  }

  /** The eval trainer, its adapter holding `host` (null: only the base pass is used). */
  private async trainerFor(host: HostAdapter | null): Promise<DpoTrainer> {
    if (!this.trainer) {
      this.adapter = await createAdapter(this.ctx, this.model.config, this.adapterConfig, 1);
      const maxTokens = Math.max(TOKEN_BUCKET, Math.ceil(this.o.maxTokens / TOKEN_BUCKET) * TOKEN_BUCKET);
      try {
        this.trainer = new DpoTrainer(this.ctx, this.model.weights, this.adapter, { maxTokens, beta: this.o.beta, schedule: { kind: 'constant', baseLr: 0, warmupSteps: 0, totalSteps: 0 } });
      } catch (e) {
        this.adapter.destroy();
        this.adapter = null;
        throw e;
      }
    }
    if (host) writeAdapter(this.ctx, this.adapter!, host); // a snapshot of another shape is a typed AdapterShapeError
    return this.trainer;
  }

  /** Reward accuracy of `host` on token pairs (the anchor guard's check during a live run). */
  async anchorAccuracy(host: HostAdapter, pairs: readonly TokenPair[]): Promise<number> {
    const rows = await this.rows(host, pairs, null);
    return rewardAccuracy(rows, this.o.beta).accuracy;
  }

  private async rows(host: HostAdapter, pairs: readonly TokenPair[], base: readonly PairLogprobs[] | null) {
    const trainer = await this.trainerFor(host);
    const adapted: PairLogprobs[] = [];
    for (const p of pairs) adapted.push(await trainer.logprobs(p, true));
    const ref: PairLogprobs[] = base ? [...base] : [];
    if (!base) {
      for (const p of pairs) {
        const key = `${p.prompt.join(',')}|${p.chosen.join(',')}|${p.rejected.join(',')}`;
        let b = this.baseByPair.get(key);
        if (!b) this.baseByPair.set(key, (b = await trainer.logprobs(p, false)));
        ref.push(b);
      }
    }
    return adapted.map((a, i) => ({ adapterChosen: a.chosen, adapterRejected: a.rejected, baseChosen: ref[i].chosen, baseRejected: ref[i].rejected }));
  }

  /** Measure the adapter that served (null: the base model) under `phase`'s rule. */
  async point(key: string, served: HostAdapter | null, phase: { name: string; rule: StoryRule }): Promise<EvalPoint> {
    const cacheKey = `${key}|${phase.name}`;
    const hit = this.cache.get(cacheKey);
    if (hit) return hit;
    const rp = this.pairs.get(phase.name);
    if (!rp) throw new Error(`drift eval: phase '${phase.name}' was not prepared`);
    let answers = this.baseAnswers;
    let rows = rp.base.map((b) => ({ adapterChosen: b.chosen, adapterRejected: b.rejected, baseChosen: b.chosen, baseRejected: b.rejected }));
    if (served) {
      await this.engine.adapters.load('snap', served);
      answers = await this.answers('snap');
      rows = await this.rows(served, rp.tokens, rp.base);
    }
    const point: EvalPoint = {
      winRate: winRate(answers, this.baseAnswers, phase.rule),
      clpd: rows.length ? clpd(rows) : 0,
      rewardAccuracy: rows.length ? rewardAccuracy(rows, this.o.beta).accuracy : 0.5,
      distinctBigrams: distinctBigramRatio(answers),
      pairs: rows.length,
    };
    this.cache.set(cacheKey, point);
    return point;
  }

  destroy(): void {
    this.engine.destroy();
    this.trainer?.destroy();
    this.adapter?.destroy();
  }
}
