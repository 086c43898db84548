/**
 * vLLM's runtime LoRA endpoints on `mace serve`:
 * - POST /v1/load_lora_adapter {lora_name, lora_path}: lora_path is a directory THIS server reads
 *   (adapter_config.json + adapter_model.safetensors, PEFT's files). As vLLM: 200 with the text
 *   "Success: LoRA adapter 'NAME' added successfully.", 400 when the name is taken or the files do
 *   not fit the model, 404 when the files are not there.
 *   mace extension: {lora_name, lora_files: {"adapter_config.json": text or object,
 *   "adapter_model.safetensors": base64}} uploads the files instead (for a client on another
 *   machine); `mace adapters push --upload` sends it.
 * - POST /v1/unload_lora_adapter {lora_name}: 200 "Success: LoRA adapter 'NAME' removed
 *   successfully.", 404 when no adapter has that name.
 * Loaded adapters are models: /v1/models lists them and a request's `model` selects one.
 */
import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { AdapterFiles, ServeBackend } from './backend.ts';
import { checkFields, stringField } from './body.ts';
import { HttpError } from './errors.ts';

export const PEFT_CONFIG = 'adapter_config.json';
export const PEFT_WEIGHTS = 'adapter_model.safetensors';

/** Where each loaded adapter came from (/v1/models' `root`): a directory, or 'upload'. */
export type AdapterRoots = Map<string, string>;

async function readPeftDir(dir: string): Promise<AdapterFiles> {
  const path = resolve(dir);
  const file = async (name: string) => {
    const p = join(path, name);
    const st = await stat(p).catch(() => null);
    // vLLM answers 404 ("No adapter found") when the path holds no adapter.
    if (!st?.isFile()) throw new HttpError(404, `No adapter found: ${p} does not exist or is not a file (lora_path is read by the server, on its machine)`, 'lora_path', 'adapter_files_not_found');
    return readFile(p);
  };
  const [config, weights] = await Promise.all([file(PEFT_CONFIG), file(PEFT_WEIGHTS)]);
  return { config: config.toString('utf8'), weights: new Uint8Array(weights.buffer, weights.byteOffset, weights.byteLength) };
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function uploadedFiles(v: unknown): AdapterFiles {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new HttpError(400, `lora_files must be an object {"${PEFT_CONFIG}": text, "${PEFT_WEIGHTS}": base64}`, 'lora_files', 'invalid_value');
  const files = v as Record<string, unknown>;
  checkFields(files, [PEFT_CONFIG, PEFT_WEIGHTS], 'lora_files');
  const config = files[PEFT_CONFIG];
  const weights = files[PEFT_WEIGHTS];
  if (typeof config !== 'string' && (typeof config !== 'object' || config === null)) throw new HttpError(400, `lora_files["${PEFT_CONFIG}"] must be the file's text or its JSON object`, `lora_files.${PEFT_CONFIG}`, 'invalid_value');
  if (typeof weights !== 'string' || weights.length % 4 !== 0 || !BASE64.test(weights)) throw new HttpError(400, `lora_files["${PEFT_WEIGHTS}"] must be the file's bytes in base64`, `lora_files.${PEFT_WEIGHTS}`, 'invalid_value');
  const bytes = Buffer.from(weights, 'base64');
  return { config: typeof config === 'string' ? config : JSON.stringify(config), weights: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
}

export async function loadLoraAdapter(backend: ServeBackend, roots: AdapterRoots, body: Record<string, unknown>): Promise<string> {
  checkFields(body, ['lora_name', 'lora_path', 'lora_files'], 'load_lora_adapter');
  const name = stringField(body, 'lora_name');
  const hasPath = body.lora_path !== undefined && body.lora_path !== null;
  const hasFiles = body.lora_files !== undefined && body.lora_files !== null;
  if (hasPath === hasFiles) throw new HttpError(400, "give lora_path (a directory the server reads) or lora_files (the files uploaded, a mace extension), exactly one", hasPath ? 'lora_files' : 'lora_path', 'invalid_value');
  if (name === backend.modelName) throw new HttpError(400, `lora_name '${name}' is the base model's name`, 'lora_name', 'invalid_value');
  if ((await backend.listAdapters()).some((a) => a.name === name)) throw new HttpError(400, `The lora adapter '${name}' has already been loaded.`, 'lora_name', 'adapter_already_loaded');
  const files = hasPath ? await readPeftDir(stringField(body, 'lora_path')) : uploadedFiles(body.lora_files);
  await backend.loadAdapter(name, files);
  roots.set(name, hasPath ? resolve(body.lora_path as string) : 'upload');
  return `Success: LoRA adapter '${name}' added successfully.`;
}

export async function unloadLoraAdapter(backend: ServeBackend, roots: AdapterRoots, body: Record<string, unknown>): Promise<string> {
  // vLLM also takes lora_int_id; mace adapters have names only, so it is refused as unknown.
  checkFields(body, ['lora_name'], 'unload_lora_adapter');
  const name = stringField(body, 'lora_name');
  if (!(await backend.listAdapters()).some((a) => a.name === name)) throw new HttpError(404, `The lora adapter '${name}' cannot be found.`, 'lora_name', 'adapter_not_found', 'not_found_error');
  await backend.unloadAdapter(name);
  roots.delete(name);
  return `Success: LoRA adapter '${name}' removed successfully.`;
}

/** GET /v1/models: the base model, then each adapter with the base as its parent (vLLM's cards). */
export async function listModels(backend: ServeBackend, roots: AdapterRoots, baseRoot: string, created: number): Promise<unknown> {
  const adapters = await backend.listAdapters();
  const card = (id: string, root: string | null, parent: string | null) => ({ id, object: 'model', created, owned_by: 'mace', root, parent });
  return {
    object: 'list',
    data: [{ ...card(backend.modelName, baseRoot, null), max_model_len: backend.maxContext }, ...adapters.map((a) => ({ ...card(a.name, roots.get(a.name) ?? null, backend.modelName), lora: { r: a.r, lora_alpha: a.loraAlpha, target_modules: a.targetModules, version: a.version } }))],
  };
}
