import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../src/engine/errors.ts';
import { chatPromptIds } from '../../src/engine/openai.ts';
import { normalizeParams } from '../../src/engine/params.ts';
import { SeenTokens } from '../../src/engine/seen.ts';
import { StopMatcher } from '../../src/engine/stop.ts';
import { Channel } from '../../src/engine/channel.ts';
import { TextTokenizer } from '../../src/model/tokenizer.ts';

function runStops(stops: string[], deltas: string[]): { out: string; stopped: boolean } {
  const m = new StopMatcher(stops);
  let out = '';
  for (const d of deltas) {
    const r = m.push(d);
    out += r.emit;
    if (r.stopped) return { out, stopped: true };
  }
  return { out: out + m.flush(), stopped: false };
}

describe('StopMatcher', () => {
  it('stops before a stop string split over deltas, never emitting any of it', () => {
    const m = new StopMatcher(['END']);
    expect(m.push('abc E')).toEqual({ emit: 'abc ', stopped: false });
    expect(m.push('N')).toEqual({ emit: '', stopped: false });
    expect(m.push('Dxyz')).toEqual({ emit: '', stopped: true });
  });
  it('releases held text once it cannot be a stop string, and flushes at the end', () => {
    expect(runStops(['END'], ['E', 'Nx', 'y'])).toEqual({ out: 'ENxy', stopped: false });
    expect(runStops(['END'], ['abc', 'EN'])).toEqual({ out: 'abcEN', stopped: false });
  });
  it('takes the earliest of several stop strings', () => {
    expect(runStops(['lo w', 'hel'], ['say hello world'])).toEqual({ out: 'say ', stopped: true });
    expect(runStops(['\n'], ['one', ' two\nthree'])).toEqual({ out: 'one two', stopped: true });
  });
});

describe('SeenTokens', () => {
  it('keeps distinct ids in first-seen order with generated counts', () => {
    const s = new SeenTokens([5, 7, 5]);
    expect(s.addOutput(7)).toEqual({ index: 1, id: 7, count: 1, appended: false });
    expect(s.addOutput(9)).toEqual({ index: 2, id: 9, count: 1, appended: true });
    expect(s.addOutput(9)).toEqual({ index: 2, id: 9, count: 2, appended: false });
    expect([...s.pack()]).toEqual([5, 0, 7, 1, 9, 2]);
  });
});

describe('normalizeParams', () => {
  const limits = { candidates: 64, topLogprobs: 20 };
  it('applies OpenAI defaults and clamps top_k to the engine candidates', () => {
    const s = normalizeParams({ seed: -1, top_k: 500 }, null, limits);
    expect(s.sampling).toEqual({ temperature: 1, topP: 1, minP: 0, topK: 64 });
    expect(s.penalty).toEqual({ repetition: 1, presence: 0, frequency: 0 });
    expect(s.seed).toBe(0xffffffff);
    expect(s.maxTokens).toBeNull();
    expect(s.stop).toEqual([]);
  });
  it('names the bad field', () => {
    expect(() => normalizeParams({ temperature: 3 }, null, limits)).toThrow('request: temperature = 3 must be in [0, 2]');
    expect(() => normalizeParams({ repetition_penalty: 0 }, null, limits)).toThrow('repetition_penalty = 0 must be in (0, 100]');
    expect(() => normalizeParams({ max_tokens: 0 }, null, limits)).toThrow(InvalidRequestError);
    expect(() => normalizeParams({ stop: ['a', ''] }, null, limits)).toThrow('stop[1] must be a non-empty string');
    expect(() => normalizeParams({ n: 0 }, null, limits)).toThrow('n = 0 must be an integer in [1, 128]');
    expect(normalizeParams({ n: 3 }, null, limits).n).toBe(3);
    expect(() => normalizeParams({}, 21, limits)).toThrow('top_logprobs = 21');
  });
  it('gives unseeded requests different seeds', () => {
    expect(normalizeParams({}, null, limits).seed).not.toBe(normalizeParams({}, null, limits).seed);
  });
});

describe('chat prompts without a chat template', () => {
  const dir = new URL('../../public/models/stories260K/', import.meta.url);
  const read = (f: string) => readFileSync(new URL(f, dir), 'utf8');
  const tok = TextTokenizer.load(read('tokenizer.json'), read('tokenizer_config.json'), [2]);
  it('is BOS + the message contents joined with newlines (completion mode)', () => {
    const ids = chatPromptIds(tok, [
      { role: 'system', content: 'Once upon' },
      { role: 'user', content: [{ type: 'text', text: 'a time' }] },
    ]);
    expect(ids).toEqual(tok.encode('Once upon\na time'));
    expect(ids[0]).toBe(1);
    expect(() => chatPromptIds(tok, [])).toThrow('messages must be a non-empty array');
  });
});

describe('Channel', () => {
  it('delivers pushed items in order, then ends; breaking out cancels', async () => {
    let cancelled = 0;
    const c = new Channel<number>(() => cancelled++);
    c.push(1);
    setTimeout(() => {
      c.push(2);
      c.close();
    }, 1);
    const got: number[] = [];
    for await (const v of c) got.push(v);
    expect(got).toEqual([1, 2]);
    expect(cancelled).toBe(0);
    const d = new Channel<number>(() => cancelled++);
    d.push(1);
    for await (const _ of d) break;
    expect(cancelled).toBe(1);
  });
  it('rejects the reader with the failure', async () => {
    const c = new Channel<number>();
    setTimeout(() => c.fail(new Error('boom')), 1);
    await expect((async () => { for await (const _ of c); })()).rejects.toThrow('boom');
  });
});
