/**
 * loadModel: a Hugging Face model folder (config, tokenizer, safetensors, sharded or not) from any
 * ModelSource onto the GPU in the chosen storage format.
 *
 * Order of work, so that bad input costs nothing: the small JSON files are parsed and checked,
 * on their own and against each other (vocabulary sizes, special ids; the chat template rendered
 * once on a probe conversation); then every safetensors header (each shard's) is read and the
 * tensor list is checked against the config (layer count, vocab rows, names, shapes, dtypes:
 * checkCheckpoint) before a single weight byte reaches the GPU; then each file is streamed once
 * more and its tensors are uploaded as their bytes arrive, each piece scanned for NaN/Inf first
 * (FiniteScan). docs/ARCHITECTURE.md lists every check ("What is validated at load").
 *
 * Memory (the streaming is in upload.ts): the CPU holds one network chunk, a 1 MiB
 * write-combining buffer and the JSON headers, never a tensor. Bytes go to the GPU raw
 * (writeBuffer into a staging buffer), F16/BF16 are widened there by the convert kernel, and
 * buildWeight converts the f32 rows to the storage format in batches of at most `maxBatchBytes`
 * (16 MiB) of f32, one batch in flight, so the GPU's transient staging is bounded too.
 *
 * Failure: every GPU buffer made during the load is tracked (a device wrapper records
 * createBuffer); any error, or an abort, destroys all of them before the typed error is thrown.
 */
import type { GpuContext } from '../gpu/device.ts';
import type { GpuWeight, WeightFormat } from '../kernels/weights.ts';
import { parseModelConfig, type ModelConfig } from './config.ts';
import { assembleModelWeights, type GpuModelWeights } from './gpu-weights.ts';
import { headerLength, parseHeader, readSafetensors, SafetensorsError, type SafetensorsHeader, type TensorInfo, type TensorSink } from './safetensors.ts';
import { readText, type ModelSource } from './source.ts';
import { CheckpointError, checkCheckpoint, type ExpectedTensor } from './tensors.ts';
import { TextTokenizer } from './tokenizer.ts';
import { COMBINE_BYTES, matrixUpload, Staging, trackingContext, vectorUpload, type TensorUpload, type UploadState } from './upload.ts';
import { checkVocabulary, FiniteScan, NonFiniteWeightError, type FloatDtype, type SpecialTokenId } from './validate.ts';

export const INDEX_FILE = 'model.safetensors.index.json';
export const SINGLE_FILE = 'model.safetensors';
/** transformers' separate chat template file; when present it replaces tokenizer_config.json's chat_template. */
export const CHAT_TEMPLATE_FILE = 'chat_template.jinja';

/** A model file other than config.json / tokenizer.json / safetensors is malformed (index, generation config). */
export class ModelFormatError extends Error {
  readonly code = 'bad-model-file';
  constructor(
    readonly file: string,
    readonly field: string,
    detail: string,
  ) {
    super(`${file}: ${field} ${detail}`);
    this.name = 'ModelFormatError';
  }
}

/** The load was cancelled through its AbortSignal; nothing stays allocated. */
export class LoadAbortedError extends Error {
  readonly code = 'aborted';
  constructor(readonly phase: string) {
    super(`model load aborted (during ${phase})`);
    this.name = 'LoadAbortedError';
  }
}

export interface LoadProgress {
  /** 'files': small JSON files; 'download': a file fetched into the cache; 'headers': safetensors headers checked; 'weights': tensor bytes uploaded; 'done'. */
  phase: 'files' | 'download' | 'headers' | 'weights' | 'done';
  /** Bytes (download, weights) or files (files, headers) so far, of `total`. */
  loaded: number;
  total: number;
  file: string;
}

/** Defaults from generation_config.json (absent fields stay undefined), plus every EOS id. */
export interface GenerationDefaults {
  /** EOS ids of config.json, generation_config.json and the tokenizer's eos_token, deduplicated. */
  eosTokenIds: number[];
  bosTokenId: number | null;
  /** pad_token_id (checked against the vocabulary; generation never pads). */
  padTokenId?: number;
  doSample?: boolean;
  temperature?: number;
  topP?: number;
  topK?: number;
  minP?: number;
  repetitionPenalty?: number;
  maxNewTokens?: number;
  maxLength?: number;
}

export interface LoadedModel {
  config: ModelConfig;
  tokenizer: TextTokenizer;
  generation: GenerationDefaults;
  weights: GpuModelWeights;
}

