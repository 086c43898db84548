/**
 * The shared engine's bookkeeping (workers/shared-engine.worker.ts), kept free of ports and GPU so
 * it runs in Node tests: one Connection per tab, the tab's request ids namespaced under it, the
 * rule that closes a connection (and aborts its requests), which tab holds the loaded model, and
 * whose frames set the engine's budget.
 *
 * When a tab counts as gone (the first of):
 * - goodbye: the client says so (terminate(), or the page's 'pagehide' when it is not kept in the
 *   back/forward cache);
 * - lock-released: the tab holds a Web Lock for its whole life and the worker queues a request for
 *   the same lock; the browser releases a closed or crashed tab's locks at once, so the worker's
 *   request is granted then (no delay, and hidden tabs are never mistaken for closed ones);
 * - heartbeat-timeout: only for a connection without such a lock (navigator.locks missing): the tab
 *   pings every HEARTBEAT_INTERVAL_MS; HEARTBEAT_TIMEOUT_MS without one closes it. Timers of hidden
 *   tabs are throttled (Chrome runs them once a second, once a minute after 5 minutes hidden), which
 *   is why the lock is preferred where it exists.
 */
import type { FrameReport } from '../scheduler/frame-budget.ts';
import { ConnectionClosedError, ModelInUseError, RequestIdError, type ConnectionCloseReason, type LoadRequest, type ModelInfo, type SharedEngineStatus } from './worker-api.ts';

/** A tab pings this often. */
export const HEARTBEAT_INTERVAL_MS = 1000;
/** A connection without a lifetime lock that is silent this long is closed (10 missed pings). */
export const HEARTBEAT_TIMEOUT_MS = 10_000;

/** One tab's (one client's) connection to the shared worker. */
export class Connection {
  /** The tab's requests in flight, by the tab's own id. */
  private readonly live = new Set<string>();
  private closeReason: ConnectionCloseReason | null = null;
  private markClosed: () => void = () => {};
  /** Settles when the connection closes: a call waiting on the tab gives up then. */
  readonly whenClosed: Promise<void> = new Promise((resolve) => (this.markClosed = resolve));
  /** The tab's latest frame report (null: none yet). */
  frames: FrameReport | null = null;
  /** 'lock': the tab's lifetime lock tells when it closes; 'heartbeat': its pings do. */
  liveness: 'lock' | 'heartbeat' = 'heartbeat';

  constructor(
    readonly id: string,
    /** When the tab was last heard from (any call counts). */
    public lastHeard: number,
  ) {}

  get closed(): boolean {
    return this.closeReason !== null;
  }

  get closedBy(): ConnectionCloseReason | null {
    return this.closeReason;
  }

  /** The id the engine knows a request of this tab by: unique across tabs, whatever ids the tabs pick. */
  engineId(requestId: string): string {
    return `${this.id}/${requestId}`;
  }

  /** Register a request of this tab; returns its engine id. Bad, duplicate or late ids are typed errors. */
  begin(requestId: unknown): string {
    if (this.closeReason) throw new ConnectionClosedError(this.id, this.closeReason);
    if (typeof requestId !== 'string' || requestId === '') throw new RequestIdError(String(requestId), 'must be a non-empty string');
    if (this.live.has(requestId)) throw new RequestIdError(requestId, 'is still in use by another request');
    this.live.add(requestId);
    return this.engineId(requestId);
  }

  end(requestId: string): void {
    this.live.delete(requestId);
  }

  /** Only a request of this tab can be aborted through it. */
  owns(requestId: unknown): requestId is string {
    return typeof requestId === 'string' && this.live.has(requestId);
  }

  /** The tab's own ids of its requests in flight. */
  inflight(): string[] {
    return [...this.live];
  }

  /** Mark closed (idempotent); returns whether this call closed it. */
  close(reason: ConnectionCloseReason): boolean {
    if (this.closeReason) return false;
    this.closeReason = reason;
    this.markClosed();
    return true;
  }
}

export interface RegistryOptions {
  now(): number;
  /** Abort one request in the engine, by engine id (EngineHost.abort). */
  abortInEngine(engineId: string): void;
  /** Told after a connection closed and its requests were aborted. */
  onClosed?(connection: Connection, reason: ConnectionCloseReason): void;
  timeoutMs?: number;
}

/** The open connections, and what closing one does. */
export class ConnectionRegistry {
  private serial = 0;
  private readonly open = new Map<string, Connection>();
  private readonly closedBy: Record<ConnectionCloseReason, number> = { goodbye: 0, 'lock-released': 0, 'heartbeat-timeout': 0 };
  private abortedOnClose = 0;
  private readonly timeoutMs: number;

  constructor(private readonly options: RegistryOptions) {
    this.timeoutMs = options.timeoutMs ?? HEARTBEAT_TIMEOUT_MS;
  }

  connect(): Connection {
    const c = new Connection(`tab-${++this.serial}`, this.options.now());
    this.open.set(c.id, c);
    return c;
  }

