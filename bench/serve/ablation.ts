/**
 * Ablations of the MACE scheduler for `mace bench serve --ablate A,B`: each switches one mechanism
 * off so its effect on latency and learning is one extra row of the same benchmark.
 *   no-loss-priority  γ = 0: a pair's DPO loss no longer raises its priority
 *   no-best-fit       λ1 = λ2 = 0: candidates are taken by priority alone, the first that fits
 *                     (first fit), not by how well they fill what is left of the budget and memory
 *   no-aging          no priority growth with waiting time, for prompts and pairs
 *   layer-units       fine-tune work units of a whole layer (the coarse cut) instead of one matmul
 */
import type { UnitGranularity } from '../../src/learn/trainer.ts';
import type { SchedulerConfig } from '../../src/scheduler/types.ts';

export const ABLATIONS = ['no-loss-priority', 'no-best-fit', 'no-aging', 'layer-units', 'no-decode-stretch'] as const;
export type Ablation = (typeof ABLATIONS)[number];

export function isAblation(x: unknown): x is Ablation {
  return typeof x === 'string' && (ABLATIONS as readonly string[]).includes(x);
}

/** What an ablation changes: scheduler tuning and/or the learner's unit granularity. */
export interface AblationSettings {
  tuning: Partial<Omit<SchedulerConfig, 'policy' | 'budgetMs'>>;
  unitGranularity: UnitGranularity;
}

export function ablationSettings(a: Ablation | null): AblationSettings {
  switch (a) {
    case null:
      return { tuning: {}, unitGranularity: 'matmul' };
    case 'no-loss-priority':
      return { tuning: { gamma: 0 }, unitGranularity: 'matmul' };
    case 'no-best-fit':
      return { tuning: { lambdaMemory: 0, lambdaLatency: 0 }, unitGranularity: 'matmul' };
    case 'no-aging':
      return { tuning: { agingPrefill: 0, agingFinetune: 0 }, unitGranularity: 'matmul' };
    case 'layer-units':
      return { tuning: {}, unitGranularity: 'layer' };
    case 'no-decode-stretch':
      return { tuning: { decodeStretch: Infinity }, unitGranularity: 'matmul' };
  }
}
