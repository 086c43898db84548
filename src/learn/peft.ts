/**
 * Hugging Face PEFT adapter files: adapter_model.safetensors + adapter_config.json.
 *
 * Export writes what PEFT's save_pretrained writes for a LoRA on a Llama-family model: F32 tensors
 * `base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_{A,B}.weight` and
 * `...mlp.{gate,up,down}_proj...`, A [r, in], B [out, r], metadata {"format": "pt"}, and the
 * LoraConfig fields of recent PEFT releases (lora_dropout 0, bias "none", CAUSAL_LM, ...).
 *
 * Import accepts the same plus common variants: F16/BF16 tensors (widened exactly to f32), keys
 * without the `base_model.model.` prefix, `.default` adapter names in keys, and target_modules
 * "all-linear" or a single module name. Features that change the maths and that we do not run
 * (DoRA, rank/alpha patterns, layer subsets, trained biases, fan_in_fan_out, modules_to_save,
 * regex targets) are refused with a typed error naming the field, never silently ignored.
 *
 * Import also refuses an adapter made for another model: a base_model_name_or_path that names a
 * different model than the loaded one (checkBaseModel; `allowBaseMismatch: true` warns and
 * applies it instead), tensors whose shapes do not fit the model, and NaN/Inf values.
 */
import { f16BitsToF32 } from '../gpu/f16.ts';
import { SUPPORTED_ARCHITECTURES, type ModelConfig } from '../model/config.ts';
import { readSafetensors, writeSafetensors, type TensorInfo } from '../model/safetensors.ts';
import { LINEAR_MODULES, linearShape, type LinearModule } from '../model/tensors.ts';
import { firstNonFinite, position } from '../model/validate.ts';
import { checkHostAdapter, orderedTargets, validateAdapterConfig, type AdapterConfig, type HostAdapter, type HostLora } from './adapter.ts';
import { AdapterConfigError, PeftFormatError } from './errors.ts';

export const PEFT_WEIGHTS_FILE = 'adapter_model.safetensors';
export const PEFT_CONFIG_FILE = 'adapter_config.json';
const PREFIX = 'base_model.model.';

function block(m: LinearModule): 'self_attn' | 'mlp' {
  return m === 'gate_proj' || m === 'up_proj' || m === 'down_proj' ? 'mlp' : 'self_attn';
}

/** PEFT's saved key of one LoRA matrix. */
export function peftKey(layer: number, module: LinearModule, which: 'A' | 'B'): string {
  return `${PREFIX}model.layers.${layer}.${block(module)}.${module}.lora_${which}.weight`;
}

/** adapter_config.json as PEFT writes it (LoraConfig.to_dict of a recent release). */
export function peftConfigJson(c: AdapterConfig): Record<string, unknown> {
  return {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: c.baseModelNameOrPath,
    bias: 'none',
    eva_config: null,
    exclude_modules: null,
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: c.loraAlpha,
    lora_bias: false,
    lora_dropout: 0,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: null,
    peft_type: 'LORA',
    r: c.r,
    rank_pattern: {},
    revision: null,
    target_modules: orderedTargets(c),
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: c.useRslora,
  };
}

export interface PeftFiles {
  /** adapter_model.safetensors */
  weights: Uint8Array;
  /** adapter_config.json text */
  config: string;
}

/** Export a host adapter (from readAdapter) to PEFT's two files. Bit-exact: F32 little-endian. */
export function exportPeft(model: ModelConfig, host: HostAdapter): PeftFiles {
  const byKey = checkHostAdapter(model, host);
  const r = host.config.r;
  const tensors = [];
  for (let layer = 0; layer < model.nLayers; layer++) {
    for (const m of orderedTargets(host.config)) {
      const t = byKey.get(`${layer}.${m}`)!;
      const [outDim, inDim] = linearShape(model, m);
      tensors.push({ name: peftKey(layer, m, 'A'), dtype: 'F32' as const, shape: [r, inDim], data: f32Bytes(t.A) });
      tensors.push({ name: peftKey(layer, m, 'B'), dtype: 'F32' as const, shape: [outDim, r], data: f32Bytes(t.B) });
    }
  }
  return { weights: writeSafetensors(tensors, { format: 'pt' }), config: JSON.stringify(peftConfigJson(host.config), null, 2) };
}