  /** The tab said something: it is alive. */
  heard(c: Connection): void {
    c.lastHeard = this.options.now();
  }

  /** Close a connection and abort its in-flight requests in the engine (other tabs' are untouched). Returns how many. */
  close(c: Connection, reason: ConnectionCloseReason): number {
    if (!c.close(reason)) return 0;
    this.open.delete(c.id);
    this.closedBy[reason]++;
    const ids = c.inflight();
    for (const id of ids) {
      try {
        this.options.abortInEngine(c.engineId(id));
      } catch {
        // the engine went away meanwhile: nothing left to abort
      }
    }
    this.abortedOnClose += ids.length;
    this.options.onClosed?.(c, reason);
    return ids.length;
  }

  /** Close the heartbeat-only connections silent for longer than the timeout; returns them. */
  sweep(): Connection[] {
    const now = this.options.now();
    const silent = [...this.open.values()].filter((c) => c.liveness === 'heartbeat' && now - c.lastHeard > this.timeoutMs);
    for (const c of silent) this.close(c, 'heartbeat-timeout');
    return silent;
  }

  connections(): Connection[] {
    return [...this.open.values()];
  }

  status(c: Connection, model: SharedModel): SharedEngineStatus {
    return { connectionId: c.id, connections: this.open.size, modelHolders: model.holderCount, modelLoads: model.loads, closed: { ...this.closedBy }, abortedOnClose: this.abortedOnClose };
  }
}

/** JSON with object keys sorted, so equal requests give equal text whatever their key order. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o).filter((k) => o[k] !== undefined && typeof o[k] !== 'function').sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/**
 * What makes two load requests the same model in the same engine: the source, the format, the
 * engine options, the cache, feedback store and learning settings, with the defaults filled in
 * (absent `cache` = true...). null: not comparable (picked files), never shared.
 */
export function loadKey(request: LoadRequest): string | null {
  if (!request || typeof request !== 'object' || !request.source || request.source.kind === 'files') return null;
  const s = request.source;
  const source = s.kind === 'hub' ? { kind: 'hub', repo: s.repo, revision: s.revision ?? 'main' } : { kind: s.kind, base: (s as { base?: unknown }).base };
  return canonical({ source, format: request.format, engine: request.engine ?? {}, cache: request.cache ?? true, feedbackStore: request.feedbackStore ?? 'mace-web', learning: request.learning === false ? false : (request.learning ?? {}) });
}

/** Loading this connection's request: attach to the loaded model, or load (replacing one nobody else holds). */
export type LoadDecision = { kind: 'reuse'; info: ModelInfo } | { kind: 'load' };

/**
 * The model the shared engine has loaded and the connections holding it. The rule: the same
 * request (loadKey) reuses it; a different one replaces it only when no other connection holds it,
 * else ModelInUseError. The model is freed when its last holder lets go (unload or close).
 */
export class SharedModel {
  private current: { key: string | null; info: ModelInfo } | null = null;
  private readonly holders = new Set<string>();
  /** Loads run (reuses not counted). */
  loads = 0;

  get holderCount(): number {
    return this.holders.size;
  }

  get loaded(): ModelInfo | null {
    return this.current?.info ?? null;
  }

  /** `engineHasModel`: the engine still has it (false after a device loss or a failed load: it is gone). */
  decide(connectionId: string, key: string | null, engineHasModel: boolean): LoadDecision {
    if (!engineHasModel) this.dropped();
    if (this.current && key !== null && this.current.key === key) {
      this.holders.add(connectionId);
      return { kind: 'reuse', info: { ...this.current.info, reused: true } };
    }
    const others = [...this.holders].filter((h) => h !== connectionId).length;
    if (this.current && others > 0) throw new ModelInUseError(this.current.info.modelName, others);
    return { kind: 'load' };
  }

  /** A load finished; the connection holds the model unless it closed meanwhile. */
  loadedBy(connectionId: string | null, key: string | null, info: ModelInfo): void {
    this.loads++;
    this.current = { key, info };
    this.holders.clear();
    if (connectionId !== null) this.holders.add(connectionId);
  }

  /** The connection lets go; true when a model is loaded and nobody holds it any more (free it). */
  release(connectionId: string): boolean {
    this.holders.delete(connectionId);
    return this.current !== null && this.holders.size === 0;
  }

  /** The engine no longer has the model (unloaded, failed load, device loss). */
  dropped(): void {
    this.current = null;
    this.holders.clear();
  }
}

/**
 * Whose frames the engine's budget follows, several tabs reporting: a visible tab's report always
 * applies; a hidden tab's only while no other open tab's latest report is visible (a hidden page has
 * no frames to protect, so its report allows long submissions that the visible tab would drop frames on).
 */
export function framesApply(from: Connection, report: FrameReport, open: Iterable<Connection>): boolean {
  from.frames = report;
  if (!report.hidden) return true;
  for (const c of open) if (c !== from && !c.closed && c.frames && !c.frames.hidden) return false;
  return true;
}
