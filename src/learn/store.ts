/**
 * IndexedDB persistence (idb-keyval) for the learning loop: the feedback log, preference pairs and
 * adapter versions. One database (default 'mace-web') with one object store (default 'learn');
 * idb-keyval creates a database's object store only when it first creates the database, so a
 * database name goes with exactly one store name. Keys are arrays, so a kind lists by key range:
 *   ['completion', completionId] → CompletionRecord
 *   ['rating', completionId]     → RatingRecord (the latest rating only)
 *   ['pair', pairId]             → PreferencePair added directly or imported (feedback pairs are
 *                                  recomputed from the ratings on load, so they are not stored)
 *   ['adapter', version]         → StoredAdapterRecord (PEFT files + metadata + checksum)
 *   ['adapter-latest']           → version number of the latest adapter
 *
 * Adapter versions are crash-safe by ordering: the new version is written whole, under a key no
 * other version uses (IDB `add`, so a racing writer cannot overwrite it), in its own transaction;
 * only after that commits does 'adapter-latest' move; only then are versions beyond the newest
 * `keepVersions` deleted (never the latest). A crash at any point leaves the pointer on a whole
 * version. Corrupt or unreadable records are reported (skipped, or a StoredRecordError naming the
 * key) and never deleted.
 */
import { createStore, get, promisifyRequest, set, del, type UseStore } from 'idb-keyval';
import type { ModelConfig } from '../model/config.ts';
import type { HostAdapter } from './adapter.ts';
import { LearnError } from './errors.ts';
import { FeedbackLog, type CompletionInput, type CompletionRecord, type RateResult, type RatingRecord, type RestoreSkip } from './feedback.ts';
import type { AddedPair, PairInput, PreferencePair } from './pairs.ts';
import { exportPeft, type PeftFiles } from './peft.ts';

export const DEFAULT_DB_NAME = 'mace-web';
export const DEFAULT_STORE_NAME = 'learn';
export const DEFAULT_KEEP_VERSIONS = 3;

/** A stored record that cannot be read back (wrong shape, checksum mismatch, dangling pointer). */
export class StoredRecordError extends LearnError {
  constructor(
    readonly key: string,
    detail: string,
  ) {
    super('corrupt-record', `stored record ${key}: ${detail}`);
  }
}

/** Bad options or arguments of the store (keepVersions, adapter bytes). */
export class StoreInputError extends LearnError {
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super('bad-store-input', `${field} ${detail}`);
  }
}

export interface LearnStoreOptions {
  dbName?: string;
  storeName?: string;
  /** Adapter versions kept (>= 1). Default 3. */
  keepVersions?: number;
}

/** What the caller says about an adapter version (all optional, stored as given). */
export interface AdapterMeta {
  label?: string;
  /** Optimizer steps, pairs trained on, metrics... plain JSON-able numbers. */
  metrics?: Record<string, number>;
  note?: string;
}

export interface StoredAdapterRecord {
  version: number;
  savedAt: number;
  meta: AdapterMeta;
  /** adapter_config.json text. */
  config: string;
  /** adapter_model.safetensors bytes. */
  weights: Uint8Array;
  /** FNV-1a 32 of the weights then the config bytes, 8 hex digits. */
  checksum: string;
}

export interface AdapterVersionInfo {
  version: number;
  savedAt: number;
  meta: AdapterMeta;
  bytes: number;
  latest: boolean;
}

export type AdapterPayload = PeftFiles | { model: ModelConfig; host: HostAdapter };

/** A record that loadFeedback could not use: its key and why. */
export interface StoreSkip {
  key: string;
  error: LearnError;
}

const keyText = (k: IDBValidKey) => JSON.stringify(k);
const LATEST: IDBValidKey = ['adapter-latest'];

/** All [key, value] entries of one kind (keys [kind, ...]), by key range. */
function entriesOf(store: UseStore, kind: string): Promise<[IDBValidKey, unknown][]> {
  return store('readonly', async (s) => {
    const range = IDBKeyRange.bound([kind], [kind, []]); // arrays sort after every other key type
    const [keys, values] = await Promise.all([promisifyRequest(s.getAllKeys(range)), promisifyRequest(s.getAll(range))]);
    return keys.map((k, i) => [k, values[i]] as [IDBValidKey, unknown]);
  });
}

