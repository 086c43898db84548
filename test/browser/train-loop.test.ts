/**
 * The training loop on the real stories260K (f32, rank-8 LoRA on every module, SwiftShader): a
 * short run over three tokenized story pairs with a held-out pair. Checks: the reference log-probs
 * are computed once per pair (the trainer's referenceLogprobs is counted), the held-out metrics
 * before are TRL's at B = 0 (all ties, loss ln 2), evaluation changes nothing on the GPU (the
 * adapter's params and moments bit for bit), and training lowers the loss on the training pairs.
 */
import { describe, expect, it } from 'vitest';
import { readBuffer } from '../../src/gpu/buffers.ts';
import { createAdapter } from '../../src/learn/adapter.ts';
import type { TokenPair } from '../../src/learn/reference.ts';
import { evaluateDpo, trainDpo, type NamedPair } from '../../src/learn/train-loop.ts';
import { DpoTrainer } from '../../src/learn/trainer.ts';
import { LINEAR_MODULES } from '../../src/model/tensors.ts';
import { tokenizePair } from '../../bench/train-data.ts';
import { loadStories } from './engine-helpers.ts';
import { testGpu } from './gpu.ts';

const TEXT = [
  { prompt: 'Once upon a time', chosen: ' there was a girl who liked to play.', rejected: ' there was a dog.' },
  { prompt: 'Tom went to the park', chosen: ' and played with his ball.', rejected: ' and sat down.' },
  { prompt: 'The little bird', chosen: ' wanted to play in the sun.', rejected: ' was sad.' },
];
const HELD = { prompt: 'Sam and his mom', chosen: ' liked to play with toys.', rejected: ' went home.' };

describe('trainDpo on stories260K', () => {
  it('caches references once, evaluates without updating, and lowers the training loss', async () => {
    const ctx = await testGpu();
    const { model } = await loadStories(ctx);
    const tok = (p: typeof HELD, i: number) => tokenizePair(model.tokenizer, p, `text[${i}]`, { eos: 2 });
    const pairs: NamedPair[] = TEXT.map(tok);
    const held = [tok(HELD, 9)];
    // The joint encoding keeps the prompt's ids as the prefix, and the response follows it.
    expect(pairs[0].prompt).toEqual(model.tokenizer.encode(TEXT[0].prompt));
    expect(model.tokenizer.decode([...pairs[0].prompt, ...pairs[0].chosen])).toBe(TEXT[0].prompt + TEXT[0].chosen);

    const adapter = await createAdapter(ctx, model.config, { r: 8, loraAlpha: 16, useRslora: false, targetModules: [...LINEAR_MODULES], baseModelNameOrPath: 'stories260K' }, 5);
    const trainer = new DpoTrainer(ctx, model.weights, adapter, { maxTokens: 32, beta: 0.1, schedule: { kind: 'constant', baseLr: 3e-3, warmupSteps: 0, totalSteps: 9 } });
    const refCalls: TokenPair[] = [];
    const counting = Object.assign(Object.create(trainer) as DpoTrainer, {
      referenceLogprobs: (p: TokenPair) => (refCalls.push(p), trainer.referenceLogprobs(p)),
    });
    ctx.device.pushErrorScope('validation');
    const r = await trainDpo({ trainer: counting, pairs, evalPairs: held, epochs: 3, seed: 2 });
    expect(refCalls).toHaveLength(4); // 3 train + 1 held-out, once each over 9 steps and 2 evaluations
    expect(r.steps).toHaveLength(9);
    expect(r.nonFiniteSteps).toBe(0);
    expect(r.before).toMatchObject({ pairs: 1, ties: 1, accuracy_ties_half: 0.5, 'rewards/accuracies': 0, 'rewards/margins': 0 });
    expect(r.before!.loss).toBeCloseTo(Math.LN2, 6);
    for (const m of r.steps) console.log(`[train-loop] step ${m.step} loss ${m.loss.toFixed(4)} margin ${m['rewards/margins'].toFixed(4)} grad_norm ${m.grad_norm.toFixed(3)}`);
    console.log(`[train-loop] held-out after: loss ${r.after!.loss.toFixed(4)} margin ${r.after!['rewards/margins'].toFixed(4)}; ${(r.trainMs / r.steps.length).toFixed(0)} ms/step`);

    // Evaluation is forward only: params and AdamW moments unchanged, same metrics twice.
    const state = () => Promise.all([adapter.params, adapter.m, adapter.v].map(async (b) => new Uint8Array(await readBuffer(ctx, b))));
    const s0 = await state();
    const trainEval = await evaluateDpo(trainer, pairs, r.refCache);
    expect(await evaluateDpo(trainer, pairs, r.refCache)).toEqual(trainEval);
    expect(await state()).toEqual(s0);
    expect(refCalls).toHaveLength(4);
    // Training moved the policy toward the chosen answers on the pairs it saw.
    expect(trainEval.loss).toBeLessThan(Math.LN2 - 0.05);
    expect(trainEval['rewards/accuracies']).toBe(1);
    expect((await ctx.device.popErrorScope())?.message).toBeUndefined();
    trainer.destroy();
    adapter.destroy();
    model.weights.destroy();
  });
});
