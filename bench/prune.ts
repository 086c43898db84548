/**
 * The KV-pruning experiment (`mace bench prune`): how much of a long generation's next-token choice
 * survives when its KV cache holds only a budget of positions, on the real stories260K weights, on
 * the CPU reference (exact, device-independent; the GPU kernels' sinks+window mask is tested equal to
 * the same reference in test/browser/attention.test.ts).
 *
 * For each prompt, the full-cache greedy generation of `tokens` tokens is the target. Each policy
 * then runs the same token sequence teacher-forced (every step sees the full-cache prefix, so one
 * early difference does not decide all later ones) with a cache of `budget` = fraction × the
 * sequence's final length positions:
 *   - 'sinks-window': the first `sinks` positions and the most recent ones (StreamingLLM);
 *   - 'h2o': per layer and KV head, half the budget for the most recent positions, half for the
 *     heavy hitters — the older positions with the most accumulated attention (src/kv/pruning.ts).
 * Both let each query attend to exactly `budget` positions (its own included): H2O keeps budget − 1
 * cached positions and evicts after the step's attention, as in its paper.
 * Reported per policy and budget: next-token agreement with the full cache (argmax equal) over the
 * positions where the cache is actually pruned (query position ≥ budget) and over all positions, the
 * mean and max |log p_pruned − log p_full| of the full cache's token there, and the KV memory kept at
 * the end (budget ÷ final length).
 */
import { defaultScale, UNBOUNDED_WINDOW } from '../src/kernels/attention.ts';
import { embeddingRef } from '../src/kernels/embedding.ts';
import { rmsNormRef } from '../src/kernels/rmsnorm.ts';
import { ropeInvFreq, ropeRef } from '../src/kernels/rope.ts';
import { siluGateRef } from '../src/kernels/silu.ts';
import { matmulRef } from '../src/kernels/weights.ts';
import { softmaxRef } from '../src/kernels/softmax.ts';
import { HeavyHitters } from '../src/kv/pruning.ts';
import { parseModelConfig, type ModelConfig } from '../src/model/config.ts';
import { hostWeightsFromSafetensors, ReferenceModel, type HostWeights } from '../src/model/reference.ts';
import { TextTokenizer } from '../src/model/tokenizer.ts';
import { STORY_PROMPTS } from './train.ts';

export type PrunePolicy = 'sinks-window' | 'h2o' | 'full';

export interface PruneBenchOptions {
  prompts: number[][];
  /** Tokens generated per prompt (the sequence is prompt + these). */
  tokens: number;
  /** KV budgets as fractions of the final sequence length. */
  fractions: number[];
  /** Attention sinks of the sinks-window policy (StreamingLLM uses 4). */
  sinks: number;
  onProgress?: (message: string) => void;
}

export interface PruneRow {
  policy: PrunePolicy;
  fraction: number;
  /** Positions the cache held (the budget; mean over the sequences). */
  budget: number;
  /** Agreement over positions where the cache was pruned (query position >= budget), and over all. */
  agreementPruned: number;
  agreementAll: number;
  meanAbsLogprobDiff: number;
  maxAbsLogprobDiff: number;
  /** Positions counted in agreementPruned. */
  prunedPositions: number;
  /** KV kept at the end: budget / final length. */
  kvKept: number;
}

export interface PruneBenchResult {
  model: string;
  sequences: number;
  tokens: number;
  rows: PruneRow[];
  markdown: string;
}

/** log-softmax value of `id` in a logits row. */
function logprob(row: Float32Array, id: number): number {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  return row[id] - max - Math.log(sum);
}

function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/**
 * One sequence decoded token by token on the CPU with H2O kept sets: each (layer, KV head) attends
 * to its kept positions (at most `budget`) plus the new one, then evicts back to `budget`. Returns
 * the logits [T, vocab] for teacher-forced `tokens`.
 */