function checksum(weights: Uint8Array, config: string): string {
  let h = 0x811c9dc5;
  const mix = (bytes: Uint8Array) => {
    for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  };
  mix(weights);
  mix(new TextEncoder().encode(config));
  return (h >>> 0).toString(16).padStart(8, '0');
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Check a stored adapter record's shape and checksum. */
function checkAdapterRecord(key: string, v: unknown): StoredAdapterRecord {
  if (!isRecord(v)) throw new StoredRecordError(key, 'is not an adapter record');
  if (!Number.isInteger(v.version)) throw new StoredRecordError(key, 'has no integer version');
  if (!(v.weights instanceof Uint8Array)) throw new StoredRecordError(key, 'weights are not bytes');
  if (typeof v.config !== 'string') throw new StoredRecordError(key, 'config is not text');
  if (typeof v.checksum !== 'string' || checksum(v.weights, v.config) !== v.checksum) throw new StoredRecordError(key, 'checksum does not match its bytes (partly written or altered)');
  return v as unknown as StoredAdapterRecord;
}

export class LearnStore {
  readonly dbName: string;
  readonly storeName: string;
  readonly keepVersions: number;
  private readonly store: UseStore;

  /** A handle on the database (opened lazily by the first call). Two handles on one name share the data. */
  constructor(o: LearnStoreOptions = {}) {
    this.dbName = o.dbName ?? DEFAULT_DB_NAME;
    this.storeName = o.storeName ?? DEFAULT_STORE_NAME;
    this.keepVersions = o.keepVersions ?? DEFAULT_KEEP_VERSIONS;
    if (!Number.isInteger(this.keepVersions) || this.keepVersions < 1) throw new StoreInputError('keepVersions', `= ${this.keepVersions}; it must be an integer >= 1`);
    this.store = createStore(this.dbName, this.storeName);
  }

  // ---------------------------------------------------------------- feedback and pairs

  saveCompletion(r: CompletionRecord): Promise<void> {
    return set(['completion', r.completionId], r, this.store);
  }

  saveRating(r: RatingRecord): Promise<void> {
    return set(['rating', r.completionId], r, this.store);
  }

  /** Store a direct/imported pair (feedback pairs are recomputed on load and not stored). */
  savePair(p: PreferencePair): Promise<void> {
    return set(['pair', p.id], p, this.store);
  }

  deletePair(id: string): Promise<void> {
    return del(['pair', id], this.store);
  }

  /** Rebuild the feedback log from the stored records; unusable records are skipped, not deleted. */
  async loadFeedback(now: () => number = Date.now): Promise<{ log: FeedbackLog; skipped: StoreSkip[] }> {
    const [c, r, p] = await Promise.all([entriesOf(this.store, 'completion'), entriesOf(this.store, 'rating'), entriesOf(this.store, 'pair')]);
    const { log, skipped } = FeedbackLog.restore({ completions: c.map((e) => e[1]), ratings: r.map((e) => e[1]), pairs: p.map((e) => e[1]) }, now);
    const keyOf = (s: RestoreSkip) => keyText((s.kind === 'completion' ? c : s.kind === 'rating' ? r : p)[s.index][0]);
    return { log, skipped: skipped.map((s) => ({ key: keyOf(s), error: s.error })) };
  }

  // ---------------------------------------------------------------- adapter versions

  /**
   * Save a new adapter version: PEFT files, or a host adapter (exported to PEFT here). Returns its
   * info once it is the latest and old versions are pruned.
   */
  async saveAdapterVersion(payload: AdapterPayload, meta: AdapterMeta = {}): Promise<AdapterVersionInfo> {
    const files = 'host' in payload ? exportPeft(payload.model, payload.host) : payload;
    if (!(files.weights instanceof Uint8Array) || files.weights.length === 0) throw new StoreInputError('weights', 'must be non-empty bytes (adapter_model.safetensors)');
    if (typeof files.config !== 'string' || files.config === '') throw new StoreInputError('config', 'must be the adapter_config.json text');
    const versions = await this.versionKeys();
    const latest = await get<unknown>(LATEST, this.store);
    const version = Math.max(0, ...versions, typeof latest === 'number' ? latest : 0) + 1;
    // A copy of exactly the bytes: a view into a larger buffer would store the whole buffer.
    const weights = files.weights.slice();
    const record: StoredAdapterRecord = { version, savedAt: Date.now(), meta: structuredClone(meta), config: files.config, weights, checksum: checksum(weights, files.config) };
    // 1. The whole version, in its own transaction, under a fresh key (add fails if it exists).
    await this.store('readwrite', (s) => {
      s.add(record, ['adapter', version]);
      return promisifyRequest(s.transaction);
    });
    // 2. Only now the pointer moves.
    await set(LATEST, version, this.store);
    // 3. Prune: keep the newest keepVersions (the latest always among them).
    const all = [...versions, version].sort((a, b) => b - a);
    const drop = all.slice(this.keepVersions).filter((v) => v !== version);
    if (drop.length > 0) {
      await this.store('readwrite', (s) => {
        for (const v of drop) s.delete(['adapter', v]);
        return promisifyRequest(s.transaction);
      });
    }
    return { version, savedAt: record.savedAt, meta: record.meta, bytes: weights.length, latest: true };
  }

  /** Version numbers stored, ascending. */
  private async versionKeys(): Promise<number[]> {
    const keys = await this.store('readonly', (s) => promisifyRequest(s.getAllKeys(IDBKeyRange.bound(['adapter'], ['adapter', []]))));
    return keys.map((k) => (k as unknown[])[1]).filter((v): v is number => typeof v === 'number').sort((a, b) => a - b);
  }

  /**
   * The latest adapter version, or null when none was ever saved. A dangling or corrupt latest is a
   * StoredRecordError, unless `fallback`: then the newest older version that reads back whole is
   * returned (with the unreadable ones in `skipped`).
   */
  async loadLatestAdapter(o: { fallback?: boolean } = {}): Promise<(StoredAdapterRecord & { skipped: StoreSkip[] }) | null> {
    const latest = await get<unknown>(LATEST, this.store);
    if (latest === undefined) return null;
    const skipped: StoreSkip[] = [];
    if (typeof latest !== 'number' || !Number.isInteger(latest)) {
      const e = new StoredRecordError(keyText(LATEST), `is ${JSON.stringify(latest)}, not a version number`);
      if (!o.fallback) throw e;
      skipped.push({ key: keyText(LATEST), error: e });
    }
    const candidates = (await this.versionKeys()).filter((v) => typeof latest !== 'number' || v <= latest).reverse();
    if (typeof latest === 'number' && !candidates.includes(latest)) {
      const e = new StoredRecordError(keyText(['adapter', latest]), 'is named by adapter-latest but missing');
      if (!o.fallback) throw e;
      skipped.push({ key: e.key, error: e });
    }
    for (const v of candidates) {
      try {
        return { ...(await this.loadAdapterVersion(v)), skipped };
      } catch (e) {
        if (!(e instanceof StoredRecordError) || !o.fallback) throw e;
        skipped.push({ key: e.key, error: e });
      }
    }
    if (skipped.length > 0) throw skipped[0].error;
    return null;
  }

  /** One stored version, checked (StoredRecordError if missing or corrupt). */
  async loadAdapterVersion(version: number): Promise<StoredAdapterRecord> {
    const key = keyText(['adapter', version]);
    const v = await get<unknown>(['adapter', version], this.store);
    if (v === undefined) throw new StoredRecordError(key, 'is missing');
    return checkAdapterRecord(key, v);
  }

  /** Stored versions, newest first, without their bytes (corrupt ones are listed with bytes -1). */
  async listAdapterVersions(): Promise<AdapterVersionInfo[]> {
    const latest = await get<unknown>(LATEST, this.store);
    const entries = await entriesOf(this.store, 'adapter');
    return entries
      .map(([k, v]) => {
        const version = (k as unknown[])[1] as number;
        const r = isRecord(v) ? v : {};
        return { version, savedAt: typeof r.savedAt === 'number' ? r.savedAt : 0, meta: isRecord(r.meta) ? (r.meta as AdapterMeta) : {}, bytes: r.weights instanceof Uint8Array ? r.weights.length : -1, latest: version === latest };
      })
      .sort((a, b) => b.version - a.version);
  }
}

/**
 * A FeedbackLog whose every change is written to a LearnStore before the call resolves. Changes
 * are validated by the log first, so bad input throws without touching the stored data.
 */
export class PersistentFeedback {
  private constructor(
    readonly store: LearnStore,
    readonly log: FeedbackLog,
    /** Records that could not be loaded (still stored, untouched). */
    readonly skipped: StoreSkip[],
  ) {}

  static async open(store: LearnStore, now: () => number = Date.now): Promise<PersistentFeedback> {
    const { log, skipped } = await store.loadFeedback(now);
    return new PersistentFeedback(store, log, skipped);
  }

  async recordCompletion(input: CompletionInput): Promise<CompletionRecord> {
    const r = this.log.recordCompletion(input);
    await this.store.saveCompletion(r);
    return r;
  }

  async rate(completionId: unknown, rating: unknown, at?: unknown): Promise<RateResult> {
    const r = this.log.rate(completionId, rating, at);
    await this.store.saveRating(r.rating);
    return r;
  }

  /** Add a pair directly (source 'import' unless given); stored unless it is a feedback pair. */
  async addPair(input: PairInput): Promise<AddedPair> {
    const r = this.log.preferences.add(input);
    if (r.changed && r.pair.source !== 'feedback') await this.store.savePair(r.pair);
    return r;
  }

  /** Remove a direct pair (feedback pairs follow the ratings). */
  async removePair(id: string): Promise<boolean> {
    const p = this.log.preferences.get(id);
    if (!p || p.source === 'feedback') return false;
    this.log.preferences.remove(id);
    await this.store.deletePair(id);
    return true;
  }
}
