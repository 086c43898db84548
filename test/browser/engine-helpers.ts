/** Shared by the engine browser tests: stories260K as an EngineModel, loaded once per file. */
import type { EngineModel } from '../../src/engine/engine.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import { parseModelConfig } from '../../src/model/config.ts';
import { uploadModelWeights } from '../../src/model/gpu-weights.ts';
import { hostWeightsFromSafetensors, type HostWeights } from '../../src/model/reference.ts';
import { TextTokenizer } from '../../src/model/tokenizer.ts';

const base = '/models/stories260K/';

export interface Reference {
  prompt_ids: number[];
  steps: number;
  output_ids_after_bos: number[];
  text: string;
}

export interface Loaded {
  model: EngineModel;
  host: HostWeights;
  reference: Reference;
}

export async function loadStories(ctx: GpuContext): Promise<Loaded> {
  const get = (f: string) => fetch(base + f);
  const [cfg, st, tj, tc, ref] = await Promise.all([get('config.json').then((r) => r.text()), get('model.safetensors').then((r) => r.arrayBuffer()), get('tokenizer.json').then((r) => r.text()), get('tokenizer_config.json').then((r) => r.text()), get('reference.json').then((r) => r.json())]);
  const config = parseModelConfig(cfg);
  const host = hostWeightsFromSafetensors(config, new Uint8Array(st));
  const weights = await uploadModelWeights(ctx, config, host, 'f32');
  const tokenizer = TextTokenizer.load(tj, tc, config.eosTokenIds);
  return { model: { config, tokenizer, weights }, host, reference: ref as Reference };
}

/** 2 MiB of KV cache: 102 blocks of stories260K (20 KiB each), i.e. 1632 tokens over all sequences. */
export const SMALL_KV = 2 * 2 ** 20;
