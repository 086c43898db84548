/**
 * The matmul shapes the kernel benchmark measures: every Linear of one decoder layer plus the
 * (tied) lm_head of the two models the runtime targets, as HF's [N = out, K = in].
 */
export type BenchModelId = 'smollm2-135m' | 'llama-3.2-1b';
export const BENCH_MODEL_IDS: readonly BenchModelId[] = ['smollm2-135m', 'llama-3.2-1b'];

export interface ModelDims {
  readonly id: BenchModelId;
  readonly name: string;
  readonly layers: number;
  readonly hidden: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly intermediate: number;
  readonly vocab: number;
}

/** From the models' config.json (HuggingFaceTB/SmolLM2-135M, meta-llama/Llama-3.2-1B). */
export const BENCH_MODELS: Record<BenchModelId, ModelDims> = {
  'smollm2-135m': { id: 'smollm2-135m', name: 'SmolLM2-135M', layers: 30, hidden: 576, heads: 9, kvHeads: 3, headDim: 64, intermediate: 1536, vocab: 49152 },
  'llama-3.2-1b': { id: 'llama-3.2-1b', name: 'Llama-3.2-1B', layers: 16, hidden: 2048, heads: 32, kvHeads: 8, headDim: 64, intermediate: 8192, vocab: 128256 },
};

/** One distinct weight shape and how many matmuls of that shape one decode step runs. */
export interface LayerShape {
  readonly layer: string; // 'q/o', 'k/v', 'gate/up', 'down', 'lm_head'
  readonly N: number;
  readonly K: number;
  readonly perStep: number;
}

/**
 * The distinct matmul shapes of a decode step. Projections that share a shape are measured once
 * (q and o are both hidden x hidden; k and v; gate and up) and counted twice per layer.
 */
export function decodeShapes(m: ModelDims): LayerShape[] {
  const qDim = m.heads * m.headDim;
  const kvDim = m.kvHeads * m.headDim;
  if (qDim !== m.hidden) throw new Error(`${m.name}: heads x headDim = ${qDim} != hidden ${m.hidden}; q and o would not share a shape`);
  return [
    { layer: 'q/o', N: m.hidden, K: m.hidden, perStep: 2 * m.layers },
    { layer: 'k/v', N: kvDim, K: m.hidden, perStep: 2 * m.layers },
    { layer: 'gate/up', N: m.intermediate, K: m.hidden, perStep: 2 * m.layers },
    { layer: 'down', N: m.hidden, K: m.intermediate, perStep: m.layers },
    { layer: 'lm_head', N: m.vocab, K: m.hidden, perStep: 1 },
  ];
}

/**
 * Layers measured as prefill GEMMs. lm_head is left out: prefill needs the logits of the last
 * token only, which is a GEMV. `quick` keeps one attention and one MLP shape.
 */
export function prefillLayers(quick: boolean): readonly string[] {
  return quick ? ['q/o', 'gate/up'] : ['q/o', 'k/v', 'gate/up', 'down'];
}