export interface LoadOptions {
  format: WeightFormat;
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
  /** Cap on one conversion batch of f32 rows on the GPU (default 16 MiB). */
  maxBatchBytes?: number;
}

const DEFAULT_BATCH_BYTES = 16 * 2 ** 20;

type Json = Record<string, unknown>;

function parseJsonObject(text: string, file: string): Json {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ModelFormatError(file, '(file)', `is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ModelFormatError(file, '(file)', 'must hold a JSON object');
  return v as Json;
}

/** generation_config.json -> defaults; every field is optional, a present field must be well typed. */
export function parseGenerationConfig(text: string, file = 'generation_config.json'): GenerationDefaults {
  const raw = parseJsonObject(text, file);
  const num = (field: string, ok: (v: number) => boolean, what: string): number | undefined => {
    const v = raw[field];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !ok(v)) throw new ModelFormatError(file, field, `must be ${what}, got ${JSON.stringify(v)}`);
    return v;
  };
  const int = (field: string) => num(field, (v) => Number.isInteger(v) && v >= 0, 'a non-negative integer');
  const ids = (field: string): number[] => {
    const v = raw[field];
    if (v === undefined || v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    if (list.some((id) => typeof id !== 'number' || !Number.isInteger(id) || id < 0)) throw new ModelFormatError(file, field, `must be a token id or a list of them, got ${JSON.stringify(v)}`);
    return list as number[];
  };
  const doSample = raw.do_sample;
  if (doSample !== undefined && doSample !== null && typeof doSample !== 'boolean') throw new ModelFormatError(file, 'do_sample', `must be a boolean, got ${JSON.stringify(doSample)}`);
  const out = {
    eosTokenIds: ids('eos_token_id'),
    bosTokenId: ids('bos_token_id')[0] ?? null,
    padTokenId: ids('pad_token_id')[0],
    doSample: doSample ?? undefined,
    temperature: num('temperature', (v) => Number.isFinite(v) && v >= 0, 'a number >= 0'),
    topP: num('top_p', (v) => v > 0 && v <= 1, 'in (0, 1]'),
    topK: int('top_k'),
    minP: num('min_p', (v) => v >= 0 && v <= 1, 'in [0, 1]'),
    repetitionPenalty: num('repetition_penalty', (v) => Number.isFinite(v) && v > 0, 'a number > 0'),
    maxNewTokens: int('max_new_tokens'),
    maxLength: int('max_length'),
  };
  // Leave absent fields out entirely, so `{...defaults, ...user}` spreads behave.
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined)) as typeof out;
}

/** model.safetensors.index.json -> the shard files, in order of first appearance. */
export function parseShardIndex(text: string, file = INDEX_FILE): string[] {
  const raw = parseJsonObject(text, file);
  const map = raw.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new ModelFormatError(file, 'weight_map', 'must be an object mapping tensor names to shard files');
  const files: string[] = [];
  for (const [name, f] of Object.entries(map as Json)) {
    if (typeof f !== 'string' || f === '' || f.split('/').some((seg) => seg === '..' || seg === '')) throw new ModelFormatError(file, `weight_map['${name}']`, `must be a relative shard file name, got ${JSON.stringify(f)}`);
    if (!files.includes(f)) files.push(f);
  }
  if (files.length === 0) throw new ModelFormatError(file, 'weight_map', 'is empty');
  return files;
}

/** The header of one safetensors file, read from the start of its stream (the rest is cancelled). */
export async function readSafetensorsHeader(source: ModelSource, file: string, signal?: AbortSignal): Promise<{ header: SafetensorsHeader; size?: number }> {
  const { stream, size } = await source.open(file, { signal });
  const reader = stream.getReader();
  let buf = new Uint8Array(0);
  const fill = async (n: number) => {
    while (buf.length < n) {
      const r = await reader.read();
      if (r.done) throw new SafetensorsError(file, 'header', `file ends after ${buf.length} bytes, the header needs ${n}`);
      const next = new Uint8Array(buf.length + r.value.length);
      next.set(buf);
      next.set(r.value, buf.length);
      buf = next;
    }
  };
  try {
    await fill(8);
    const hlen = headerLength(buf.subarray(0, 8), file);
    if (size !== undefined && 8 + hlen > size) throw new SafetensorsError(file, 'header', `length ${hlen} runs past the end of the ${size}-byte file`);
    await fill(8 + hlen);
    return { header: parseHeader(buf.subarray(8, 8 + hlen), file, size === undefined ? undefined : size - 8 - hlen), size };
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

function abortIfNeeded(signal: AbortSignal | undefined, phase: string): void {
  if (signal?.aborted) throw new LoadAbortedError(phase);
}

/** Stream one safetensors file's wanted tensors to the GPU. */
async function uploadFile(s: UploadState, source: ModelSource, file: string, wanted: Map<string, ExpectedTensor>, progress: (file: string, bytes: number) => void, signal?: AbortSignal): Promise<void> {
  const { stream, size } = await source.open(file, { signal });
  let current: TensorUpload | null = null;
  let scan: FiniteScan | null = null;
  const sink: TensorSink = {
    begin(t) {
      abortIfNeeded(signal, 'weights');
      const role = wanted.get(t.name);
      if (!role) {
        progress(file, t.end - t.begin); // not needed (e.g. rotary_emb.inv_freq, a tied lm_head): skipped
        return false;
      }
      scan = new FiniteScan(t.dtype as FloatDtype); // checkCheckpoint allowed only F32, F16, BF16
      current = role.role === 'vector' ? vectorUpload(s, t) : matrixUpload(s, t, role);
    },
    async chunk(t, _offset, bytes) {
      abortIfNeeded(signal, 'weights');
      // NaN/Inf are refused before the bytes reach the GPU (the catch below frees what was made).
      const bad = scan!.push(bytes);
      if (bad) throw new NonFiniteWeightError(file, t.name, bad.index, bad.value, t.shape);
      progress(file, bytes.length);
      await current!.chunk(bytes);
    },
    async end() {
      const c = current!;
      current = null;
      await c.end();
    },
  };
  try {
    await readSafetensors(stream, file, sink, size);
  } catch (e) {
    const c = current as TensorUpload | null;
    if (c) await c.abort(e);
    await stream.cancel().catch(() => undefined);
    throw e;
  }
}

/** Read every header and check the checkpoint against the config; returns sizes and tensors by file. */
async function checkHeaders(source: ModelSource, files: string[], config: ModelConfig, checkedAs: string, report: (i: number, file: string) => void, signal?: AbortSignal) {
  const found = new Map<string, TensorInfo & { file: string }>();
  let dataBytes = 0;
  for (const [i, file] of files.entries()) {
    abortIfNeeded(signal, 'headers');
    const { header } = await readSafetensorsHeader(source, file, signal);
    for (const t of header.tensors) {
      const prev = found.get(t.name);
      if (prev) throw new CheckpointError(file, t.name, `appears in both ${prev.file} and ${file}`);
      found.set(t.name, { ...t, file });
      dataBytes += t.end - t.begin;
    }
    report(i + 1, file);
  }
  const wanted = checkCheckpoint(config, found, checkedAs);
  return { wanted, dataBytes };
}

async function optionalText(source: ModelSource, file: string, signal?: AbortSignal): Promise<string | null> {
  return (await source.has(file, { signal })) ? await readText(source, file, { signal }) : null;
}

/** The special ids of config.json and generation_config.json, each with the file and field it came from. */
function specialIds(config: ModelConfig, gen: GenerationDefaults, tokenizer: TextTokenizer): SpecialTokenId[] {
  const list = (file: string, field: string, ids: readonly number[]) => ids.map((id, i) => ({ file, field: ids.length > 1 ? `${field}[${i}]` : field, id }));
  const one = (id: number | null | undefined) => (id === null || id === undefined ? [] : [id]);
  const c = 'config.json', g = 'generation_config.json', t = 'tokenizer_config.json';
  return [
    ...list(c, 'bos_token_id', one(config.bosTokenId)), ...list(c, 'eos_token_id', config.eosTokenIds), ...list(c, 'pad_token_id', one(config.padTokenId)),
    ...list(g, 'bos_token_id', one(gen.bosTokenId)), ...list(g, 'eos_token_id', gen.eosTokenIds), ...list(g, 'pad_token_id', one(gen.padTokenId)),
    ...list(t, 'bos_token', one(tokenizer.bosId)), ...list(t, 'eos_token', one(tokenizer.eosId)),
  ];
}

/** The name a source gives its model (Hub repository, directory, URL folder), added to config.names. */
function withSourceName(config: ModelConfig, source: ModelSource): ModelConfig {
  const names = [...(config.names ?? []), ...(source.name ? [source.name] : [])];
  return names.length > 0 ? { ...config, names: [...new Set(names)] } : config;
}

/**
 * Config, tokenizer and generation defaults: the small files, each checked on its own and then
 * against each other (vocabulary sizes, special token ids: checkVocabulary). Any sliding_window is
 * accepted: the attention kernels apply it as a per-sequence key window (src/kernels/attention.ts).
 */
export async function loadModelFiles(source: ModelSource, signal?: AbortSignal): Promise<{ config: ModelConfig; tokenizer: TextTokenizer; generation: GenerationDefaults }> {
  const config = withSourceName(parseModelConfig(await readText(source, 'config.json', { signal })), source);
  const tokenizerJson = await readText(source, 'tokenizer.json', { signal });
  const tokenizerConfig = (await optionalText(source, 'tokenizer_config.json', signal)) ?? '{}';
  const chatTemplateJinja = await optionalText(source, CHAT_TEMPLATE_FILE, signal);
  const genText = await optionalText(source, 'generation_config.json', signal);
  const gen = genText === null ? { eosTokenIds: [], bosTokenId: null } : parseGenerationConfig(genText);
  const tokenizer = TextTokenizer.load(tokenizerJson, tokenizerConfig, [...config.eosTokenIds, ...gen.eosTokenIds], { chatTemplateJinja });
  checkVocabulary(config, tokenizer, specialIds(config, gen, tokenizer));
  const generation: GenerationDefaults = { ...gen, eosTokenIds: [...new Set([...config.eosTokenIds, ...gen.eosTokenIds, ...tokenizer.eosIds])], bosTokenId: gen.bosTokenId ?? config.bosTokenId ?? tokenizer.bosId };
  return { config, tokenizer, generation };
}

/** Load a model from `source` onto the GPU. See the file comment for the order of checks and memory. */
export async function loadModel(ctx: GpuContext, source: ModelSource, options: LoadOptions): Promise<LoadedModel> {
  const { signal, onProgress } = options;
  const emit = (phase: LoadProgress['phase'], loaded: number, total: number, file: string) => onProgress?.({ phase, loaded, total, file });
  const tracked = trackingContext(ctx);
  const mats = new Map<string, GpuWeight>();
  const vecs = new Map<string, GPUBuffer>();
  let phase: LoadProgress['phase'] = 'files';
  try {
    abortIfNeeded(signal, phase);
    emit('files', 0, 1, 'config.json');
    const { config, tokenizer, generation } = await loadModelFiles(source, signal);
    const sharded = await source.has(INDEX_FILE, { signal });
    const files = sharded ? parseShardIndex(await readText(source, INDEX_FILE, { signal })) : [SINGLE_FILE];
    emit('files', 1, 1, sharded ? INDEX_FILE : SINGLE_FILE);

    const downloading = (file: string) => ({ signal, onDownload: (loaded: number, total: number | undefined) => emit('download', loaded, total ?? 0, file) });
    const headerSource: ModelSource = { description: source.description, has: (f, o) => source.has(f, o), open: (f) => source.open(f, downloading(f)) };
    phase = 'headers';
    const { wanted, dataBytes } = await checkHeaders(headerSource, files, config, sharded ? INDEX_FILE : SINGLE_FILE, (i, f) => emit('headers', i, files.length, f), signal);

    const state: UploadState = { ctx: tracked.ctx, config, format: options.format, maxBatchBytes: options.maxBatchBytes ?? DEFAULT_BATCH_BYTES, staging: new Staging(tracked.ctx), combine: new Uint8Array(COMBINE_BYTES), mats, vecs };
    phase = 'weights';
    let done = 0;
    const progress = (file: string, bytes: number) => emit('weights', (done += bytes), dataBytes, file);
    for (const file of files) await uploadFile(state, source, file, wanted, progress, signal);

    const weights = assembleModelWeights(tracked.ctx, config, options.format, mats, vecs);
    await ctx.device.queue.onSubmittedWorkDone();
    // Free what only the load needed (staging, conversion uniforms): everything not in `weights`.
    const kept = new Set<GPUBuffer>([weights.invFreq, ...vecs.values()]);
    for (const w of mats.values()) for (const sh of w.shards) kept.add(sh.data).add(sh.scales ?? sh.data);
    for (const b of tracked.created) if (!kept.has(b)) b.destroy();
    emit('done', dataBytes, dataBytes, files[files.length - 1]);
    return { config, tokenizer, generation, weights };
  } catch (e) {
    await ctx.device.queue.onSubmittedWorkDone().catch(() => undefined);
    for (const b of tracked.created) b.destroy();
    if (signal?.aborted && !(e instanceof LoadAbortedError)) throw new LoadAbortedError(phase);
    throw e;
  }
}
