/**
 * Hugging Face config.json -> the ModelConfig every other layer reads. Only Llama-family decoders
 * are accepted (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM); anything else, or a field
 * of the wrong type, is refused with a typed error that names the file and the field.
 */
import { ropeInvFreq, UnsupportedRopeScalingError, type RopeScaling } from '../kernels/rope.ts';
export type Architecture = 'LlamaForCausalLM' | 'MistralForCausalLM' | 'Qwen2ForCausalLM';
export const SUPPORTED_ARCHITECTURES: readonly Architecture[] = ['LlamaForCausalLM', 'MistralForCausalLM', 'Qwen2ForCausalLM'];

export type { RopeScaling };

export interface ModelConfig {
  architecture: Architecture;
  hiddenSize: number;
  intermediateSize: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry a bias (Qwen2 always; Llama when attention_bias is true). */
  qkvBias: boolean;
  /** Mistral-style sliding window (tokens), or null for full attention. */
  slidingWindow: number | null;
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** pad_token_id when config.json gives one (checked against the vocabulary at load; never used to compute). */
  padTokenId?: number;
  /**
   * Names the model is known by: config.json's _name_or_path and, from the loader, the source's
   * name (Hub repository, directory, URL folder). A PEFT adapter's base_model_name_or_path is
   * checked against them; absent or empty: unknown, nothing to check.
   */
  names?: string[];
}

/** config.json model_type of each architecture: the two must agree. */
export const MODEL_TYPES: Readonly<Record<Architecture, string>> = { LlamaForCausalLM: 'llama', MistralForCausalLM: 'mistral', Qwen2ForCausalLM: 'qwen2' };

/** Largest max_position_embeddings accepted: positions (RoPE angles, lengths) are exact in f32 up to 2^24. */
export const MAX_POSITION_EMBEDDINGS = 2 ** 24;

/** config.json is malformed or describes something we cannot run; names the file and field. */
export class ConfigError extends Error {
  readonly code = 'bad-config';
  constructor(
    readonly file: string,
    readonly field: string,
    detail: string,
  ) {
    super(`${file}: ${field} ${detail}`);
    this.name = 'ConfigError';
  }
}

export class UnsupportedArchitectureError extends Error {
  readonly code = 'unsupported-architecture';
  constructor(
    readonly architecture: string,
    readonly file = 'config.json',
  ) {
    super(`${file}: architecture '${architecture}' is not supported (supported: ${SUPPORTED_ARCHITECTURES.join(', ')})`);
    this.name = 'UnsupportedArchitectureError';
  }
}

type Json = Record<string, unknown>;

function reader(raw: Json, file: string) {
  const int = (field: string, fallback?: number): number => {
    const v = raw[field] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new ConfigError(file, field, `must be a positive integer, got ${JSON.stringify(raw[field])}`);
    return v;
  };
  const num = (field: string, fallback?: number): number => {
    const v = raw[field] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new ConfigError(file, field, `must be a positive number, got ${JSON.stringify(raw[field])}`);
    return v;
  };
  const bool = (field: string, fallback: boolean): boolean => {
    const v = raw[field] ?? fallback;
    if (typeof v !== 'boolean') throw new ConfigError(file, field, `must be a boolean, got ${JSON.stringify(v)}`);
    return v;
  };
  return { int, num, bool };
}

/**
 * rope_scaling is kept in HF's own form and validated by the RoPE family itself (ropeInvFreq is the
 * one definition of what each rope_type means); its typed error becomes a ConfigError naming the field.
 */
function parseRopeScaling(v: unknown, file: string, headDim: number, theta: number): RopeScaling | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'object' || Array.isArray(v)) throw new ConfigError(file, 'rope_scaling', `must be an object or null, got ${JSON.stringify(v)}`);
  const rs = v as RopeScaling;
  try {
    ropeInvFreq(headDim, theta, rs);
  } catch (e) {
    if (e instanceof UnsupportedRopeScalingError) throw new ConfigError(file, e.field, `= ${JSON.stringify(e.value)}: ${e.message.slice(e.message.indexOf(': ') + 2)}`);
    throw e;
  }
  const type = rs.rope_type ?? rs.type ?? 'default';
  return type === 'default' ? null : { ...rs };
}