/** Little-endian bytes of `a`, bit for bit (explicit, so a big-endian host would still write LE). */
function f32Bytes(a: Float32Array): Uint8Array {
  const out = new Uint8Array(a.length * 4);
  const dv = new DataView(out.buffer);
  const bits = new Uint32Array(a.buffer, a.byteOffset, a.length);
  for (let i = 0; i < a.length; i++) dv.setUint32(i * 4, bits[i], true);
  return out;
}

// ---------------------------------------------------------------- import

/** Parse adapter_config.json (text or parsed) into an AdapterConfig valid for `model`. */
export function parsePeftConfig(model: ModelConfig, input: string | unknown, file = PEFT_CONFIG_FILE): AdapterConfig {
  let raw: unknown = input;
  if (typeof input === 'string') {
    try {
      raw = JSON.parse(input);
    } catch (e) {
      throw new AdapterConfigError('(file)', `is not valid JSON: ${(e as Error).message}`, file);
    }
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new AdapterConfigError('(file)', 'must be a JSON object', file);
  const j = raw as Record<string, unknown>;
  const bad = (field: string, detail: string) => new AdapterConfigError(field, detail, file);
  if (j.peft_type !== 'LORA') throw bad('peft_type', `is ${JSON.stringify(j.peft_type)}; only "LORA" adapters are supported`);
  const unsupported: [string, (v: unknown) => boolean, string][] = [
    ['use_dora', (v) => v === true, 'DoRA is not supported'],
    ['fan_in_fan_out', (v) => v === true, 'fan_in_fan_out (Conv1D-style weights) is not supported'],
    ['bias', (v) => v !== undefined && v !== 'none', 'trained biases are not supported (only "none")'],
    ['lora_bias', (v) => v === true, 'LoRA biases are not supported'],
    ['rank_pattern', (v) => isNonEmpty(v), 'per-module ranks are not supported'],
    ['alpha_pattern', (v) => isNonEmpty(v), 'per-module alphas are not supported'],
    ['layers_to_transform', (v) => v !== undefined && v !== null, 'layer subsets are not supported'],
    ['modules_to_save', (v) => isNonEmpty(v), 'fully trained extra modules are not supported'],
    ['layer_replication', (v) => v !== undefined && v !== null, 'layer replication is not supported'],
  ];
  for (const [field, isBad, why] of unsupported) if (isBad(j[field])) throw bad(field, `= ${JSON.stringify(j[field])}: ${why}`);
  const r = j.r;
  if (typeof r !== 'number') throw bad('r', `must be a number, got ${JSON.stringify(r)}`);
  const alpha = j.lora_alpha ?? 8; // PEFT's default
  if (typeof alpha !== 'number') throw bad('lora_alpha', `must be a number, got ${JSON.stringify(alpha)}`);
  const rs = j.use_rslora ?? false;
  if (typeof rs !== 'boolean') throw bad('use_rslora', `must be true or false, got ${JSON.stringify(rs)}`);
  const base = j.base_model_name_or_path ?? '';
  if (typeof base !== 'string') throw bad('base_model_name_or_path', `must be a string, got ${JSON.stringify(base)}`);
  const config: AdapterConfig = { r, loraAlpha: alpha, useRslora: rs, targetModules: parseTargets(j.target_modules, file), baseModelNameOrPath: base };
  validateAdapterConfig(model, config, file);
  return config;
}

function isNonEmpty(v: unknown): boolean {
  if (v === undefined || v === null) return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v).length > 0;
  return true;
}

function parseTargets(v: unknown, file: string): LinearModule[] {
  if (v === 'all-linear') return [...LINEAR_MODULES];
  if (typeof v === 'string') {
    if ((LINEAR_MODULES as readonly string[]).includes(v)) return [v as LinearModule];
    throw new AdapterConfigError('target_modules', `is the pattern ${JSON.stringify(v)}; only a list of module names (or "all-linear") is supported`, file);
  }
  if (!Array.isArray(v) || v.some((m) => typeof m !== 'string')) throw new AdapterConfigError('target_modules', `must be a list of module names, got ${JSON.stringify(v)}`, file);
  return v as LinearModule[]; // names are checked by validateAdapterConfig
}

