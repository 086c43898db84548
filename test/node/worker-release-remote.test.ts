/**
 * releaseRemote (workers/host-support.ts): the workers release the page's proxied callbacks when
 * they are done with them, and a callback may be released twice (the shared worker releases a
 * load's progress sink after the host did): the second release must be a no-op, not a throw that
 * fails the load.
 */
import * as Comlink from 'comlink';
import { describe, expect, it } from 'vitest';
import { releaseRemote } from '../../workers/host-support.ts';

describe('releaseRemote', () => {
  it('releases a comlink proxy once and ignores a second release; plain values are left alone', async () => {
    const { port1, port2 } = new MessageChannel();
    let calls = 0;
    Comlink.expose(() => ++calls, port1);
    const remote = Comlink.wrap<() => number>(port2);
    expect(await remote()).toBe(1);
    releaseRemote(remote);
    expect(() => remote()).toThrow(/released/); // really released
    expect(() => releaseRemote(remote)).not.toThrow();
    expect(() => releaseRemote(() => undefined)).not.toThrow();
    expect(() => releaseRemote(undefined)).not.toThrow();
    expect(() => releaseRemote(null)).not.toThrow();
    port1.close();
  });
});
