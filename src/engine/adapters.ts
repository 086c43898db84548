/**
 * Named LoRA adapters resident in the engine's adapter bank (src/learn/bank.ts): name -> slot.
 * The bank has a fixed number of slots and a fixed rank, chosen at engine creation, so loading,
 * replacing and unloading adapters never allocates GPU memory or rebuilds a dispatch plan.
 *
 * Timing: bank writes are queue.writeBuffer calls, ordered after every step already submitted, and
 * a load runs synchronously between two steps; so a load (or a replacement under the same name)
 * is seen whole by every step from the next iteration on, never half-written.
 *
 * This file is bookkeeping only; the engine (engine.ts) fails the requests that name an adapter
 * being unloaded, and openai.ts turns PEFT files into host adapters.
 */
import type { GpuContext } from '../gpu/device.ts';
import { createAdapterBank, type AdapterBank } from '../learn/bank.ts';
import type { HostAdapter } from '../learn/adapter.ts';
import { AdapterSlotError } from '../learn/errors.ts';
import type { ModelConfig } from '../model/config.ts';
import { LINEAR_MODULES, type LinearModule } from '../model/tensors.ts';
import { EngineOptionsError, InvalidRequestError } from './errors.ts';
import type { AdapterInfo, AdapterOptions } from './types.ts';

/** Longest adapter name (names travel in every request; keep them short and printable). */
export const MAX_ADAPTER_NAME = 128;

/** A request or a management call named an adapter that is not loaded. */
export class AdapterNotFoundError extends Error {
  readonly code = 'adapter-not-found';
  constructor(
    readonly adapter: string,
    loaded: readonly string[],
  ) {
    super(`adapter '${adapter}' is not loaded (loaded: ${loaded.length ? loaded.join(', ') : 'none'})`);
    this.name = 'AdapterNotFoundError';
  }
}

/** A request's adapter was unloaded while the request was queued or running. */
export class AdapterUnloadedError extends Error {
  readonly code = 'adapter-unloaded';
  constructor(readonly adapter: string) {
    super(`adapter '${adapter}' was unloaded before the request finished`);
    this.name = 'AdapterUnloadedError';
  }
}

/** Check an adapter name: a non-empty string of at most MAX_ADAPTER_NAME printable characters. */
export function adapterNameProblem(name: unknown): string | null {
  if (typeof name !== 'string' || name.length === 0) return `= ${JSON.stringify(name) ?? String(name)} must be a non-empty string`;
  if (name.length > MAX_ADAPTER_NAME) return `has ${name.length} characters; at most ${MAX_ADAPTER_NAME}`;
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'must not contain control characters';
  return null;
}

/** Resolved adapter options (slots 0: no bank). */
export interface ResolvedAdapterOptions {
  slots: number;
  maxRank: number;
  targetModules: LinearModule[];
}

export function resolveAdapterOptions(o: AdapterOptions | undefined): ResolvedAdapterOptions {
  const slots = o?.slots ?? 0;
  const maxRank = o?.maxRank ?? 16;
  if (!Number.isInteger(slots) || slots < 0) throw new EngineOptionsError('adapters.slots', `= ${slots} must be an integer >= 0`);
  if (!Number.isInteger(maxRank) || maxRank < 1) throw new EngineOptionsError('adapters.maxRank', `= ${maxRank} must be a positive integer`);
  const targets = o?.targetModules ?? [...LINEAR_MODULES];
  if (!Array.isArray(targets) || targets.length === 0 || targets.some((m) => !(LINEAR_MODULES as readonly string[]).includes(m)) || new Set(targets).size !== targets.length) {
    throw new EngineOptionsError('adapters.targetModules', `= ${JSON.stringify(targets)} must be a non-empty list of distinct ${LINEAR_MODULES.join('/')}`);
  }
  return { slots, maxRank, targetModules: LINEAR_MODULES.filter((m) => targets.includes(m)) };
}

interface Resident {
  slot: number;
  info: AdapterInfo;
}

export class AdapterRegistry {
  readonly bank: AdapterBank;
  private readonly byName = new Map<string, Resident>();
  /** Free slots, lowest last (pop gives the lowest). */
  private readonly free: number[];
  /** Per slot: bumped whenever the slot's weights change (cached K/V computed before are stale). */
  private readonly epochs: number[];
  /** Told of each epoch change (the engine's prefix cache drops the old epoch's entries). */
  private readonly changeListeners = new Set<(slot: number, oldEpoch: number) => void>();

  constructor(
    ctx: GpuContext,
    model: ModelConfig,
    readonly options: ResolvedAdapterOptions,
  ) {
    this.bank = createAdapterBank(ctx, model, { nSlots: options.slots, rank: options.maxRank, targetModules: options.targetModules });
    this.free = Array.from({ length: options.slots }, (_, i) => options.slots - 1 - i);
    this.epochs = new Array<number>(options.slots).fill(0);
  }

  /** The slot's weight epoch (see `epochs`). */
  epochOf(slot: number): number {
    const e = this.epochs[slot];
    if (e === undefined) throw new RangeError(`adapter slot ${slot} is outside [0, ${this.epochs.length})`);
    return e;
  }

  /** Listen to weight changes per slot; returns the unsubscribe. */
  onChange(listener: (slot: number, oldEpoch: number) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /**
   * The slot's weights changed outside load/unload (a learner's step copied into the bank): from
   * now on its K/V differ from what was cached.
   */
  markChanged(slot: number): void {
    const old = this.epochOf(slot);
    this.epochs[slot] = old + 1;
    for (const l of this.changeListeners) l(slot, old);
  }

  /**
   * Put `adapter` in the bank under `name`: the same slot when the name is loaded (a replacement),
   * else a free one. Everything is validated (bank.load checks before it writes), so a failed load
   * leaves the bank and the name as they were.
   */
  load(name: string, adapter: HostAdapter): AdapterInfo {
    const bad = adapterNameProblem(name);
    if (bad) throw new InvalidRequestError('adapter', bad);
    const old = this.byName.get(name);
    const slot = old ? old.slot : this.free[this.free.length - 1];
    if (slot === undefined) throw new AdapterSlotError(`all ${this.options.slots} adapter slots are taken (${this.names().join(', ')}); unload one first`);
    this.bank.load(slot, adapter);
    if (!old) this.free.pop();
    this.markChanged(slot);
    const c = adapter.config;
    const info: AdapterInfo = { name, slot, r: c.r, loraAlpha: c.loraAlpha, useRslora: c.useRslora, targetModules: LINEAR_MODULES.filter((m) => c.targetModules.includes(m)), baseModelNameOrPath: c.baseModelNameOrPath, version: (old?.info.version ?? 0) + 1 };
    this.byName.set(name, { slot, info });
    return { ...info, targetModules: [...info.targetModules] };
  }

  /** Remove `name`: its slot's scale goes to 0 and the slot is free for the next load. */
  unload(name: string): AdapterInfo {
    const r = this.byName.get(name);
    if (!r) throw new AdapterNotFoundError(name, this.names());
    this.bank.unload(r.slot);
    this.markChanged(r.slot);
    this.byName.delete(name);
    this.free.push(r.slot);
    this.free.sort((a, b) => b - a);
    return r.info;
  }

  /** The slot of a loaded adapter, or undefined. */
  slotOf(name: string): number | undefined {
    return this.byName.get(name)?.slot;
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  list(): AdapterInfo[] {
    return [...this.byName.values()].map((r) => ({ ...r.info, targetModules: [...r.info.targetModules] })).sort((a, b) => a.slot - b.slot);
  }

  destroy(): void {
    this.bank.destroy();
  }
}