export function heavyHitterLogits(config: ModelConfig, w: HostWeights, tokens: readonly number[], budget: number, recent: number): Float32Array {
  const c = config;
  const model = new ReferenceModel(c, w);
  const get = (name: string) => {
    const t = w.get(name);
    if (!t) throw new Error(`prune bench: tensor '${name}' is not loaded`);
    return t;
  };
  const invFreq = ropeInvFreq(c.headDim, c.ropeTheta, c.ropeScaling);
  const kvRow = c.nKvHeads * c.headDim;
  const T = tokens.length;
  const K = Array.from({ length: c.nLayers }, () => new Float32Array(T * kvRow)); // [T, nKvHeads, headDim] per layer
  const V = Array.from({ length: c.nLayers }, () => new Float32Array(T * kvRow));
  const hh = new HeavyHitters(c.nLayers * c.nKvHeads, budget, recent);
  const embed = get('model.embed_tokens.weight');
  const head = c.tieWordEmbeddings ? embed : get('lm_head.weight');
  const out = new Float32Array(T * c.vocabSize);
  const scale = defaultScale(c.headDim);
  const perGroup = c.nHeads / c.nKvHeads;
  for (let q = 0; q < T; q++) {
    const x = embeddingRef(Uint32Array.of(tokens[q]), embed, c.vocabSize, c.hiddenSize);
    hh.add(q);
    for (let l = 0; l < c.nLayers; l++) {
      const h = rmsNormRef(x, get(`model.layers.${l}.input_layernorm.weight`), 1, c.hiddenSize, c.rmsNormEps);
      const r = ropeRef(model.linear(l, 'q_proj', h, 1), model.linear(l, 'k_proj', h, 1), Uint32Array.of(q), invFreq, { T: 1, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headDim });
      K[l].set(r.k, q * kvRow);
      V[l].set(model.linear(l, 'v_proj', h, 1), q * kvRow);
      const attn = new Float32Array(c.nHeads * c.headDim);
      for (let hd = 0; hd < c.nHeads; hd++) {
        const g = Math.floor(hd / perGroup);
        const kept = hh.positions(l * c.nKvHeads + g);
        const scores = new Float32Array(kept.length);
        for (let i = 0; i < kept.length; i++) {
          let s = 0;
          for (let d = 0; d < c.headDim; d++) s += r.q[hd * c.headDim + d] * K[l][(kept[i] * c.nKvHeads + g) * c.headDim + d];
          scores[i] = s * scale;
        }
        const p = softmaxRef(scores, 1, kept.length);
        hh.accumulate(l * c.nKvHeads + g, p);
        for (let d = 0; d < c.headDim; d++) {
          let acc = 0;
          for (let i = 0; i < kept.length; i++) acc += p[i] * V[l][(kept[i] * c.nKvHeads + g) * c.headDim + d];
          attn[hd * c.headDim + d] = acc;
        }
      }
      const o = model.linear(l, 'o_proj', attn, 1);
      for (let i = 0; i < c.hiddenSize; i++) x[i] += o[i];
      const h2 = rmsNormRef(x, get(`model.layers.${l}.post_attention_layernorm.weight`), 1, c.hiddenSize, c.rmsNormEps);
      const down = model.linear(l, 'down_proj', siluGateRef(model.linear(l, 'gate_proj', h2, 1), model.linear(l, 'up_proj', h2, 1)), 1);
      for (let i = 0; i < c.hiddenSize; i++) x[i] += down[i];
    }
    hh.evict(q);
    const xn = rmsNormRef(x, get('model.norm.weight'), 1, c.hiddenSize, c.rmsNormEps);
    out.set(matmulRef(xn, head, 1, c.vocabSize, c.hiddenSize), q * c.vocabSize);
  }
  return out;
}

/** Teacher-forced logits [T, vocab] of `tokens` with the sinks + window mask (one pass: the mask is positional). */
export function sinksWindowLogits(config: ModelConfig, w: HostWeights, tokens: readonly number[], sinks: number, window: number): Float32Array {
  const model = new ReferenceModel(config, w);
  return model.forward(tokens, model.newCache(tokens.length), { sinks, window });
}

function fullLogits(config: ModelConfig, w: HostWeights, tokens: readonly number[]): Float32Array {
  const model = new ReferenceModel(config, w);
  return model.forward(tokens, model.newCache(tokens.length), { sinks: 0, window: UNBOUNDED_WINDOW });
}

interface Tally {
  agreePruned: number;
  pruned: number;
  agreeAll: number;
  all: number;
  diffSum: number;
  diffMax: number;
}

