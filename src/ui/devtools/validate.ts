/**
 * Checks a StatsBatch against src/scheduler/stats.ts before anything is aggregated or drawn. The
 * stream crosses a thread boundary (or comes from a saved trace), so the types alone prove nothing;
 * a bad field throws StatsInputError with its path, and nothing from that batch is applied.
 */
import type { StatsBatch } from '../../scheduler/stats.ts';
import { StatsInputError } from './errors.ts';

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

interface NumberRule {
  /** Smallest allowed value (inclusive). */
  min?: number;
  /** Allow +Infinity (budgets: "no per-frame budget"). */
  infinity?: boolean;
  /** Allow NaN and ±Infinity (optimizer metrics of a skipped step). */
  anyNumber?: boolean;
}

function num(o: Obj, key: string, path: string, rule: NumberRule = {}): void {
  const v = o[key];
  const field = `${path}.${key}`;
  if (typeof v !== 'number') throw new StatsInputError(field, `must be a number, got ${typeof v}`);
  if (rule.anyNumber) return;
  if (Number.isNaN(v) || v === -Infinity || (v === Infinity && !rule.infinity)) throw new StatsInputError(field, `must be finite, got ${v}`);
  if (rule.min !== undefined && v < rule.min) throw new StatsInputError(field, `must be ≥ ${rule.min}, got ${v}`);
}

function str(o: Obj, key: string, path: string, nullable = false): void {
  const v = o[key];
  if (typeof v === 'string' || (nullable && v === null)) return;
  throw new StatsInputError(`${path}.${key}`, `must be a string${nullable ? ' or null' : ''}, got ${v === null ? 'null' : typeof v}`);
}

