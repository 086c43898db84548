/** Builders of well-formed stats records for the devtools tests (only the fields a test cares about vary). */
import type { FinetuneStats, IterationStats, MemoryStats, RequestStats, SessionStats } from '../../src/scheduler/stats.ts';

export function iteration(over: Partial<IterationStats> = {}): IterationStats {
  return {
    type: 'iteration',
    iteration: 1,
    t: 0,
    prefillTokens: 0,
    decodeRows: 0,
    finetuneUnits: 0,
    plannedMs: { prefill: 0, decode: 0, finetune: 0 },
    budgetMs: 16,
    budgetSource: 'constant',
    frameDrops: 0,
    frameIntervalMs: null,
    measuredMs: 0,
    wallMs: 0,
    // Wall timing (no GPU ms per kind) unless a test gives timing: 'timestamp' with its gpuMs.
    timing: 'wall',
    gpuMs: null,
    slices: 1,
    schedulerMs: 0.05,
    plansBuilt: 0,
    pipelinesCreated: 0,
    kvBlocksUsed: 0,
    kvBlocksTotal: 64,
    waitingRequests: 0,
    runningRequests: 0,
    pendingPairs: 0,
    ...over,
  };
}

export function request(over: Partial<RequestStats> = {}): RequestStats {
  return { type: 'request', id: 'r', t: 0, arrivedAt: 0, promptTokens: 10, completionTokens: 3, ttftMs: 100, tbtMs: [], finishReason: 'stop', adapter: null, ...over };
}

export function step(over: Partial<FinetuneStats> = {}): FinetuneStats {
  return {
    type: 'finetune',
    t: 0,
    adapter: 'feedback',
    adapterVersion: 1,
    step: 1,
    loss: 0.6931,
    'rewards/chosen': 0.1,
    'rewards/rejected': -0.1,
    'rewards/margins': 0.2,
    'rewards/accuracies': 1,
    grad_norm: 0.5,
    learning_rate: 5e-5,
    skipped: false,
    durationMs: 40,
    tokens: 64,
    ...over,
  };
}

export function session(over: Partial<SessionStats> = {}): SessionStats {
  return { type: 'session', t: 0, policy: 'mace', budgetMs: 16, slo: { ttftMs: 500, tbtMs: 80 }, kvBlocksTotal: 64, modelName: 'stories260K', ...over };
}

export function memory(over: Partial<MemoryStats> = {}): MemoryStats {
  return { type: 'memory', t: 0, buffers: 12, bytes: 4096, querySets: 1, byOwner: { weights: { buffers: 8, bytes: 3072 }, uniforms: { buffers: 4, bytes: 1024 } }, ...over };
}