export function runPruneBench(config: ModelConfig, w: HostWeights, o: PruneBenchOptions): PruneBenchResult {
  const V = config.vocabSize;
  const ref = new ReferenceModel(config, w);
  const sequences = o.prompts.map((p) => [...p, ...ref.greedy(p, o.tokens)]);
  const rows: PruneRow[] = [];
  const fulls = sequences.map((s) => fullLogits(config, w, s.slice(0, -1)));
  for (const fraction of o.fractions) {
    for (const policy of ['sinks-window', 'h2o'] as const) {
      const t: Tally = { agreePruned: 0, pruned: 0, agreeAll: 0, all: 0, diffSum: 0, diffMax: 0 };
      let budgets = 0;
      let kept = 0;
      sequences.forEach((seq, si) => {
        const input = seq.slice(0, -1); // position q predicts seq[q + 1]
        const L = input.length;
        const budget = Math.max(2, Math.round(fraction * L));
        budgets += budget;
        kept += budget / L;
        const logits = policy === 'sinks-window' ? sinksWindowLogits(config, w, input, Math.min(o.sinks, budget - 1), budget - Math.min(o.sinks, budget - 1)) : heavyHitterLogits(config, w, input, budget - 1, Math.max(1, Math.floor((budget - 1) / 2)));
        const full = fulls[si];
        for (let q = o.prompts[si].length - 1; q < L; q++) {
          const row = logits.subarray(q * V, (q + 1) * V);
          const target = seq[q + 1];
          const agree = argmax(row) === argmax(full.subarray(q * V, (q + 1) * V)) ? 1 : 0;
          const diff = Math.abs(logprob(row, target) - logprob(full.subarray(q * V, (q + 1) * V), target));
          t.all++;
          t.agreeAll += agree;
          t.diffSum += diff;
          t.diffMax = Math.max(t.diffMax, diff);
          if (q >= budget) {
            t.pruned++;
            t.agreePruned += agree;
          }
        }
      });
      const row: PruneRow = {
        policy, fraction, budget: Math.round(budgets / sequences.length), agreementPruned: t.pruned ? t.agreePruned / t.pruned : 1, agreementAll: t.agreeAll / t.all,
        meanAbsLogprobDiff: t.diffSum / t.all, maxAbsLogprobDiff: t.diffMax, prunedPositions: t.pruned, kvKept: kept / sequences.length,
      };
      o.onProgress?.(`${policy} @ ${Math.round(100 * fraction)}% KV: agreement ${row.agreementPruned.toFixed(3)} where pruned (${row.prunedPositions} positions), ${row.agreementAll.toFixed(3)} overall; mean |Δ log p| ${row.meanAbsLogprobDiff.toFixed(4)}`);
      rows.push(row);
    }
  }
  const result = { model: 'stories260K', sequences: sequences.length, tokens: o.tokens, rows, markdown: '' };
  result.markdown = pruneToMarkdown(result, o);
  return result;
}

export function pruneToMarkdown(r: Omit<PruneBenchResult, 'markdown'>, o: Pick<PruneBenchOptions, 'sinks'>): string {
  return [
    `${r.model} (real weights, CPU reference), ${r.sequences} greedy generations of ${r.tokens} tokens, teacher-forced; sinks-window keeps ${o.sinks} sinks + the most recent positions, h2o keeps half the budget recent and half heavy hitters per layer and KV head.`,
    '',
    '| policy | KV kept | budget (positions) | agreement where pruned | agreement overall | mean abs Δ log p | max abs Δ log p | pruned positions |',
    '|---|---|---|---|---|---|---|---|',
    ...r.rows.map((x) => `| ${x.policy} | ${(100 * x.kvKept).toFixed(0)}% | ${x.budget} | ${x.agreementPruned.toFixed(3)} | ${x.agreementAll.toFixed(3)} | ${x.meanAbsLogprobDiff.toFixed(4)} | ${x.maxAbsLogprobDiff.toFixed(3)} | ${x.prunedPositions} |`),
    '',
  ].join('\n');
}


/** A model directory's files, read by the caller (the CLI reads them from disk). */
export interface PruneModelFiles {
  name: string;
  config: string;
  safetensors: Uint8Array;
  tokenizer: string;
  tokenizerConfig: string;
}

export interface PruneRunOptions extends Omit<PruneBenchOptions, 'prompts'> {
  /** How many of the story prompts (bench/train.ts STORY_PROMPTS) to generate from. */
  prompts: number;
}

/** The experiment on a model's files: the first `prompts` story prompts, encoded with BOS. */
export function runPruneOnModel(files: PruneModelFiles, o: PruneRunOptions): PruneBenchResult {
  const config = parseModelConfig(files.config, 'config.json');
  const w = hostWeightsFromSafetensors(config, files.safetensors);
  const tok = TextTokenizer.load(files.tokenizer, files.tokenizerConfig, config.eosTokenIds);
  if (!Number.isInteger(o.prompts) || o.prompts < 1 || o.prompts > STORY_PROMPTS.length) throw new RangeError(`bench prune: prompts = ${o.prompts} must be an integer in [1, ${STORY_PROMPTS.length}]`);
  const prompts = STORY_PROMPTS.slice(0, o.prompts).map((p) => tok.encode(p));
  const longest = Math.max(...prompts.map((p) => p.length)) + o.tokens;
  if (longest > config.maxPositionEmbeddings) throw new RangeError(`bench prune: prompt + ${o.tokens} tokens reach ${longest}, past max_position_embeddings ${config.maxPositionEmbeddings}`);
  for (const f of o.fractions) if (!(f > 0 && f <= 1)) throw new RangeError(`bench prune: fraction ${f} must be in (0, 1]`);
  const r = runPruneBench(config, w, { ...o, prompts });
  r.model = files.name;
  r.markdown = pruneToMarkdown(r, o);
  return r;
}
