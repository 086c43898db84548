import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseModelConfig } from '../../src/model/config.ts';
import { hostWeightsFromSafetensors, ReferenceModel } from '../../src/model/reference.ts';

const dir = new URL('../../public/models/stories260K/', import.meta.url);
const config = parseModelConfig(readFileSync(new URL('config.json', dir), 'utf8'));
const weights = hostWeightsFromSafetensors(config, new Uint8Array(readFileSync(new URL('model.safetensors', dir))));
const reference = JSON.parse(readFileSync(new URL('reference.json', dir), 'utf8')) as { prompt_ids: number[]; steps: number; output_ids_after_bos: number[] };

describe('CPU reference forward of stories260K (the golden test)', () => {
  const model = new ReferenceModel(config, weights);

  it('puts "Once" (403) on top after BOS with logit about 17.02', () => {
    const logits = model.forward([1], model.newCache(8));
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
    expect(best).toBe(403);
    expect(logits[403]).toBeCloseTo(17.02, 1);
  });

  it('reproduces the published 200-step greedy output exactly', () => {
    const ids = model.greedy(reference.prompt_ids, reference.steps);
    expect(ids).toEqual(reference.output_ids_after_bos);
  });

  it('gives the same logits for a prefill as for token-by-token decoding', () => {
    const prompt = [1, 403, 407, 261, 378];
    const all = model.forward(prompt, model.newCache(8));
    const cache = model.newCache(8);
    let last: Float32Array = new Float32Array(0);
    for (const t of prompt) last = model.forward([t], cache);
    const V = config.vocabSize;
    const lastRow = all.subarray(4 * V, 5 * V);
    let maxDiff = 0;
    for (let i = 0; i < V; i++) maxDiff = Math.max(maxDiff, Math.abs(lastRow[i] - last[i]));
    expect(maxDiff).toBeLessThan(1e-4);
  });
});
