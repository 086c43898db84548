/**
 * The shared engine's per-connection bookkeeping (src/engine/connections.ts), without a browser:
 * request ids namespaced per tab, closing a tab aborts only its requests, the heartbeat rule, the
 * model-sharing rule and whose frames apply.
 */
import { describe, expect, it } from 'vitest';
import { ConnectionRegistry, HEARTBEAT_TIMEOUT_MS, SharedModel, framesApply, loadKey } from '../../src/engine/connections.ts';
import { ConnectionClosedError, ModelInUseError, RequestIdError, type LoadRequest, type ModelInfo } from '../../src/engine/worker-api.ts';
import type { FrameReport } from '../../src/scheduler/frame-budget.ts';

function registry() {
  let now = 0;
  const aborted: string[] = [];
  const closed: string[] = [];
  const r = new ConnectionRegistry({ now: () => now, abortInEngine: (id) => aborted.push(id), onClosed: (c, why) => closed.push(`${c.id}:${why}`) });
  return { r, aborted, closed, advance: (ms: number) => (now += ms) };
}

const INFO: ModelInfo = { modelName: 'stories260K', source: '/models/stories260K/', format: 'f32', architecture: 'llama', vocabSize: 512, nLayers: 5, hiddenSize: 64, maxContext: 512, hasChatTemplate: false, gpu: 'test', loadMs: 10 };
const REQUEST: LoadRequest = { source: { kind: 'url', base: 'http://127.0.0.1/models/stories260K/' }, format: 'f32', engine: { kvBudgetBytes: 1 << 20, maxSeqs: 4 } };

describe('connections: per-tab request ids', () => {
  it('namespaces the same page id differently per connection, and refuses duplicates and bad ids', () => {
    const { r } = registry();
    const a = r.connect();
    const b = r.connect();
    expect(a.id).not.toBe(b.id);
    const ea = a.begin('req-1');
    const eb = b.begin('req-1'); // both tabs may pick req-1
    expect(ea).not.toBe(eb);
    expect(ea).toBe(`${a.id}/req-1`);
    expect(() => a.begin('req-1')).toThrow(RequestIdError);
    expect(() => a.begin('')).toThrow(RequestIdError);
    expect(() => a.begin(42)).toThrow(RequestIdError);
    expect(() => a.begin(undefined)).toThrow(RequestIdError);
    a.end('req-1');
    expect(a.begin('req-1')).toBe(ea); // free again once finished
  });

  it('a tab owns only its own requests', () => {
    const { r } = registry();
    const a = r.connect();
    const b = r.connect();
    a.begin('x');
    expect(a.owns('x')).toBe(true);
    expect(b.owns('x')).toBe(false);
    expect(a.owns(7)).toBe(false);
  });
});

describe('connections: closing a tab', () => {
  it('aborts exactly the closed tab in-flight requests, once, and counts them', () => {
    const { r, aborted, closed } = registry();
    const a = r.connect();
    const b = r.connect();
    a.begin('r1');
    a.begin('r2');
    b.begin('r1');
    a.end('r2'); // finished before the close: not aborted
    expect(r.close(a, 'goodbye')).toBe(1);
    expect(aborted).toEqual([`${a.id}/r1`]);
    expect(r.close(a, 'lock-released')).toBe(0); // idempotent: the first reason stands
    expect(a.closedBy).toBe('goodbye');
    expect(closed).toEqual([`${a.id}:goodbye`]);
    expect(r.connections()).toEqual([b]);
    const s = r.status(b, new SharedModel());
    expect(s).toMatchObject({ connectionId: b.id, connections: 1, abortedOnClose: 1, closed: { goodbye: 1, 'lock-released': 0, 'heartbeat-timeout': 0 } });
  });

  it('a closed connection refuses new requests with a typed error, and settles whenClosed', async () => {
    const { r } = registry();
    const a = r.connect();
    r.close(a, 'lock-released');
    await expect(a.whenClosed).resolves.toBeUndefined();
    expect(() => a.begin('late')).toThrow(ConnectionClosedError);
  });

  it('an engine that throws while aborting does not stop the close', () => {
    const r = new ConnectionRegistry({ now: () => 0, abortInEngine: () => { throw new Error('engine gone'); } });
    const a = r.connect();
    a.begin('r1');
    a.begin('r2');
    expect(r.close(a, 'goodbye')).toBe(2);
    expect(a.closed).toBe(true);
  });
});