function oneOf(o: Obj, key: string, path: string, allowed: readonly string[]): void {
  const v = o[key];
  if (typeof v !== 'string' || !allowed.includes(v)) throw new StatsInputError(`${path}.${key}`, `must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
}

function obj(o: Obj, key: string, path: string): Obj {
  const v = o[key];
  if (!isObj(v)) throw new StatsInputError(`${path}.${key}`, 'must be an object');
  return v;
}

const COUNT = { min: 0 };

function iteration(r: Obj, p: string): void {
  num(r, 'iteration', p, COUNT);
  num(r, 't', p);
  for (const k of ['prefillTokens', 'decodeRows', 'finetuneUnits', 'measuredMs', 'wallMs', 'slices', 'schedulerMs', 'plansBuilt', 'pipelinesCreated', 'kvBlocksUsed', 'kvBlocksTotal', 'waitingRequests', 'runningRequests', 'pendingPairs']) num(r, k, p, COUNT);
  const planned = obj(r, 'plannedMs', p);
  for (const k of ['prefill', 'decode', 'finetune']) num(planned, k, `${p}.plannedMs`, COUNT);
  num(r, 'budgetMs', p, { min: 0, infinity: true });
  oneOf(r, 'budgetSource', p, ['frames', 'constant']);
  num(r, 'frameDrops', p, COUNT);
  if (r.frameIntervalMs !== null) num(r, 'frameIntervalMs', p, COUNT);
  oneOf(r, 'timing', p, ['timestamp', 'wall']);
  // GPU ms per kind: an object exactly when the iteration was timed with timestamp queries, each kind
  // a finite ms ≥ 0 or null (that kind did not run); null with wall timing.
  if (r.timing === 'wall') {
    if (r.gpuMs !== null) throw new StatsInputError(`${p}.gpuMs`, `must be null with wall timing, got ${isObj(r.gpuMs) ? 'an object' : typeof r.gpuMs}`);
  } else {
    if (!isObj(r.gpuMs)) throw new StatsInputError(`${p}.gpuMs`, `must be an object { inference, finetune } with timestamp timing, got ${r.gpuMs === null ? 'null' : typeof r.gpuMs}`);
    const gpu = r.gpuMs;
    for (const k of ['inference', 'finetune']) if (gpu[k] !== null) num(gpu, k, `${p}.gpuMs`, COUNT);
  }
}

function request(r: Obj, p: string): void {
  str(r, 'id', p);
  num(r, 't', p);
  num(r, 'promptTokens', p, COUNT);
  num(r, 'completionTokens', p, COUNT);
  if (r.ttftMs !== null) num(r, 'ttftMs', p, COUNT);
  const gaps = r.tbtMs;
  if (!Array.isArray(gaps)) throw new StatsInputError(`${p}.tbtMs`, 'must be an array of numbers');
  for (let i = 0; i < gaps.length; i++) {
    const g = gaps[i];
    if (typeof g !== 'number' || !Number.isFinite(g) || g < 0) throw new StatsInputError(`${p}.tbtMs[${i}]`, `must be a finite number ≥ 0, got ${g}`);
  }
  oneOf(r, 'finishReason', p, ['stop', 'length', 'abort', 'error']);
  str(r, 'adapter', p, true);
  if (r.cachedTokens !== undefined) num(r, 'cachedTokens', p, COUNT);
}

function finetune(r: Obj, p: string): void {
  num(r, 't', p);
  str(r, 'adapter', p);
  num(r, 'adapterVersion', p, COUNT);
  num(r, 'step', p, COUNT);
  // A skipped step (NaN/Inf gradients) legitimately reports non-finite metrics.
  for (const k of ['loss', 'rewards/chosen', 'rewards/rejected', 'rewards/margins', 'rewards/accuracies', 'grad_norm', 'learning_rate']) num(r, k, p, { anyNumber: true });
  if (typeof r.skipped !== 'boolean') throw new StatsInputError(`${p}.skipped`, `must be a boolean, got ${typeof r.skipped}`);
  num(r, 'durationMs', p, COUNT);
  if (r.servingVersion !== undefined && r.servingVersion !== null) num(r, 'servingVersion', p, COUNT);
  if (r.method !== undefined) oneOf(r, 'method', p, ['dpo', 'kto']);
}

function session(r: Obj, p: string): void {
  num(r, 't', p);
  oneOf(r, 'policy', p, ['mace', 'inference-only', 'periodic', 'sync']);
  num(r, 'budgetMs', p, { min: 0, infinity: true });
  const slo = obj(r, 'slo', p);
  num(slo, 'ttftMs', `${p}.slo`, COUNT);
  num(slo, 'tbtMs', `${p}.slo`, COUNT);
  num(r, 'kvBlocksTotal', p, COUNT);
  str(r, 'modelName', p);
}

function memory(r: Obj, p: string): void {
  num(r, 't', p);
  for (const k of ['buffers', 'bytes', 'querySets']) num(r, k, p, COUNT);
  const by = obj(r, 'byOwner', p);
  for (const [owner, v] of Object.entries(by)) {
    if (!isObj(v)) throw new StatsInputError(`${p}.byOwner.${owner}`, 'must be an object { buffers, bytes }');
    num(v, 'buffers', `${p}.byOwner.${owner}`, COUNT);
    num(v, 'bytes', `${p}.byOwner.${owner}`, COUNT);
  }
}

function prefix(r: Obj, p: string): void {
  num(r, 't', p);
  for (const k of ['hits', 'queries', 'cachedBlocks', 'evictions', 'invalidated', 'cachedTokens', 'promptTokens']) num(r, k, p, COUNT);
  num(r, 'hitRate', p, { min: 0 });
  if ((r.hitRate as number) > 1) throw new StatsInputError(`${p}.hitRate`, `must be ≤ 1, got ${String(r.hitRate)}`);
}

const CHECKS: Record<string, (r: Obj, path: string) => void> = { iteration, request, finetune, session, memory, prefix };

/** Throws StatsInputError naming the first bad field; returns the batch typed when it is well formed. */
export function validateStatsBatch(batch: unknown): StatsBatch {
  if (!isObj(batch)) throw new StatsInputError('batch', 'must be an object { timeOrigin, records }');
  num(batch, 'timeOrigin', 'batch', COUNT);
  const records = batch.records;
  if (!Array.isArray(records)) throw new StatsInputError('batch.records', 'must be an array');
  for (let i = 0; i < records.length; i++) {
    const r: unknown = records[i];
    const path = `records[${i}]`;
    if (!isObj(r)) throw new StatsInputError(path, 'must be an object');
    const check = typeof r.type === 'string' && Object.hasOwn(CHECKS, r.type) ? CHECKS[r.type] : undefined;
    if (!check) throw new StatsInputError(`${path}.type`, `must be one of ${Object.keys(CHECKS).join(', ')}, got ${JSON.stringify(r.type)}`);
    check(r, path);
  }
  return batch as unknown as StatsBatch;
}
