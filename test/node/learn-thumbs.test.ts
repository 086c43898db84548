/**
 * Unpaired thumbs for KTO: parseThumbsFile (TRL KTO JSONL standard and conversational, the KTO
 * demo format kept as single examples, typed errors naming file, line and field), their
 * tokenization, makeStoryThumbs (each sample labelled alone by the rule, the same held-out split as
 * the pairs), `mace train` option parsing for --thumbs, and trainKtoOn end to end on the CPU runtime
 * with the bundled stories260K and a small thumbs file.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseArgs, UsageError } from '../../bin/args.mjs';
import { cpuTrainBackend } from '../../bench/train-cpu.ts';
import { trainOn, type KtoTrainResult } from '../../bench/train.ts';
import { parsePreferenceFile, parseThumbsFile, PreferenceFormatError } from '../../src/learn/formats.ts';
import { tokenizeThumb } from '../../src/learn/pair-tokens.ts';
import { makeStoryThumbs, makeStoryPairs, splitPrompts } from '../../src/learn/stories-prefs.ts';
import { loadModelFiles } from '../../src/model/loader.ts';
import { sourceFromMemory } from '../../src/model/source.ts';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/preferences/${name}`, import.meta.url), 'utf8');
const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

describe('parseThumbsFile', () => {
  it('TRL KTO standard JSONL: one example per line, labels kept, stats of prompts with both labels', () => {
    const r = parseThumbsFile('t.jsonl', jsonl([
      { prompt: 'Once upon a time', completion: ' a girl played.', label: true },
      { prompt: 'Once upon a time', completion: ' a dog sat.', label: false },
      { prompt: 'Tom went', completion: ' home.', label: false },
    ]));
    expect(r.format).toBe('trl-kto');
    expect(r.examples.map((e) => [e.prompt, e.completion, e.label, e.record])).toEqual([
      ['Once upon a time', ' a girl played.', true, 'line 1'],
      ['Once upon a time', ' a dog sat.', false, 'line 2'],
      ['Tom went', ' home.', false, 'line 3'],
    ]);
    expect(r.stats).toEqual({ examples: 3, liked: 1, disliked: 2, contexts: 2, contextsWithBoth: 1 });
  });

  it('TRL KTO conversational: prompt messages, completion the one assistant message', () => {
    const r = parseThumbsFile('c.jsonl', jsonl([{ prompt: [{ role: 'user', content: 'Hi' }], completion: [{ role: 'assistant', content: 'Hello!' }], label: true }]));
    expect(r.examples[0]).toMatchObject({ messages: [{ role: 'user', content: 'Hi' }], completion: 'Hello!', label: true });
  });

  it('the KTO demo format stays unpaired here (the pair path is unchanged for DPO)', () => {
    const r = parseThumbsFile('kto_en_demo.excerpt.json', fixture('kto_en_demo.excerpt.json'));
    expect(r.format).toBe('kto');
    expect(r.examples).toHaveLength(4);
    expect(r.stats).toEqual({ examples: 4, liked: 2, disliked: 2, contexts: 3, contextsWithBoth: 1 });
    expect(r.examples[0].record).toBe('[0]');
    expect(parsePreferenceFile('kto_en_demo.excerpt.json', fixture('kto_en_demo.excerpt.json')).pairs).toHaveLength(1);
  });

  it('bad records are typed errors naming file, line and field (skipped, or thrown with strict)', () => {
    const text = jsonl([
      { prompt: 'a', completion: 'b', label: true },
      { prompt: 'a', completion: 'b', label: 'yes' },
      { prompt: 'a', label: false, completion: '' },
      { completion: 'b', label: false },
      { prompt: [{ role: 'user', content: 'x' }], completion: [{ role: 'user', content: 'y' }], label: true },
    ]) + 'not json\n';
    const r = parseThumbsFile('bad.jsonl', text);
    expect(r.examples).toHaveLength(1);
    expect(r.skipped.map((e) => e.message)).toEqual([
      expect.stringMatching(/^bad\.jsonl line 6: \(line\) is not valid JSON/),
      'bad.jsonl line 2: label must be true or false, got "yes"',
      'bad.jsonl line 3: completion is empty',
      'bad.jsonl line 4: prompt is missing',
      "bad.jsonl line 5: completion[0].role is 'user'; the last message must be the assistant's answer",
    ]);
    expect(r.skipped.every((e) => e instanceof PreferenceFormatError)).toBe(true);
    expect(() => parseThumbsFile('bad.jsonl', text, { strict: true })).toThrow(PreferenceFormatError);
    expect(() => parseThumbsFile('p.jsonl', jsonl([{ prompt: 'a', chosen: 'b', rejected: 'c' }]))).toThrow(/not recognised as unpaired thumbs/);
    expect(() => parseThumbsFile('e.jsonl', '')).toThrow(/e\.jsonl \(file\): \(content\) is empty/);
  });
});

const modelDir = fileURLToPath(new URL('../../public/models/stories260K/', import.meta.url));
const dirSource = (dir: string) => sourceFromMemory(Object.fromEntries(readdirSync(dir).filter((f) => f.endsWith('.json') || f.endsWith('.safetensors')).map((f) => [f, new Uint8Array(readFileSync(join(dir, f)))])));

describe('thumbs → tokens, stories thumbs', () => {
  it('tokenizeThumb: the prompt with BOS, the completion as it follows the prompt, EOS when asked', async () => {
    const { tokenizer } = await loadModelFiles(dirSource(modelDir));
    const t = tokenizeThumb(tokenizer, { prompt: 'Once upon a time', completion: ' there was a cat.', label: true }, { eos: 2 });
    expect(t.prompt).toEqual(tokenizer.encode('Once upon a time'));
    expect([...t.prompt, ...t.completion.slice(0, -1)]).toEqual(tokenizer.encode('Once upon a time there was a cat.'));
    expect(t.completion.at(-1)).toBe(2);
    expect(t.label).toBe(true);
  });

  it('makeStoryThumbs labels every sample alone by the rule, on the same samples and split as makeStoryPairs', async () => {
    const texts = ['they played ball', 'a dog sat', 'she likes to play', 'the sun', 'rain fell'];
    const complete = async (_p: string, seed: number) => texts[seed % texts.length];
    const prompts = ['A', 'B', 'C', 'D'];
    const o = { complete, prompts, samplesPerPrompt: 5, seed: 10 };
    const t = await makeStoryThumbs(o);
    const p = await makeStoryPairs(o);
    expect(t.heldOutPrompts).toEqual(p.heldOutPrompts);
    expect(new Set(t.heldOutPrompts)).toEqual(splitPrompts(prompts, 0.25));
    expect(t.totals).toEqual(p.totals);
    expect([...t.train, ...t.heldOut]).toHaveLength(20);
    for (const e of [...t.train, ...t.heldOut]) expect(e.label).toBe(/\bplay(s|ed|ing)?\b/.test(e.completion));
    expect(t.train.every((e) => !t.heldOutPrompts.includes(e.prompt))).toBe(true);
    expect(t.perPrompt[0].pairs).toBe(t.perPrompt[0].preferred * t.perPrompt[0].dispreferred);
  });
});

describe('mace train --thumbs options', () => {
  it('parses --thumbs / --eval-thumbs / --thumbs-from-stories / KTO weights and refuses contradictions', () => {
    expect(parseArgs(['train', '--model', 'm', '--thumbs', 't.jsonl', '--eval-thumbs', 'e.jsonl', '--desirable-weight', '1.5', '--undesirable-weight', '0.5', '--eval-every', '20', '--cpu'])).toMatchObject({
      command: 'train', thumbs: 't.jsonl', evalThumbs: 'e.jsonl', desirableWeight: 1.5, undesirableWeight: 0.5, evalEvery: 20, thumbsFromStories: false, stories: false, runtime: 'cpu',
    });
    expect(parseArgs(['train', '--model', 'm', '--stories', '--thumbs-from-stories', '--save-thumbs', 'd'])).toMatchObject({ stories: true, thumbsFromStories: true, saveThumbs: 'd' });
    expect(() => parseArgs(['train', '--model', 'm', '--thumbs', 't', '--pairs', 'p'])).toThrow(UsageError);
    expect(() => parseArgs(['train', '--model', 'm', '--thumbs', 't', '--stories'])).toThrow('exactly one of');
    expect(() => parseArgs(['train', '--model', 'm', '--thumbs-from-stories'])).toThrow('exactly one of');
    expect(() => parseArgs(['train', '--model', 'm', '--pairs', 'p', '--thumbs-from-stories'])).toThrow('--thumbs-from-stories only applies with --stories');
    expect(() => parseArgs(['train', '--model', 'm', '--thumbs', 't', '--eval', 'e'])).toThrow('--eval-thumbs, not --eval');
    expect(() => parseArgs(['train', '--model', 'm', '--pairs', 'p', '--eval-thumbs', 'e'])).toThrow('--eval-thumbs only applies with --thumbs');
    expect(parseArgs(['train', '--model', 'm', '--thumbs', 't', '--no-eos'])).toMatchObject({ noEos: true });
    expect(() => parseArgs(['train', '--model', 'm', '--pairs', 'p', '--no-eos'])).toThrow('--no-eos only applies with --thumbs');
    expect(() => parseArgs(['train', '--model', 'm', '--thumbs', 't', '--save-thumbs', 'd'])).toThrow('--save-thumbs only applies with --thumbs-from-stories');
    expect(() => parseArgs(['train', '--model', 'm', '--stories', '--thumbs-from-stories', '--rejected-per-chosen', '2'])).toThrow('nothing is paired');
    expect(() => parseArgs(['train', '--model', 'm', '--thumbs', 't', '--desirable-weight', 'x'])).toThrow('--desirable-weight must be a number');
  });
});

describe('trainKtoOn on the CPU runtime (stories260K)', () => {
  it('trains a small thumbs file with KTO: held-out reward accuracy from 0.5 (ties) to 1 on the prompts with both labels', async () => {
    const backend = await cpuTrainBackend(dirSource(modelDir));
    const rows = [
      { prompt: 'Once upon a time', completion: ' there was a girl who liked to play.', label: true },
      { prompt: 'Once upon a time', completion: ' there was a dog.', label: false },
      { prompt: 'Tom went to the park', completion: ' and played with his ball.', label: true },
      { prompt: 'Tom went to the park', completion: ' and sat down.', label: false },
    ];
    const file = { file: 'thumbs.jsonl', content: jsonl(rows) };
    const r = (await trainOn(backend, { dtype: 'f32', thumbs: file, evalThumbs: file, epochs: 6, lr: 5e-3, beta: 0.5, rank: 4, evalEvery: 12 })) as KtoTrainResult;
    expect(r.method).toBe('kto');
    expect(r.examples).toMatchObject({ train: 4, eval: 4 });
    expect(r.examples.trainStats).toEqual({ examples: 4, liked: 2, disliked: 2, contexts: 2, contextsWithBoth: 2 });
    expect(r.steps).toHaveLength(24);
    expect(r.before!.reward_accuracy).toBe(0.5);
    expect(r.before!.reward_ties).toBe(2);
    expect(r.after!.reward_accuracy).toBe(1);
    expect(r.curve.map((c) => c.step)).toEqual([0, 12, 24]);
    await expect(trainOn(backend, { dtype: 'f32', thumbs: { file: 'one.jsonl', content: jsonl(rows.slice(0, 1)) } })).rejects.toThrow(/KTO needs at least 2/);
  }, 60_000);
});
