/**
 * Typed errors across the worker boundary: serialisation keeps name, code, message and the
 * error's own data fields; revival gives a MaceRemoteError with them; and through a real comlink
 * channel (Node's MessageChannel) a thrown ModelFileError reaches the caller with its fields.
 */
import { MessageChannel } from 'node:worker_threads';
import * as Comlink from 'comlink';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidRequestError, PromptTooLongError } from '../../src/engine/errors.ts';
import { errorTransferHandler, installErrorTransfer, isWireError, MaceRemoteError, reviveError, serializeError } from '../../src/engine/errors-wire.ts';
import { NoModelError } from '../../src/engine/worker-api.ts';
import { DeviceLostError, LimitsTooSmallError, ShapeError } from '../../src/gpu/errors.ts';
import { ConfigError } from '../../src/model/config.ts';
import { ModelFileError } from '../../src/model/source.ts';

describe('serializeError / reviveError', () => {
  it('keeps name, code, message and own fields of a ModelFileError', () => {
    const e = new ModelFileError('config.json', 404, 'HTTP 404 Not Found', 'http://x/m/config.json');
    const w = serializeError(e);
    expect(w).toMatchObject({ name: 'ModelFileError', code: 'model-file', message: e.message, fields: { file: 'config.json', status: 404, url: 'http://x/m/config.json' } });
    expect(w.fields).not.toHaveProperty('code');
    expect(typeof w.stack).toBe('string');
    const r = reviveError(structuredClone(w));
    expect(r).toBeInstanceOf(MaceRemoteError);
    expect(r).toBeInstanceOf(Error);
    expect(r).toMatchObject({ name: 'ModelFileError', code: 'model-file', message: e.message, file: 'config.json', status: 404, url: 'http://x/m/config.json' });
    expect(r.remoteStack).toBe(e.stack);
    expect(String(r)).toBe(`ModelFileError: ${e.message}`);
  });

  it('round-trips the engine, GPU and config errors with their fields', () => {
    const cases: [Error, Record<string, unknown>][] = [
      [new PromptTooLongError(600, 512), { name: 'PromptTooLongError', code: 'prompt-too-long', promptTokens: 600, maxContext: 512 }],
      [new InvalidRequestError('temperature', 'must be in [0, 2]'), { name: 'InvalidRequestError', code: 'invalid-request', param: 'temperature' }],
      [new ShapeError('gemv', 'x', 'has 3 rows'), { name: 'ShapeError', code: 'bad-shape', kernel: 'gemv', argument: 'x' }],
      [new LimitsTooSmallError('maxBufferSize', 10, 5, 'the embedding'), { name: 'LimitsTooSmallError', code: 'limits-too-small', limit: 'maxBufferSize', needed: 10, available: 5 }],
      [new DeviceLostError('unknown', 'driver reset'), { name: 'DeviceLostError', code: 'device-lost', reason: 'unknown' }],
      [new ConfigError('config.json', 'hidden_size', 'must be positive'), { name: 'ConfigError', code: 'bad-config', file: 'config.json', field: 'hidden_size' }],
      [new NoModelError(), { name: 'NoModelError', code: 'no-model' }],
    ];
    for (const [e, want] of cases) {
      const r = reviveError(structuredClone(serializeError(e)));
      expect(r).toMatchObject({ ...want, message: e.message });
    }
  });

  it('copies only plain data fields, and gives untyped throws the code "internal"', () => {
    const e = Object.assign(new Error('boom'), { ids: [1, 2, 3], nested: [[1], ['a']], fn: () => 1, obj: { a: 1 }, big: new Array(5000).fill(0), nan: NaN, flag: false, none: null });
    const w = serializeError(e);
    expect(w.code).toBe('internal');
    expect(w.fields).toEqual({ ids: [1, 2, 3], nested: [[1], ['a']], nan: NaN, flag: false, none: null });
    expect(serializeError('plain string')).toEqual({ name: 'Error', code: 'internal', message: 'plain string', fields: {} });
    expect(serializeError(42).message).toBe('42');
    expect(serializeError(new TypeError('bad')).name).toBe('TypeError');
  });

  it('never lets a field shadow the envelope or the class members', () => {
    const r = reviveError({ name: 'X', code: 'x', message: 'm', fields: { message: 'evil', fields: 1, remoteStack: 'evil', code: 'evil', file: 'a' } });
    expect(r.message).toBe('m');
    expect(r.code).toBe('x');
    expect(r.remoteStack).toBeUndefined();
    expect(r.file).toBe('a');
  });

  it('turns malformed wire data into an internal MaceRemoteError instead of crashing', () => {
    expect(isWireError({ name: 'a' })).toBe(false);
    for (const bad of [null, 3, 'text', { name: 1, code: 'c', message: 'm', fields: {} }]) {
      const r = reviveError(bad);
      expect(r).toBeInstanceOf(MaceRemoteError);
      expect(r.code).toBe('internal');
      expect(r.message).toMatch(/malformed error from the worker/);
    }
  });

  it('the transfer handler recognises only comlink-thrown wrappers', () => {
    expect(errorTransferHandler.canHandle({ value: new Error('x') })).toBe(false);
    expect(errorTransferHandler.canHandle(new Error('x'))).toBe(false);
    expect(errorTransferHandler.canHandle({ value: 1, [Symbol('Comlink.thrown')]: 0 })).toBe(true);
    const [wire] = errorTransferHandler.serialize({ value: new PromptTooLongError(9, 8) });
    expect(() => errorTransferHandler.deserialize(structuredClone(wire))).toThrow(MaceRemoteError);
    const [raw] = errorTransferHandler.serialize({ value: { reason: 'not an Error' } });
    expect(() => errorTransferHandler.deserialize(raw)).toThrow(expect.objectContaining({ reason: 'not an Error' }));
  });
});

describe('through a comlink channel', () => {
  const ports: MessagePort[] = [];
  afterEach(() => {
    for (const p of ports.splice(0)) p.close();
  });

  function connect<T>(obj: T): Comlink.Remote<T> {
    const { port1, port2 } = new MessageChannel();
    // Node's worker_threads ports are EventTargets with postMessage: what comlink needs.
    ports.push(port1 as unknown as MessagePort, port2 as unknown as MessagePort);
    Comlink.expose(obj, port1 as unknown as Comlink.Endpoint);
    return Comlink.wrap<T>(port2 as unknown as Comlink.Endpoint);
  }

  it('a thrown typed error arrives as MaceRemoteError with code and fields', async () => {
    installErrorTransfer();
    const remote = connect({
      load(base: string): string {
        throw new ModelFileError('config.json', 404, 'HTTP 404', `${base}config.json`);
      },
      async complete(): Promise<string> {
        throw new PromptTooLongError(700, 512);
      },
      ok: (x: number) => x + 1,
    });
    const e1 = await remote.load('http://h/m/').catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(MaceRemoteError);
    expect(e1).toMatchObject({ name: 'ModelFileError', code: 'model-file', file: 'config.json', status: 404, url: 'http://h/m/config.json' });
    await expect(remote.complete()).rejects.toMatchObject({ name: 'PromptTooLongError', code: 'prompt-too-long', promptTokens: 700, maxContext: 512 });
    expect(await remote.ok(1)).toBe(2); // the channel still serves after errors
  });
});