function tokenIds(v: unknown, file: string, field: string): number[] {
  if (v === null || v === undefined) return [];
  const list = Array.isArray(v) ? v : [v];
  for (const id of list) if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) throw new ConfigError(file, field, `must be a token id or a list of them, got ${JSON.stringify(v)}`);
  return list as number[];
}

/** Parse config.json text (or an already-parsed object). */
export function parseModelConfig(input: string | Json, file = 'config.json'): ModelConfig {
  let raw: Json;
  if (typeof input === 'string') {
    try {
      raw = JSON.parse(input) as Json;
    } catch (e) {
      throw new ConfigError(file, '(file)', `is not valid JSON: ${(e as Error).message}`);
    }
  } else raw = input;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(file, '(file)', 'must hold a JSON object');

  const archs = raw.architectures;
  if (!Array.isArray(archs) || archs.length === 0 || typeof archs[0] !== 'string') throw new ConfigError(file, 'architectures', `must be a non-empty list of names, got ${JSON.stringify(archs)}`);
  const architecture = archs[0] as string;
  if (!SUPPORTED_ARCHITECTURES.includes(architecture as Architecture)) throw new UnsupportedArchitectureError(architecture, file);
  const modelType = raw.model_type;
  const wantType = MODEL_TYPES[architecture as Architecture];
  if (modelType !== undefined && modelType !== null && modelType !== wantType) {
    throw new ConfigError(file, 'model_type', `is ${JSON.stringify(modelType)}, but architectures[0] is '${architecture}', whose model_type is '${wantType}'; the two must agree (a config with an unknown model_type is refused, not guessed)`);
  }

  const { int, num, bool } = reader(raw, file);
  const act = raw.hidden_act ?? 'silu';
  if (act !== 'silu') throw new ConfigError(file, 'hidden_act', `'${String(act)}' is not supported (only silu)`);

  const hiddenSize = int('hidden_size');
  const nHeads = int('num_attention_heads');
  const nKvHeads = int('num_key_value_heads', nHeads);
  if (nHeads % nKvHeads !== 0) throw new ConfigError(file, 'num_key_value_heads', `(${nKvHeads}) must divide num_attention_heads (${nHeads})`);
  const headDim = raw.head_dim == null ? hiddenSize / nHeads : int('head_dim');
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) throw new ConfigError(file, 'head_dim', `must be an even integer, got ${headDim} (hidden_size ${hiddenSize} / num_attention_heads ${nHeads})`);
  const ropeTheta = num('rope_theta', 10000);
  const maxPositionEmbeddings = int('max_position_embeddings', 2048);
  if (maxPositionEmbeddings > MAX_POSITION_EMBEDDINGS) throw new ConfigError(file, 'max_position_embeddings', `= ${maxPositionEmbeddings} is above the largest supported context, ${MAX_POSITION_EMBEDDINGS} (2^24: positions are exact in f32 only up to there)`);
  const pad = tokenIds(raw.pad_token_id, file, 'pad_token_id');
  const nameOrPath = raw._name_or_path;

  const window = raw.sliding_window;
  const useWindow = architecture === 'MistralForCausalLM' || raw.use_sliding_window === true;
  const slidingWindow = useWindow && typeof window === 'number' && window > 0 ? window : null;

  return {
    architecture: architecture as Architecture,
    hiddenSize,
    intermediateSize: int('intermediate_size'),
    nLayers: int('num_hidden_layers'),
    nHeads,
    nKvHeads,
    headDim,
    vocabSize: int('vocab_size'),
    maxPositionEmbeddings,
    rmsNormEps: num('rms_norm_eps', 1e-6),
    ropeTheta,
    ropeScaling: parseRopeScaling(raw.rope_scaling, file, headDim, ropeTheta),
    tieWordEmbeddings: bool('tie_word_embeddings', false),
    qkvBias: architecture === 'Qwen2ForCausalLM' ? true : bool('attention_bias', false),
    slidingWindow,
    bosTokenId: tokenIds(raw.bos_token_id, file, 'bos_token_id')[0] ?? null,
    eosTokenIds: tokenIds(raw.eos_token_id, file, 'eos_token_id'),
    ...(pad.length > 0 ? { padTokenId: pad[0] } : {}),
    ...(typeof nameOrPath === 'string' && nameOrPath.trim() !== '' ? { names: [nameOrPath] } : {}),
  };
}
