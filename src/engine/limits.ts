/**
 * Engine options → the engine's sizes and scheduler settings, with defaults and caps; every bad
 * value is an EngineOptionsError naming the option, raised before any GPU memory is taken.
 */
import type { GpuContext } from '../gpu/device.ts';
import { TOPK_MAX } from '../kernels/sampling.ts';
import { blocksForBudget } from '../kv/cache.ts';
import { BLOCK_SIZE, blocksForLength } from '../kv/layout.ts';
import type { ModelConfig } from '../model/config.ts';
import { DEFAULT_PERIODIC, isPolicy, POLICIES } from '../scheduler/policy.ts';
import { DEFAULT_BUDGET_MS, defaultSchedulerConfig, type SchedulerConfig } from '../scheduler/types.ts';
import { EngineOptionsError } from './errors.ts';
import type { EngineOptions, SchedulerOptions } from './types.ts';

/** Engine sizes after defaults and caps. */
export interface ResolvedLimits {
  nBlocks: number;
  maxContext: number;
  maxBlocksPerSeq: number;
  maxTokens: number;
  maxSeqs: number;
  candidates: number;
  topLogprobs: number;
}

/** Limits an EngineOptions field takes when absent (candidates: logits a sampled token is drawn from). */
export const ENGINE_DEFAULTS = { kvBudgetBytes: 64 * 2 ** 20, maxTokensPerIteration: 256, maxSeqs: 8, candidates: 64 } as const;
/** OpenAI's cap on top_logprobs. */
const MAX_TOP_LOGPROBS = 20;

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new EngineOptionsError(name, `= ${v} must be a positive integer`);
  return v;
}

export function resolveLimits(ctx: Pick<GpuContext, 'limits'>, config: ModelConfig, o: EngineOptions): ResolvedLimits {
  const budget = o.kvBudgetBytes ?? ENGINE_DEFAULTS.kvBudgetBytes;
  if (!(budget > 0)) throw new EngineOptionsError('kvBudgetBytes', `= ${budget} must be > 0`);
  const nBlocks = blocksForBudget(ctx, { nLayers: config.nLayers, nKvHeads: config.nKvHeads, headDim: config.headDim }, budget);
  // One sequence alone must always fit the pool, or preemption could not make progress.
  const maxContext = Math.min(positiveInt('maxContext', o.maxContext ?? config.maxPositionEmbeddings), config.maxPositionEmbeddings, nBlocks * BLOCK_SIZE);
  if (maxContext < 2) throw new EngineOptionsError('maxContext', `= ${maxContext} leaves no room for a prompt and a token`);
  const candidates = Math.min(positiveInt('candidates', o.candidates ?? ENGINE_DEFAULTS.candidates), config.vocabSize);
  if (candidates > TOPK_MAX) throw new EngineOptionsError('candidates', `= ${candidates} exceeds the top-k kernel's maximum ${TOPK_MAX}`);
  return {
    nBlocks,
    maxContext,
    maxBlocksPerSeq: blocksForLength(maxContext),
    maxTokens: positiveInt('maxTokensPerIteration', o.maxTokensPerIteration ?? ENGINE_DEFAULTS.maxTokensPerIteration),
    maxSeqs: positiveInt('maxSeqs', o.maxSeqs ?? ENGINE_DEFAULTS.maxSeqs),
    candidates,
    topLogprobs: Math.min(MAX_TOP_LOGPROBS, candidates),
  };
}

/** Scheduler settings after defaults; bad values name the option. */
export function resolveScheduler(o: SchedulerOptions = {}): { config: SchedulerConfig; periodic: typeof DEFAULT_PERIODIC } {
  const policy = o.policy ?? 'mace';
  if (!isPolicy(policy)) throw new EngineOptionsError('scheduler.policy', `= ${JSON.stringify(policy)} is not one of ${POLICIES.join(', ')}`);
  const raw = o.budgetMs ?? DEFAULT_BUDGET_MS;
  if (typeof raw !== 'number' || Number.isNaN(raw) || raw < 0) throw new EngineOptionsError('scheduler.budgetMs', `= ${raw} must be a number of ms >= 0 (0 or Infinity: no budget)`);
  const defaults = defaultSchedulerConfig(policy, raw === 0 ? Infinity : raw);
  for (const k of Object.keys(o.tuning ?? {})) if (!(k in defaults) || k === 'policy' || k === 'budgetMs') throw new EngineOptionsError(`scheduler.tuning.${k}`, `is not a scheduler setting (known: ${Object.keys(defaults).filter((d) => d !== 'policy' && d !== 'budgetMs').join(', ')})`);
  const config: SchedulerConfig = { ...defaults, ...o.tuning, policy, budgetMs: raw === 0 ? Infinity : raw };
  for (const [k, v] of Object.entries(config)) if (k !== 'policy' && (typeof v !== 'number' || Number.isNaN(v))) throw new EngineOptionsError(`scheduler.tuning.${k}`, `= ${String(v)} must be a number`);
  // Shares, caps and waits: a negative one has no meaning (priorities may be any number).
  for (const k of ['finetuneShare', 'decodeStretch', 'finetuneStarveMs', 'minPrefillTokens', 'minFinetuneSamples', 'lambdaMemory', 'lambdaLatency'] as const) {
    if (config[k] < 0) throw new EngineOptionsError(`scheduler.tuning.${k}`, `= ${config[k]} must be >= 0`);
  }
  const periodic = { ...DEFAULT_PERIODIC, ...o.periodic };
  if (!(periodic.periodMs >= 0) || !(Number.isInteger(periodic.pairsTrigger) && periodic.pairsTrigger >= 1)) throw new EngineOptionsError('scheduler.periodic', `= ${JSON.stringify(o.periodic)}: periodMs must be >= 0 and pairsTrigger a positive integer`);
  return { config, periodic };
}