const KEY = /^(?:base_model\.model\.)?model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)\.lora_(A|B)(?:\.default)?\.weight$/;

export interface PeftImportInput {
  /** adapter_model.safetensors: bytes or a stream. */
  weights: Uint8Array | ReadableStream<Uint8Array>;
  /** adapter_config.json: text or the parsed object. */
  config: string | unknown;
  /** Names used in errors. */
  weightsFile?: string;
  configFile?: string;
  /** Apply an adapter whose base_model_name_or_path names another model, with a warning (default: refuse). */
  allowBaseMismatch?: boolean;
  /** Where that warning goes (default console.warn). */
  onWarning?: (message: string) => void;
}

/** The model part of a name or path, lower-cased: "HuggingFaceTB/SmolLM2-135M", "./models/smollm2-135m/" -> "smollm2-135m". */
function baseKey(name: string): string {
  const parts = name.trim().split(/[\\/]/).filter((p) => p !== '' && p !== '.' && p !== '..');
  return (parts[parts.length - 1] ?? '').toLowerCase();
}

/**
 * adapter_config.json's base_model_name_or_path against the loaded model. Empty: the adapter does
 * not say, nothing to check. An architecture name (what adapters trained in this runtime record):
 * it must be the model's architecture. Otherwise a name or path, compared by its last segment
 * (case-insensitive) with the model's names (config.names: _name_or_path, the source's name);
 * when the model has no name, nothing can be compared. A mismatch is an AdapterConfigError unless
 * `allowBaseMismatch`, which warns and goes on.
 */
export function checkBaseModel(model: ModelConfig, config: AdapterConfig, options: Pick<PeftImportInput, 'allowBaseMismatch' | 'onWarning'> = {}, file = PEFT_CONFIG_FILE): void {
  const base = config.baseModelNameOrPath.trim();
  if (base === '') return;
  let mismatch: string | null = null;
  if ((SUPPORTED_ARCHITECTURES as readonly string[]).includes(base)) {
    if (base !== model.architecture) mismatch = `names the architecture '${base}', but the loaded model is a ${model.architecture}`;
  } else {
    const names = model.names ?? [];
    if (names.length > 0 && !names.some((n) => baseKey(n) === baseKey(base))) mismatch = `= '${base}' names a different base model than the loaded one (${names.map((n) => `'${n}'`).join(', ')})`;
  }
  if (mismatch === null) return;
  if (!options.allowBaseMismatch) throw new AdapterConfigError('base_model_name_or_path', `${mismatch}; a LoRA adapter only means something on the model it was trained on (pass allowBaseMismatch: true to apply it anyway)`, file);
  (options.onWarning ?? console.warn)(`${file}: base_model_name_or_path ${mismatch}; applied anyway (allowBaseMismatch)`);
}

