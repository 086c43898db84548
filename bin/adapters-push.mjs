// `mace adapters push`: load a PEFT adapter directory (what `mace train --out DIR` writes) into a
// vLLM-style server through POST /v1/load_lora_adapter {lora_name, lora_path}. vLLM reads
// lora_path on ITS machine (and only with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True), so the path sent
// is DIR made absolute: right when the server shares this file system. --upload sends the files in
// the request instead ({lora_name, lora_files}), an extension only `mace serve` understands.
import { readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

const PEFT_FILES = ['adapter_config.json', 'adapter_model.safetensors'];

/** An error naming what failed, with a stable code (bin/mace.mjs prints `name (code): message`). */
function pushError(code, message, fields = {}) {
  const e = new Error(message);
  e.name = 'AdapterPushError';
  e.code = code;
  Object.assign(e, fields);
  return e;
}

function checkAdapterDir(dir) {
  for (const f of PEFT_FILES) {
    let ok = false;
    try {
      ok = statSync(join(dir, f)).isFile();
    } catch {
      ok = false;
    }
    if (!ok) throw pushError('adapter-files', `--adapter ${dir} has no ${f} (a PEFT adapter directory, as \`mace train --out DIR\` writes, holds ${PEFT_FILES.join(' and ')})`);
  }
}

/** The server's base URL without a trailing /v1 or slash. */
export function serverBase(url) {
  return url.replace(/\/+$/, '').replace(/\/v1$/, '');
}

/** Push the adapter; resolves with the server's reply text (vLLM: "Success: LoRA adapter 'NAME' added successfully."). */
export async function pushAdapter({ adapter, server, name, apiKey, upload }, log) {
  const dir = resolve(adapter);
  checkAdapterDir(dir);
  const body = upload
    ? { lora_name: name, lora_files: { [PEFT_FILES[0]]: readFileSync(join(dir, PEFT_FILES[0]), 'utf8'), [PEFT_FILES[1]]: readFileSync(join(dir, PEFT_FILES[1])).toString('base64') } }
    : { lora_name: name, lora_path: dir };
  const url = `${serverBase(server)}/v1/load_lora_adapter`;
  log(`POST ${url} (${upload ? 'files uploaded' : `lora_path ${dir}, read by the server`})`);
  let res;
  try {
    res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) }, body: JSON.stringify(body) });
  } catch (e) {
    throw pushError('server-unreachable', `cannot reach ${url}: ${e?.cause?.message ?? e?.message ?? e}`);
  }
  const text = await res.text();
  if (!res.ok) {
    let message = text;
    let param = null;
    try {
      const j = JSON.parse(text);
      // OpenAI's error shape (mace serve), or vLLM's ErrorResponse {message, type, code}.
      message = j?.error?.message ?? j?.message ?? text;
      param = j?.error?.param ?? null;
    } catch {
      /* a plain-text error body */
    }
    throw pushError('server-refused', `${url} answered ${res.status}: ${message}`, { status: res.status, param });
  }
  return text;
}