describe('connections: heartbeat rule', () => {
  it('closes a heartbeat-only tab after HEARTBEAT_TIMEOUT_MS of silence, never a tab with a lifetime lock', () => {
    const { r, aborted, advance } = registry();
    const pinging = r.connect();
    const silent = r.connect();
    const locked = r.connect();
    locked.liveness = 'lock';
    silent.begin('long');
    locked.begin('long');
    for (let t = 0; t < HEARTBEAT_TIMEOUT_MS; t += 1000) {
      advance(1000);
      r.heard(pinging);
      expect(r.sweep()).toEqual([]);
    }
    advance(1);
    expect(r.sweep()).toEqual([silent]);
    expect(silent.closedBy).toBe('heartbeat-timeout');
    expect(aborted).toEqual([`${silent.id}/long`]);
    advance(10 * HEARTBEAT_TIMEOUT_MS);
    r.heard(pinging);
    r.sweep();
    expect(locked.closed).toBe(false);
    expect(pinging.closed).toBe(false);
  });
});

describe('connections: the shared model', () => {
  it('the same request reuses the loaded model; the key ignores key order and spells out defaults', () => {
    const m = new SharedModel();
    const key = loadKey(REQUEST);
    expect(m.decide('tab-1', key, false)).toEqual({ kind: 'load' });
    m.loadedBy('tab-1', key, INFO);
    const sameReordered: LoadRequest = { engine: { maxSeqs: 4, kvBudgetBytes: 1 << 20 }, format: 'f32', cache: true, source: { base: 'http://127.0.0.1/models/stories260K/', kind: 'url' } };
    expect(loadKey(sameReordered)).toBe(key);
    expect(m.decide('tab-2', loadKey(sameReordered), true)).toEqual({ kind: 'reuse', info: { ...INFO, reused: true } });
    expect(m.holderCount).toBe(2);
    expect(m.loads).toBe(1);
  });

  it('a different request while another tab holds the model is ModelInUseError; alone, a tab may replace it', () => {
    const m = new SharedModel();
    m.loadedBy('tab-1', loadKey(REQUEST), INFO);
    m.decide('tab-2', loadKey(REQUEST), true);
    const q4 = { ...REQUEST, format: 'q4' as const };
    expect(loadKey(q4)).not.toBe(loadKey(REQUEST));
    expect(() => m.decide('tab-3', loadKey(q4), true)).toThrow(ModelInUseError);
    try {
      m.decide('tab-1', loadKey(q4), true);
      expect.unreachable('tab-2 still holds the model');
    } catch (e) {
      expect(e).toBeInstanceOf(ModelInUseError);
      expect((e as ModelInUseError).holders).toBe(1);
      expect((e as ModelInUseError).code).toBe('model-in-use');
    }
    expect(m.release('tab-2')).toBe(false); // tab-1 still holds it
    expect(m.decide('tab-1', loadKey(q4), true)).toEqual({ kind: 'load' });
  });

  it('picked files are never shared, and malformed requests give no key (they fail in the host)', () => {
    const files = { source: { kind: 'files', files: [] }, format: 'f32' } as unknown as LoadRequest;
    expect(loadKey(files)).toBeNull();
    expect(loadKey(null as unknown as LoadRequest)).toBeNull();
    const m = new SharedModel();
    m.loadedBy('tab-1', null, INFO);
    expect(() => m.decide('tab-2', null, true)).toThrow(ModelInUseError);
  });

  it('the last holder letting go frees the model; a model the engine lost is loaded again', () => {
    const m = new SharedModel();
    m.loadedBy('tab-1', loadKey(REQUEST), INFO);
    m.decide('tab-2', loadKey(REQUEST), true);
    expect(m.release('tab-1')).toBe(false);
    expect(m.release('tab-2')).toBe(true);
    m.loadedBy('tab-1', loadKey(REQUEST), INFO);
    m.decide('tab-2', loadKey(REQUEST), true);
    // device lost: the engine has no model any more, whatever the holders
    expect(m.decide('tab-3', loadKey(REQUEST), false)).toEqual({ kind: 'load' });
    expect(m.holderCount).toBe(0);
  });

  it('a load finished for a tab that closed meanwhile leaves no holder', () => {
    const m = new SharedModel();
    m.loadedBy(null, loadKey(REQUEST), INFO);
    expect(m.holderCount).toBe(0);
    expect(m.release('tab-1')).toBe(true);
  });
});

describe('connections: frames', () => {
  const visible: FrameReport = { intervalMs: 16.7, frames: 15, dropped: 0, longFrames: 0, hidden: false };
  const hidden: FrameReport = { intervalMs: null, frames: 0, dropped: 0, longFrames: 0, hidden: true };

  it('a hidden tab report is ignored while another open tab is visible', () => {
    const { r } = registry();
    const a = r.connect();
    const b = r.connect();
    expect(framesApply(a, hidden, r.connections())).toBe(true); // nobody visible yet
    expect(framesApply(b, visible, r.connections())).toBe(true);
    expect(framesApply(a, hidden, r.connections())).toBe(false);
    r.close(b, 'goodbye');
    expect(framesApply(a, hidden, r.connections())).toBe(true); // the visible tab went
  });
});