/** Read PEFT files into a host adapter for `model` (then writeAdapter or AdapterBank.load). */
export async function importPeft(model: ModelConfig, input: PeftImportInput): Promise<HostAdapter> {
  const wf = input.weightsFile ?? PEFT_WEIGHTS_FILE;
  const config = parsePeftConfig(model, input.config, input.configFile ?? PEFT_CONFIG_FILE);
  checkBaseModel(model, config, input, input.configFile ?? PEFT_CONFIG_FILE);
  const r = config.r;
  const found = new Map<string, { A?: Float32Array; B?: Float32Array }>();
  const bytesOf = new Map<string, Uint8Array>();
  const where = new Map<string, { layer: number; module: LinearModule; which: 'A' | 'B' }>();
  const stream = input.weights instanceof Uint8Array ? bytesStream(input.weights) : input.weights;
  const total = input.weights instanceof Uint8Array ? input.weights.length : undefined;
  await readSafetensors(stream, wf, {
    begin(t: TensorInfo) {
      const k = parseKey(t, model, config, wf);
      where.set(t.name, k);
      bytesOf.set(t.name, new Uint8Array(t.end - t.begin));
    },
    chunk(t, offset, bytes) {
      bytesOf.get(t.name)!.set(bytes, offset);
    },
    end(t) {
      const k = where.get(t.name)!;
      const key = `${k.layer}.${k.module}`;
      const entry = found.get(key) ?? {};
      if (entry[k.which]) throw new PeftFormatError(wf, t.name, `duplicates lora_${k.which} of layer ${k.layer} ${k.module}`);
      const values = toF32(t, bytesOf.get(t.name)!, wf);
      const bad = firstNonFinite(values);
      if (bad >= 0) throw new PeftFormatError(wf, t.name, `holds ${values[bad]} at element ${bad}${position(bad, t.shape)}; adapter weights must be finite numbers`);
      entry[k.which] = values;
      bytesOf.delete(t.name);
      found.set(key, entry);
    },
  }, total);
  const tensors: HostLora[] = [];
  for (let layer = 0; layer < model.nLayers; layer++) {
    for (const module of orderedTargets(config)) {
      const e = found.get(`${layer}.${module}`);
      if (!e?.A) throw new PeftFormatError(wf, peftKey(layer, module, 'A'), `is missing (adapter_config.json targets ${module} with r=${r})`);
      if (!e.B) throw new PeftFormatError(wf, peftKey(layer, module, 'B'), `is missing (adapter_config.json targets ${module} with r=${r})`);
      tensors.push({ layer, module, A: e.A, B: e.B });
    }
  }
  const host = { config: { ...config, targetModules: orderedTargets(config) }, tensors };
  checkHostAdapter(model, host);
  return host;
}

/** Which (layer, module, A/B) a tensor is; refuses keys, dtypes and shapes that do not fit. */
function parseKey(t: TensorInfo, model: ModelConfig, c: AdapterConfig, file: string): { layer: number; module: LinearModule; which: 'A' | 'B' } {
  const m = KEY.exec(t.name);
  if (!m) throw new PeftFormatError(file, t.name, 'is not a LoRA A/B weight of a decoder layer Linear (expected base_model.model.model.layers.{i}.{self_attn|mlp}.{module}.lora_{A|B}.weight)');
  const layer = Number(m[1]);
  const module = m[3] as LinearModule;
  const which = m[4] as 'A' | 'B';
  if (!(LINEAR_MODULES as readonly string[]).includes(module) || block(module) !== m[2]) throw new PeftFormatError(file, t.name, `names module ${m[2]}.${m[3]}, not one of the Llama Linears`);
  if (layer >= model.nLayers) throw new PeftFormatError(file, t.name, `is for layer ${layer}; the model has ${model.nLayers} layers`);
  if (!c.targetModules.includes(module)) throw new PeftFormatError(file, t.name, `is for ${module}, which adapter_config.json target_modules does not list`);
  if (!['F32', 'F16', 'BF16'].includes(t.dtype)) throw new PeftFormatError(file, t.name, `has dtype ${t.dtype}; only F32, F16 and BF16 are read`);
  const [outDim, inDim] = linearShape(model, module);
  const want = which === 'A' ? [c.r, inDim] : [outDim, c.r];
  if (t.shape.length !== 2 || t.shape[0] !== want[0] || t.shape[1] !== want[1]) {
    throw new PeftFormatError(file, t.name, `has shape [${t.shape.join(', ')}], expected [${want.join(', ')}] (r=${c.r} from adapter_config.json, ${module} is [out=${outDim}, in=${inDim}])`);
  }
  return { layer, module, which };
}

/** Widen a tensor's bytes to f32 (exact for F16 and BF16); little-endian as safetensors. */
function toF32(t: TensorInfo, bytes: Uint8Array, file: string): Float32Array {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = t.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  const bits = new Uint32Array(out.buffer); // F32 and BF16 move bits: NaN payloads included
  if (t.dtype === 'F32') for (let i = 0; i < n; i++) bits[i] = dv.getUint32(i * 4, true);
  else if (t.dtype === 'F16') for (let i = 0; i < n; i++) out[i] = f16BitsToF32(dv.getUint16(i * 2, true));
  else if (t.dtype === 'BF16') for (let i = 0; i < n; i++) bits[i] = dv.getUint16(i * 2, true) << 16;
  else throw new PeftFormatError(file, t.name, `has dtype ${t.dtype}`);
  return out;
}

function bytesStream(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(bytes);
      controller.close();
    },
  });
}
