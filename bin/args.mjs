// Command-line parsing of `mace`: plain data in, plain data out, so it is easy to read and test.

export const USAGE = `Usage: mace <command> [options]

Commands:
  generate         Load a model and run one request; the text streams to stdout.
  train            DPO-train a LoRA adapter on preference pairs (a file, or --stories: pairs the
                   model makes from its own story continuations), or KTO-train it on unpaired
                   thumbs (--thumbs FILE, or --stories --thumbs-from-stories); prints the curve.
  bench decode     Inference benchmark: TTFT, prefill and decode tokens/s per weight format and
                   batch size, and decode at batch 1 against the copy-bandwidth roofline.
  bench serve      Serving benchmark: replays a trace of chat requests and feedback pairs under each
                   scheduling policy; TTFT/TBT percentiles, SLO attainment, fine-tune steps, GPU
                   busy fraction and scheduler overhead. The bare command is a complete benchmark.
  bench prefix     Prefix-cache benchmark: a multi-turn chat trace and a shared-system-prompt trace,
                   each with the prefix cache off and on in one run; TTFT p50/p95 and prefill
                   tokens computed against the trace's ideal shared fraction.
  bench prune      KV-pruning experiment on the CPU reference (real weights): next-token agreement
                   and log-prob difference against the full cache for attention sinks + window and
                   heavy hitters (H2O) at several KV budgets, over long greedy generations.
  bench kernels    Benchmark the GPU kernels: copy bandwidth, decode GEMV (M = 1, 4) and
                   prefill GEMM (M = 128) in f32/f16/q4 on SmolLM2-135M and Llama-3.2-1B shapes.
                   Prints a markdown table (weight GB/s, roofline = GB/s / copy GB/s).
  bench drift      The MACE experiment: the real stories260K served under each policy while a
                   simulated user's preference drifts; win rate, CLPD, held-out reward accuracy and
                   time to adapt over time, latency from the same run; --plot DIR writes SVG charts.
  bench all        Every benchmark above on real-model shapes, one JSON + markdown file each in
                   --out DIR (and DIR/all.json: device, commands, wall times), sized to finish in
                   under 8 minutes on an H100-class GPU (--node with the NVIDIA Vulkan driver).
  serve            OpenAI-compatible HTTP server on the engine: /v1/chat/completions and
                   /v1/completions (SSE streaming), /v1/models, and vLLM's runtime LoRA endpoints
                   /v1/load_lora_adapter, /v1/unload_lora_adapter. Prints its URL on stdout.
  adapters push    Load a trained PEFT adapter (train --out DIR) into a vLLM-style server through
                   /v1/load_lora_adapter (vLLM, or mace serve); it is then a model of that server.
  help             Show this help.

Runtime: every command runs in headless Chromium (WebGPU as a page sees it) by default; --node runs
it in Node through Dawn (the \`webgpu\` package) instead. Chromium is the default because it is the
target and, on this project's machines, decodes faster than Dawn in Node (per-token readback
latency); both give the same tokens.

Options of \`generate\`:
  --model M          A local model directory (Hugging Face layout: config.json, tokenizer.json,
                     model.safetensors or shards), an http(s) URL of such a folder, or a Hugging
                     Face repository id (owner/name). Required.
  --prompt TEXT      Completion prompt. Without --prompt and --messages the prompt is empty: BOS only.
  --messages JSON    Chat messages, e.g. '[{"role":"user","content":"Hi"}]' (the model's chat
                     template; a model without one joins the contents as a plain prompt).
  --max-tokens N     Most tokens to generate (default: generation_config.json's max_new_tokens,
                     else until EOS or the context is full).
  --temperature T    In [0, 2]; 0 is greedy (default: generation_config.json, else 1).
  --top-p P          In (0, 1] (default: generation_config.json, else 1).
  --seed S           Sampling seed, an integer in [0, 2^32).
  --dtype F          Weight storage format on the GPU: f32 (default), f16 or q4.
  --json             Print only one JSON object {text, token_ids, prompt_token_ids, finish_reason,
                     usage} instead of streaming the text.
  --node | --browser Runtime (default --browser: headless Chromium).

Options of \`train\`:
  --model M          As for generate. Required.
  --pairs FILE       Preference pairs: TRL JSONL {prompt, chosen, rejected}, ShareGPT DPO, KTO or
                     v1 DPO files (a malformed record fails the run naming file and line).
  --stories          Instead of --pairs: pairs the model makes from its own sampled story
                     continuations, judged by the rule "mentions playing beats does not" (held-out
                     prompts are never trained on).
  --eval FILE        Held-out pairs (same formats); --stories makes its own held-out split.
  --thumbs FILE      Instead of --pairs: unpaired thumbs, TRL KTO JSONL {prompt, completion, label}
                     (or conversational) or KTO {messages, label}, trained with KTO; reports
                     held-out KTO metrics and reward accuracy (desirable above undesirable, over
                     held-out prompts that have both labels).
  --eval-thumbs FILE Held-out thumbs (same formats) for --thumbs or --thumbs-from-stories.
  --thumbs-from-stories  With --stories: each sampled continuation labelled ALONE by the rule
                     (thumbs-up / thumbs-down, nothing paired) and trained with KTO.
  --desirable-weight F | --undesirable-weight F   KTO's loss weights (default 1 and 1).
  --eval-every N     KTO: held-out metrics every N steps too (the curve).
  --save-thumbs DIR  With --thumbs-from-stories: write the generated thumbs as TRL KTO JSONL
                     (DIR/train.jsonl, DIR/heldout.jsonl), reusable with --thumbs/--eval-thumbs.
  --no-eos           --thumbs: append no EOS to the completions (TRL appends one; saved story
                     thumbs were cut at --tokens, not ended).
  --steps N | --epochs N   Training length: optimizer steps, or passes over the pairs (default 1 epoch).
  --batch N          Pairs (or KTO examples) per optimizer step (mean loss; default 1).
  --lr F             Peak learning rate (default 5e-4; linear warmup, then linear decay).
  --warmup N         Warmup steps (default 10% of the steps).
  --beta F           DPO / KTO beta (default 0.1).
  --rank R           LoRA rank on all seven Linears (default 8); --alpha A (default 2·rank).
  --seed S           Shuffle / sampling seed (default 0).
  --max-length N     Cap on prompt + response tokens (default 256); longer pairs are skipped, named.
  --samples N        --stories: samples per prompt (default 16); --tokens N: their length (default 48);
                     --rejected-per-chosen N: train pairs per preferred sample (default 1).
  --dtype F          Base weight format on the GPU: f32 (default), f16 or q4.
  --out DIR          Write the adapter in PEFT format (adapter_model.safetensors, adapter_config.json).
  --json             One JSON object: per-step metrics, held-out metrics before/after.
  --node | --browser Runtime (default --browser: headless Chromium).
  --cpu              Run on the CPU references instead of a GPU: continuations sampled by the
                     reference model, DPO by ReferenceTrainer (the GPU trainer's spec). Straight
                     loops: tiny models only (stories260K), for sweeping settings; f32 only.

Options of \`train --synthetic\` (the training-step benchmark; no --model, no pairs):
  --synthetic M      smollm2-135m or stories260k: the real shapes with random weights made on the
                     GPU. Times one DPO step on one pair of random tokens, split into forward,
                     loss, backward and optimizer and per work-unit kind, plus training memory.
  --dtype F          Base weight format: f32 (default), f16 or q4.
  --steps N          Steps to time (default 1; the first also pays pipeline compilation).
  --prompt-tokens N  Prompt length (default 48); --response-tokens N: each response (default 48).
  --rank R           LoRA rank on all seven Linears (default 8). --seed S (default 1).
  --plan LIST        Kernel plans, comma-separated: fused (default) and/or unfused (the kernels
                     before issue 11); with both, each runs in turn and the JSON is
                     {runs, stepSpeedupFusedOverUnfused}.
  --json             Print only the result JSON.
  --node | --browser Runtime (default --browser: headless Chromium).

Options of \`bench serve\`:
  --policy P         mace, inference-only, periodic, sync, or a comma list (default all four).
  --trace FILE       Replay this trace (JSON, bench/serve/trace.ts format) instead of generating one.
  --rates LIST       Retrain rates of the generated traces (share of answers that yield a pair),
                     e.g. 0.1,0.3,0.5 (default 0.3). Ignored with --trace.
  --model M          Synthetic model: stories260k (default), stories15m or smollm2-135m.
  --dtype F          f32 (default), f16 or q4.
  --duration S       Seconds of arrivals in a generated trace (default 60).
  --load R           Requests per second of a generated trace (default 0.3).
  --prompt-tokens A-B, --answer-tokens A-B
                     Prompt and answer lengths of a generated trace, uniform (default 8-24 each).
  --seed N           Trace seed (default 1).
  --horizon K        Fine-tune steps are counted over K × the trace's duration (default 2), the
                     same span for every policy.
  --budget-multiple K  GPU-time budget per iteration (every policy) = K × the unloaded decode step
                     (default 1.5).
  --rank R           LoRA rank of the learnt adapter (default 8).
  --max-seqs N       Most chats decoding at once (default 8).
  --records FILE     Also write every run's raw iteration, request and fine-tune records (JSON).
  --unloaded T,B     Use this unloaded TTFT,TBT (ms) instead of calibrating: one policy per process
                     then runs with exactly the SLOs and budget of another run (its JSON's unloaded).
  --ablate LIST      Also run mace with one mechanism off per item, each its own row:
                     no-loss-priority (γ = 0), no-best-fit (first fit by priority), no-aging,
                     layer-units (fine-tune units of a whole layer instead of one matmul),
                     no-decode-stretch (beside decodes fine-tuning is bounded by finetuneShare of
                     the budget only, not by decodeStretch of the decodes' own time).
  --json             Print the result JSON.  --out FILE: also write it to FILE.
  --node | --browser Runtime (default --browser: headless Chromium).

Options of \`bench decode\`:
  --model M          stories260k (default) or smollm2-135m: the real shapes with random weights
                     made on the GPU (no download); or a local model directory.
  --dtype LIST       Comma-separated weight formats (default f32,f16,q4).
  --batches LIST     Comma-separated batch sizes (default 1,4,8).
  --prompt-tokens N  Prompt length of every request (default 16).
  --tokens N         Tokens generated per request, EOS ignored (default 32).
  --plan LIST        Kernel plans, comma-separated: fused (default) and/or unfused (the plan before
                     issue 11: one dispatch per operation, workgroup reductions); with both, the two
                     engines alternate per batch size in one run and the JSON has decodeSpeedup.
  --kv-window LIST   KV windows, comma-separated: full (default) and/or SINKS:WINDOW (every request's
                     kv_window); with full and a window the JSON has kvWindowSpeedup (long prompts
                     show it: --prompt-tokens 400).
  --json             Print only the result JSON on stdout (progress goes to stderr).
  --out FILE         Also write the result JSON to FILE.
  --node | --browser Runtime (default --browser: headless Chromium).

Options of \`bench prefix\`:
  --model M          stories260k (default), stories15m or smollm2-135m: real shapes, random weights.
  --dtype F          Weight format (default f32).
  --conversations N  Multi-turn: chats at once (default 4).   --turns N: turns per chat (default 4).
  --user-tokens N    Tokens per user turn / question (default 48).
  --reply-tokens N   Tokens per reply, EOS ignored (default 24).
  --system-tokens N  Shared-system-prompt trace: the system prompt's length (default 160).
  --requests N       Its requests in all (default 16).   --clients N: sent by N clients (default 4).
  --repeats N        Timed replays of each trace per variant, alternating off/on, pooled (default 4).
  --seed S           Prompt ids' seed (default 1).
  --json             Print only the result JSON.   --out FILE: also write it to FILE.
  --node | --browser Runtime (default --browser: headless Chromium).

Options of \`bench prune\`:
  --model DIR        Model directory (default public/models/stories260K) with config.json,
                     model.safetensors, tokenizer.json and tokenizer_config.json.
  --prompts N        Story prompts to generate from (default 8).
  --tokens N         Tokens generated per prompt (default 480).
  --fractions LIST   KV budgets as fractions of the sequence (default 0.25,0.5,0.75).
  --sinks N          Attention sinks of the sinks + window policy (default 4).
  --json             Print only the result JSON.   --out FILE: also write it to FILE.

Options of \`bench drift\`:
  --model M          The served model (default public/models/stories260K: the rules are about its stories).
  --policy P         mace, inference-only, periodic, sync, or a comma list (default all four).
  --quick            A short run (72 s of trace per policy, fewer eval samples): under 10 minutes here.
  --duration S       Seconds of trace per policy (default 360); the preference drifts at S/2
                     (--return: at S/3 and back to the first rule at 2S/3).
  --load R           Requests per second, Poisson (default 1).  --answer-tokens N (default 24).
  --feedback-rate F  Share of answers the simulated user rates (default 0.6); --noise F: share of
                     ratings flipped (default 0.05); --regenerations N: Regenerate presses after a
                     thumbs-down (default 2); --anchor-every N: one formed pair in N is held back
                     as an anchor for the rollback guard (default 5; 0: no guard); --anchors N:
                     most anchors one decision checks (default 16, the latest of the phase);
                     --pairs-per-rating N: pairs one rating adds to the learner, those with the
                     most recent opposite answers of its context (default 2).
  --eval-every S     Seconds between adapter snapshots (default 20); --seeds N: samples per held-out
                     prompt for the win rate (default 8); --pair-samples N: base samples per held-out
                     prompt to build each rule's held-out pairs (default 16).
  --lr F --beta F --rank R --epochs N --seed S   Learning (defaults 2e-3, 0.5, 8, 1, 1).
  --budget-multiple K  GPU budget per submission = K × the unloaded TBT (default 1.5). --max-seqs N (4).
  --plot DIR         Write the SVG charts (win rate, CLPD, reward accuracy, distinct bigrams, TBT CDF).
  --json             Print the result JSON.  --out FILE: also write it to FILE.
  --node | --browser Runtime (default --browser: headless Chromium).

Options of \`bench all\`:
  --out DIR          Required. Where the result files go.
  --quick            Fewer models and shorter traces (a smoke run on SwiftShader).
  --json             Print DIR/all.json on stdout at the end.
  --node | --browser Runtime (default --browser: headless Chromium).

Options of \`serve\`:
  --model M          As for generate. Required.
  --dtype F          Weight format on the GPU: f32 (default), f16 or q4.
  --host H           Interface to bind (default 127.0.0.1: this machine only).
  --port N           Port (default 8000; 0 picks a free one, printed with the URL).
  --served-model-name NAME  The base model's name in /v1/models and responses (default: --model as given).
  --api-key KEY      Require Authorization: Bearer KEY on every /v1 request (401 otherwise).
  --max-concurrent N Generations at once (default 32); one more is refused with 429.
  --max-tokens-limit N  Most tokens one request may generate (default 2048): the default max_tokens;
                     a request asking for more is refused with 400.
  --max-body-bytes N Largest request body (default 2097152); larger ones are refused with 413.
  --max-adapter-bytes N  Largest /v1/load_lora_adapter body, uploads included (default 268435456).
  --max-seqs N       Sequences decoded together (default 8); the rest wait in the engine's queue.
  --max-loras N      LoRA adapters loaded at once (default 4; 0: no adapter bank).
  --max-lora-rank R  Highest rank a loaded adapter may have (default 16).
  --lora-modules LIST  Adapters to load at start, NAME=DIR comma-separated (vLLM's option).
  --allow-origin O   Send Access-Control-Allow-Origin: O (a page on another origin using the remote
                     client); default none.
  --node | --browser Runtime (default --browser: headless Chromium).

Options of \`adapters push\`:
  --adapter DIR      PEFT adapter directory (adapter_config.json, adapter_model.safetensors). Required.
  --server URL       The server, e.g. http://127.0.0.1:8000 (a trailing /v1 is fine). Required.
  --name NAME        The adapter's name on the server (requests then give model: NAME). Required.
  --api-key KEY      Sent as Authorization: Bearer KEY.
  --upload           Send the files in the request (mace serve's extension) instead of DIR's path.
                     Without it the server reads DIR itself, as vLLM's API requires: a path on the
                     server's machine (vLLM needs VLLM_ALLOW_RUNTIME_LORA_UPDATING=True).

Options of \`bench kernels\`:
  --quick          SmolLM2-135M only, fewer iterations and GEMM shapes.
  --json           Print only the result JSON on stdout (progress goes to stderr).
  --node           Run in Node through Dawn (the \`webgpu\` package) instead of headless Chromium.
  --out FILE       Also write the result JSON to FILE.
  -h, --help       Show this help.

Exit status: 0 on success, 1 when the work fails (the error's name, code and message go to
stderr), 2 on a bad command line.

Environment:
  MACE_CHROMIUM    Chromium binary to use (default: /usr/bin/chromium, Debian package \`chromium\`).
  VK_ICD_FILENAMES Vulkan driver for Dawn (default when unset: Chromium's SwiftShader).
`;

export class UsageError extends Error {}

export const WEIGHT_FORMATS = ['f32', 'f16', 'q4'];
/** Kernel plans (src/kernels/plan.ts): fused is the default, unfused the plan before issue 11. */
export const KERNEL_PLANS = ['fused', 'unfused'];

function planValue(name, v) {
  if (!KERNEL_PLANS.includes(v)) throw new UsageError(`--${name} must be one of ${KERNEL_PLANS.join(', ')}, got '${v}'`);
  return v;
}
/** Models with real shapes and random weights made on the GPU (bench/synthetic-model.ts). */
export const SYNTHETIC_MODELS = ['stories260k', 'smollm2-135m'];

/** Options that take a value, per command; the parser turns each into the named field. */
const VALUE_OPTIONS = {
  'bench kernels': ['out'],
  'bench all': ['out'],
  'bench drift': ['model', 'policy', 'duration', 'load', 'answer-tokens', 'eval-every', 'feedback-rate', 'noise', 'regenerations', 'anchor-every', 'pairs-per-rating', 'anchors', 'seeds', 'pair-samples', 'budget-multiple', 'max-seqs', 'rank', 'lr', 'beta', 'epochs', 'seed', 'plot', 'out'],
  generate: ['model', 'prompt', 'messages', 'max-tokens', 'temperature', 'top-p', 'seed', 'dtype'],
  'bench decode': ['model', 'dtype', 'batches', 'prompt-tokens', 'tokens', 'out', 'plan', 'kv-window'],
  'bench prune': ['model', 'prompts', 'tokens', 'fractions', 'sinks', 'out'],
  'bench prefix': ['model', 'dtype', 'conversations', 'turns', 'user-tokens', 'reply-tokens', 'system-tokens', 'requests', 'clients', 'repeats', 'seed', 'out'],
  'bench serve': ['policy', 'trace', 'rates', 'model', 'dtype', 'duration', 'load', 'seed', 'budget-multiple', 'rank', 'out', 'prompt-tokens', 'answer-tokens', 'horizon', 'ablate', 'max-seqs', 'records', 'unloaded'],
  serve: ['model', 'dtype', 'host', 'port', 'served-model-name', 'api-key', 'max-concurrent', 'max-tokens-limit', 'max-body-bytes', 'max-adapter-bytes', 'max-seqs', 'max-loras', 'max-lora-rank', 'lora-modules', 'allow-origin'],
  'adapters push': ['adapter', 'server', 'name', 'api-key'],
  train: ['model', 'pairs', 'eval', 'thumbs', 'eval-thumbs', 'desirable-weight', 'undesirable-weight', 'eval-every', 'save-thumbs', 'steps', 'epochs', 'batch', 'lr', 'warmup', 'beta', 'rank', 'alpha', 'seed', 'max-length', 'samples', 'tokens', 'rejected-per-chosen', 'dtype', 'out', 'synthetic', 'prompt-tokens', 'response-tokens', 'plan'],
};
const FLAG_OPTIONS = {
  'bench kernels': ['json', 'quick', 'node'],
  'bench all': ['json', 'quick', 'node', 'browser'],
  'bench drift': ['json', 'quick', 'return', 'node', 'browser'],
  generate: ['json', 'node', 'browser'],
  'bench decode': ['json', 'node', 'browser'],
  'bench prefix': ['json', 'node', 'browser'],
  'bench prune': ['json'],
  'bench serve': ['json', 'node', 'browser'],
  serve: ['node', 'browser'],
  'adapters push': ['upload'],
  train: ['json', 'node', 'browser', 'stories', 'cpu', 'thumbs-from-stories', 'no-eos'],
};
/** Values taken verbatim even when they start with '-' (a prompt may). */
const FREE_VALUES = new Set(['prompt', 'messages', 'api-key']);
const ALL_VALUES = new Set(Object.values(VALUE_OPTIONS).flat());
const ALL_FLAGS = new Set(Object.values(FLAG_OPTIONS).flat());

function intValue(name, v, lo, hi = Number.MAX_SAFE_INTEGER) {
  if (!/^\d+$/.test(v) || Number(v) < lo || Number(v) > hi) throw new UsageError(`--${name} must be an integer in [${lo}, ${hi}], got '${v}'`);
  return Number(v);
}

function numValue(name, v, lo, hi, loOpen = false) {
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x) || x < lo || x > hi || (loOpen && x === lo)) throw new UsageError(`--${name} must be a number in ${loOpen ? '(' : '['}${lo}, ${hi}], got '${v}'`);
  return x;
}

function formatValue(name, v) {
  if (!WEIGHT_FORMATS.includes(v)) throw new UsageError(`--${name} must be one of ${WEIGHT_FORMATS.join(', ')}, got '${v}'`);
  return v;
}

function listValue(name, v, item) {
  const parts = v.split(',').map((s) => s.trim());
  if (parts.some((p) => p === '')) throw new UsageError(`--${name} must be a comma-separated list, got '${v}'`);
  const out = parts.map((p) => item(name, p));
  if (new Set(out).size !== out.length) throw new UsageError(`--${name} lists a value twice: '${v}'`);
  return out;
}

function messagesValue(v) {
  let m;
  try {
    m = JSON.parse(v);
  } catch (e) {
    throw new UsageError(`--messages is not valid JSON: ${e.message}`);
  }
  const ok = Array.isArray(m) && m.length > 0 && m.every((x) => x && typeof x === 'object' && typeof x.role === 'string' && (typeof x.content === 'string' || Array.isArray(x.content)));
  if (!ok) throw new UsageError('--messages must be a non-empty JSON array of {"role": string, "content": string} objects');
  return m;
}

/** argv -> positional words, flags (a Set) and option values (a Map), before any command check. */
function tokenize(argv) {
  const positional = [];
  const flags = new Set();
  const values = new Map();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') flags.add('help');
    else if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = a.slice(2, eq < 0 ? undefined : eq);
      if (ALL_FLAGS.has(name) && eq < 0) flags.add(name);
      else if (ALL_VALUES.has(name)) {
        const value = eq >= 0 ? a.slice(eq + 1) : argv[++i];
        if (value === undefined || value === '' || (!FREE_VALUES.has(name) && eq < 0 && value.startsWith('-'))) {
          throw new UsageError(name === 'out' ? '--out needs a file name' : `--${name} needs a value`);
        }
        if (values.has(name)) throw new UsageError(`--${name} is given twice`);
        values.set(name, value);
      } else throw new UsageError(`unknown option '${a}'`);
    } else if (a.startsWith('-')) throw new UsageError(`unknown option '${a}'`);
    else positional.push(a);
  }
  return { positional, flags, values };
}

/** Refuse options the command does not take (they would be silently ignored otherwise). */
function checkOptions(command, flags, values) {
  for (const f of flags) if (f !== 'help' && !FLAG_OPTIONS[command].includes(f)) throw new UsageError(`\`${command}\` does not take --${f}`);
  for (const v of values.keys()) if (!VALUE_OPTIONS[command].includes(v)) throw new UsageError(`\`${command}\` does not take --${v}`);
}

function runtime(flags) {
  if (flags.has('node') && flags.has('browser')) throw new UsageError('--node and --browser exclude each other');
  return flags.has('node') ? 'node' : 'browser';
}

function parseGenerate(flags, values) {
  const model = values.get('model');
  if (!model) throw new UsageError('`generate` needs --model (a directory, a URL or a Hugging Face repository id)');
  if (values.has('prompt') && values.has('messages')) throw new UsageError('give --prompt or --messages, not both');
  const opt = (name, parse) => (values.has(name) ? parse(values.get(name)) : undefined);
  return {
    command: 'generate',
    model,
    prompt: values.get('prompt'),
    messages: opt('messages', messagesValue),
    maxTokens: opt('max-tokens', (v) => intValue('max-tokens', v, 1)),
    temperature: opt('temperature', (v) => numValue('temperature', v, 0, 2)),
    topP: opt('top-p', (v) => numValue('top-p', v, 0, 1, true)),
    seed: opt('seed', (v) => intValue('seed', v, 0, 2 ** 32 - 1)),
    dtype: opt('dtype', (v) => formatValue('dtype', v)) ?? 'f32',
    json: flags.has('json'),
    runtime: runtime(flags),
  };
}

/** `full`, or SINKS:WINDOW (attention sinks + recent window, a request's kv_window). */
function kvWindowValue(name, v) {
  if (v === 'full') return 'full';
  const m = /^(\d+):(\d+)$/.exec(v);
  if (!m || +m[2] < 1) throw new UsageError(`--${name} takes full or SINKS:WINDOW (integers, WINDOW >= 1), e.g. full,4:60; got '${v}'`);
  return { sinks: +m[1], window: +m[2] };
}

function parseBenchDecode(flags, values) {
  const opt = (name, parse, def) => (values.has(name) ? parse(values.get(name)) : def);
  return {
    command: 'bench-decode',
    model: values.get('model') ?? 'stories260k',
    dtypes: opt('dtype', (v) => listValue('dtype', v, formatValue), [...WEIGHT_FORMATS]),
    batches: opt('batches', (v) => listValue('batches', v, (n, p) => intValue(n, p, 1, 64)), [1, 4, 8]),
    promptTokens: opt('prompt-tokens', (v) => intValue('prompt-tokens', v, 1), 16),
    tokens: opt('tokens', (v) => intValue('tokens', v, 2), 32),
    plans: opt('plan', (v) => listValue('plan', v, planValue), ['fused']),
    kvWindows: opt('kv-window', (v) => listValue('kv-window', v, kvWindowValue).map((w) => (w === 'full' ? null : w)), [null]),
    json: flags.has('json'),
    out: values.get('out'),
    runtime: runtime(flags),
  };
}

export const POLICIES = ['mace', 'inference-only', 'periodic', 'sync'];
export const SERVE_MODELS = ['stories260k', 'stories15m', 'smollm2-135m'];
/** Scheduler ablations of bench serve (bench/serve/ablation.ts ABLATIONS; kept equal by a test). */
export const SERVE_ABLATIONS = ['no-loss-priority', 'no-best-fit', 'no-aging', 'layer-units', 'no-decode-stretch'];

function parseBenchServe(flags, values) {
  const opt = (name, parse, def) => (values.has(name) ? parse(values.get(name)) : def);
  const policyValue = (name, v) => {
    if (!POLICIES.includes(v)) throw new UsageError(`--${name} takes ${POLICIES.join(', ')}, got '${v}'`);
    return v;
  };
  const model = (values.get('model') ?? 'stories260k').toLowerCase();
  if (!SERVE_MODELS.includes(model)) throw new UsageError(`--model takes ${SERVE_MODELS.join(', ')}, got '${values.get('model')}'`);
  const rangeValue = (name, v) => {
    const m = /^(\d+)-(\d+)$/.exec(v);
    if (!m || +m[1] < 1 || +m[2] < +m[1]) throw new UsageError(`--${name} takes MIN-MAX token counts (1 <= MIN <= MAX), got '${v}'`);
    return { min: +m[1], max: +m[2] };
  };
  if (values.has('trace')) for (const o of ['rates', 'duration', 'load', 'seed', 'prompt-tokens', 'answer-tokens']) if (values.has(o)) throw new UsageError(`--${o} shapes a generated trace; it does not apply with --trace`);
  return {
    command: 'bench-serve',
    policies: opt('policy', (v) => listValue('policy', v, (n, p) => policyValue(n, p)), [...POLICIES]),
    trace: values.get('trace'),
    rates: opt('rates', (v) => listValue('rates', v, (n, p) => numValue(n, p, 0, 1)), [0.3]),
    model,
    dtype: opt('dtype', (v) => formatValue('dtype', v), 'f32'),
    duration: opt('duration', (v) => numValue('duration', v, 0, 3600, true), 60),
    load: opt('load', (v) => numValue('load', v, 0, 1000, true), 0.3),
    promptTokens: opt('prompt-tokens', (v) => rangeValue('prompt-tokens', v), { min: 8, max: 24 }),
    answerTokens: opt('answer-tokens', (v) => rangeValue('answer-tokens', v), { min: 8, max: 24 }),
    horizon: opt('horizon', (v) => numValue('horizon', v, 1, 100), 2),
    seed: opt('seed', (v) => intValue('seed', v, 0, 2 ** 32 - 1), 1),
    budgetMultiple: opt('budget-multiple', (v) => numValue('budget-multiple', v, 0, 1000, true), 1.5),
    rank: opt('rank', (v) => intValue('rank', v, 1, 256), 8),
    ablations: opt('ablate', (v) => listValue('ablate', v, (n, a) => {
      if (!SERVE_ABLATIONS.includes(a)) throw new UsageError(`--${n} takes a comma list of ${SERVE_ABLATIONS.join(', ')}, got '${a}'`);
      return a;
    }), []),
    maxSeqs: opt('max-seqs', (v) => intValue('max-seqs', v, 1, 64), 8),
    records: values.get('records'),
    unloaded: opt('unloaded', (v) => {
      const m = /^([0-9.]+),([0-9.]+)$/.exec(v);
      if (!m || !(+m[1] > 0) || !(+m[2] > 0)) throw new UsageError(`--unloaded takes TTFT,TBT in ms (two numbers > 0, e.g. 33.7,6.9), got '${v}'`);
      return { ttftMs: +m[1], tbtMs: +m[2] };
    }, undefined),
    json: flags.has('json'),
    out: values.get('out'),
    runtime: runtime(flags),
  };
}

function parseBenchPrefix(flags, values) {
  const opt = (name, parse, def) => (values.has(name) ? parse(values.get(name)) : def);
  const count = (name, def, hi = 4096) => opt(name, (v) => intValue(name, v, 1, hi), def);
  const model = (values.get('model') ?? 'stories260k').toLowerCase();
  if (!SERVE_MODELS.includes(model)) throw new UsageError(`--model takes ${SERVE_MODELS.join(', ')}, got '${values.get('model')}'`);
  return {
    command: 'bench-prefix',
    model,
    dtype: opt('dtype', (v) => formatValue('dtype', v), 'f32'),
    conversations: count('conversations', 4, 64),
    turns: count('turns', 4, 256),
    userTokens: count('user-tokens', 48),
    replyTokens: count('reply-tokens', 24),
    systemTokens: count('system-tokens', 160),
    requests: count('requests', 16),
    clients: count('clients', 4, 64),
    repeats: count('repeats', 4, 100),
    seed: opt('seed', (v) => intValue('seed', v, 0, 2 ** 32 - 1), 1),
    json: flags.has('json'),
    out: values.get('out'),
    runtime: runtime(flags),
  };
}

function parseBenchPrune(flags, values) {
  const opt = (name, parse, def) => (values.has(name) ? parse(values.get(name)) : def);
  return {
    command: 'bench-prune',
    model: values.get('model') ?? 'public/models/stories260K',
    prompts: opt('prompts', (v) => intValue('prompts', v, 1, 64), 8),
    tokens: opt('tokens', (v) => intValue('tokens', v, 1, 1_000_000), 480),
    fractions: opt('fractions', (v) => listValue('fractions', v, (n, p) => numValue(n, p, 0, 1, true)), [0.25, 0.5, 0.75]),
    sinks: opt('sinks', (v) => intValue('sinks', v, 0, 1_000_000), 4),
    json: flags.has('json'),
    out: values.get('out'),
  };
}

/** `bench drift` presets (bench/drift/run.ts DRIFT_PRESETS; kept equal by a test). */
export const DRIFT_PRESETS = {
  full: { durationS: 360, evalEveryS: 20, ratePerS: 1, seedsPerPrompt: 8, pairSamplesPerPrompt: 16 },
  quick: { durationS: 72, evalEveryS: 12, ratePerS: 1, seedsPerPrompt: 2, pairSamplesPerPrompt: 8 },
};

function parseBenchDrift(flags, values) {
  const opt = (name, parse, def) => (values.has(name) ? parse(values.get(name)) : def);
  const preset = DRIFT_PRESETS[flags.has('quick') ? 'quick' : 'full'];
  const policies = opt('policy', (v) => listValue('policy', v, (n, p) => {
    if (!POLICIES.includes(p)) throw new UsageError(`--${n} takes ${POLICIES.join(', ')}, got '${p}'`);
    return p;
  }), [...POLICIES]);
  return {
    command: 'bench-drift',
    model: values.get('model') ?? null, // null: the bundled public/models/stories260K
    options: {
      policies,
      durationS: opt('duration', (v) => numValue('duration', v, 0, 36000, true), preset.durationS),
      ratePerS: opt('load', (v) => numValue('load', v, 0, 1000, true), preset.ratePerS),
      answerTokens: opt('answer-tokens', (v) => intValue('answer-tokens', v, 1, 256), 24),
      evalEveryS: opt('eval-every', (v) => numValue('eval-every', v, 0, 3600, true), preset.evalEveryS),
      feedbackRate: opt('feedback-rate', (v) => numValue('feedback-rate', v, 0, 1), 0.6),
      noise: opt('noise', (v) => numValue('noise', v, 0, 0.5), 0.05),
      maxRegenerations: opt('regenerations', (v) => intValue('regenerations', v, 0, 16), 2),
      anchorEvery: opt('anchor-every', (v) => intValue('anchor-every', v, 0, 1000), 5),
      pairsPerRating: opt('pairs-per-rating', (v) => intValue('pairs-per-rating', v, 1, 1000), 2),
      maxAnchors: opt('anchors', (v) => intValue('anchors', v, 8, 4096), 16),
      returnToFirst: flags.has('return'),
      seedsPerPrompt: opt('seeds', (v) => intValue('seeds', v, 1, 256), preset.seedsPerPrompt),
      pairSamplesPerPrompt: opt('pair-samples', (v) => intValue('pair-samples', v, 2, 1024), preset.pairSamplesPerPrompt),
      budgetTbtMultiple: opt('budget-multiple', (v) => numValue('budget-multiple', v, 0, 1000, true), 1.5),
      maxSeqs: opt('max-seqs', (v) => intValue('max-seqs', v, 1, 64), 4),
      rank: opt('rank', (v) => intValue('rank', v, 1, 256), 8),
      lr: opt('lr', (v) => numValue('lr', v, 0, 1, true), 2e-3),
      beta: opt('beta', (v) => numValue('beta', v, 0, 100, true), 0.5),
      epochs: opt('epochs', (v) => intValue('epochs', v, 1, 100), 1),
      seed: opt('seed', (v) => intValue('seed', v, 0, 2 ** 31 - 1), 1),
    },
    plot: values.get('plot'),
    out: values.get('out'),
    json: flags.has('json'),
    runtime: runtime(flags),
  };
}

/** Options `train --synthetic` (the training-step benchmark) takes besides the runtime and --json. */
const SYNTHETIC_TRAIN_OPTIONS = ['synthetic', 'dtype', 'steps', 'rank', 'seed', 'prompt-tokens', 'response-tokens', 'plan'];

function parseTrainStepBench(flags, values) {
  const id = values.get('synthetic').toLowerCase();
  if (!SYNTHETIC_MODELS.includes(id)) throw new UsageError(`--synthetic takes ${SYNTHETIC_MODELS.join(', ')}, got '${values.get('synthetic')}'`);
  for (const v of values.keys()) if (!SYNTHETIC_TRAIN_OPTIONS.includes(v)) throw new UsageError(`\`train --synthetic\` does not take --${v}`);
  for (const f of ['stories', 'cpu', 'thumbs-from-stories']) if (flags.has(f)) throw new UsageError(`\`train --synthetic\` does not take --${f}`);
  const opt = (name, parse) => (values.has(name) ? parse(values.get(name)) : undefined);
  return {
    command: 'train-step-bench',
    synthetic: id,
    dtype: opt('dtype', (v) => formatValue('dtype', v)) ?? 'f32',
    steps: opt('steps', (v) => intValue('steps', v, 1, 100)) ?? 1,
    rank: opt('rank', (v) => intValue('rank', v, 1, 256)) ?? 8,
    seed: opt('seed', (v) => intValue('seed', v, 0, 2 ** 20)) ?? 1,
    promptTokens: opt('prompt-tokens', (v) => intValue('prompt-tokens', v, 1, 4096)) ?? 48,
    responseTokens: opt('response-tokens', (v) => intValue('response-tokens', v, 1, 4096)) ?? 48,
    plans: opt('plan', (v) => listValue('plan', v, planValue)) ?? ['fused'],
    json: flags.has('json'),
    runtime: runtime(flags),
  };
}

function parseTrain(flags, values) {
  if (values.has('synthetic')) return parseTrainStepBench(flags, values);
  for (const o of ['prompt-tokens', 'response-tokens', 'plan']) if (values.has(o)) throw new UsageError(`--${o} only applies with --synthetic`);
  const model = values.get('model');
  if (!model) throw new UsageError('`train` needs --model (a directory, a URL or a Hugging Face repository id)');
  const stories = flags.has('stories');
  const fromStories = flags.has('thumbs-from-stories');
  if ([stories, values.has('pairs'), values.has('thumbs')].filter(Boolean).length !== 1) throw new UsageError('`train` needs exactly one of --pairs FILE and --stories (or, for KTO on unpaired thumbs, --thumbs FILE)');
  if (fromStories && !stories) throw new UsageError('--thumbs-from-stories only applies with --stories');
  const kto = values.has('thumbs') || fromStories;
  if (kto && values.has('eval')) throw new UsageError('KTO (--thumbs, --thumbs-from-stories) takes held-out thumbs with --eval-thumbs, not --eval');
  if (!kto) for (const o of ['eval-thumbs', 'desirable-weight', 'undesirable-weight', 'eval-every']) if (values.has(o)) throw new UsageError(`--${o} only applies with --thumbs or --thumbs-from-stories`);
  if (flags.has('no-eos') && !values.has('thumbs')) throw new UsageError('--no-eos only applies with --thumbs');
  if (values.has('save-thumbs') && !fromStories) throw new UsageError('--save-thumbs only applies with --thumbs-from-stories');
  if (fromStories && values.has('rejected-per-chosen')) throw new UsageError('--rejected-per-chosen does not apply with --thumbs-from-stories (nothing is paired)');
  if (values.has('steps') && values.has('epochs')) throw new UsageError('give --steps or --epochs, not both');
  for (const o of ['samples', 'tokens', 'rejected-per-chosen']) if (!stories && values.has(o)) throw new UsageError(`--${o} only applies with --stories`);
  const cpu = flags.has('cpu');
  if (cpu && (flags.has('node') || flags.has('browser'))) throw new UsageError('--cpu excludes --node and --browser');
  if (cpu && values.has('dtype') && values.get('dtype') !== 'f32') throw new UsageError('--cpu trains on f32 weights only');
  const opt = (name, parse) => (values.has(name) ? parse(values.get(name)) : undefined);
  return {
    command: 'train',
    model,
    pairs: values.get('pairs'),
    eval: values.get('eval'),
    thumbs: values.get('thumbs'),
    evalThumbs: values.get('eval-thumbs'),
    thumbsFromStories: fromStories,
    desirableWeight: opt('desirable-weight', (v) => numValue('desirable-weight', v, 0, 1000)),
    undesirableWeight: opt('undesirable-weight', (v) => numValue('undesirable-weight', v, 0, 1000)),
    evalEvery: opt('eval-every', (v) => intValue('eval-every', v, 1)),
    saveThumbs: values.get('save-thumbs'),
    noEos: flags.has('no-eos'),
    stories,
    steps: opt('steps', (v) => intValue('steps', v, 1)),
    epochs: opt('epochs', (v) => intValue('epochs', v, 1)),
    batch: opt('batch', (v) => intValue('batch', v, 1, 1024)),
    lr: opt('lr', (v) => numValue('lr', v, 0, 1, true)),
    warmup: opt('warmup', (v) => intValue('warmup', v, 0)),
    beta: opt('beta', (v) => numValue('beta', v, 0, 1000, true)),
    rank: opt('rank', (v) => intValue('rank', v, 1, 256)),
    alpha: opt('alpha', (v) => numValue('alpha', v, 0, 1e6, true)),
    seed: opt('seed', (v) => intValue('seed', v, 0, 2 ** 31 - 1)),
    maxLength: opt('max-length', (v) => intValue('max-length', v, 2)),
    samples: opt('samples', (v) => intValue('samples', v, 2, 1024)),
    tokens: opt('tokens', (v) => intValue('tokens', v, 1, 4096)),
    rejectedPerChosen: opt('rejected-per-chosen', (v) => intValue('rejected-per-chosen', v, 1, 1024)),
    dtype: opt('dtype', (v) => formatValue('dtype', v)) ?? 'f32',
    out: values.get('out'),
    json: flags.has('json'),
    runtime: cpu ? 'cpu' : runtime(flags),
  };
}

function parseServe(flags, values) {
  const opt = (name, parse, def) => (values.has(name) ? parse(values.get(name)) : def);
  const model = values.get('model');
  if (!model) throw new UsageError('`serve` needs --model (a directory, a URL or a Hugging Face repository id)');
  const text = (name) => {
    const v = values.get(name);
    if (v !== undefined && v.trim() === '') throw new UsageError(`--${name} must not be blank`);
    return v;
  };
  return {
    command: 'serve',
    model,
    dtype: opt('dtype', (v) => formatValue('dtype', v), 'f32'),
    host: values.get('host') ?? '127.0.0.1',
    port: opt('port', (v) => intValue('port', v, 0, 65535), 8000),
    servedModelName: text('served-model-name'),
    apiKey: text('api-key'),
    maxConcurrent: opt('max-concurrent', (v) => intValue('max-concurrent', v, 1, 4096), 32),
    maxTokensLimit: opt('max-tokens-limit', (v) => intValue('max-tokens-limit', v, 1, 1_000_000), 2048),
    maxBodyBytes: opt('max-body-bytes', (v) => intValue('max-body-bytes', v, 1024, 2 ** 31), 2 * 2 ** 20),
    maxAdapterBytes: opt('max-adapter-bytes', (v) => intValue('max-adapter-bytes', v, 1024, 2 ** 31), 256 * 2 ** 20),
    maxSeqs: opt('max-seqs', (v) => intValue('max-seqs', v, 1, 64), 8),
    maxLoras: opt('max-loras', (v) => intValue('max-loras', v, 0, 64), 4),
    maxLoraRank: opt('max-lora-rank', (v) => intValue('max-lora-rank', v, 1, 256), 16),
    allowOrigin: text('allow-origin'),
    loraModules: opt('lora-modules', (v) => listValue('lora-modules', v, (n, item) => {
      const m = /^([^=]+)=(.+)$/.exec(item);
      if (!m) throw new UsageError(`--${n} takes NAME=DIR items, comma-separated, got '${item}'`);
      return { name: m[1], path: m[2] };
    }), []),
    runtime: runtime(flags),
  };
}

function parseAdaptersPush(flags, values) {
  for (const o of ['adapter', 'server', 'name']) if (!values.has(o)) throw new UsageError(`\`adapters push\` needs --${o}`);
  const server = values.get('server');
  if (!/^https?:\/\/[^/\s]+/i.test(server)) throw new UsageError(`--server must be an http(s) URL such as http://127.0.0.1:8000, got '${server}'`);
  return { command: 'adapters-push', adapter: values.get('adapter'), server, name: values.get('name'), apiKey: values.get('api-key'), upload: flags.has('upload') };
}

/**
 * argv (without node and the script) -> { command: 'help' }, { command: 'bench-kernels', json,
 * quick, node, out }, { command: 'generate', ... }, { command: 'bench-decode', ... } or
 * { command: 'train', ... }.
 * Throws UsageError on anything unknown or malformed.
 */
export function parseArgs(argv) {
  const { positional, flags, values } = tokenize(argv);
  if (flags.has('help') || positional.length === 0 || (positional.length === 1 && positional[0] === 'help')) return { command: 'help' };
  const command = positional.join(' ');
  if (!(command in VALUE_OPTIONS)) throw new UsageError(`unknown command '${command}'`);
  checkOptions(command, flags, values);
  if (command === 'generate') return parseGenerate(flags, values);
  if (command === 'bench decode') return parseBenchDecode(flags, values);
  if (command === 'bench serve') return parseBenchServe(flags, values);
  if (command === 'bench prefix') return parseBenchPrefix(flags, values);
  if (command === 'bench prune') return parseBenchPrune(flags, values);
  if (command === 'bench drift') return parseBenchDrift(flags, values);
  if (command === 'bench all') {
    if (!values.has('out')) throw new UsageError('`bench all` needs --out DIR (one JSON and markdown file per benchmark, and all.json)');
    return { command: 'bench-all', out: values.get('out'), quick: flags.has('quick'), json: flags.has('json'), runtime: runtime(flags) };
  }
  if (command === 'train') return parseTrain(flags, values);
  if (command === 'serve') return parseServe(flags, values);
  if (command === 'adapters push') return parseAdaptersPush(flags, values);
  return { command: 'bench-kernels', json: flags.has('json'), quick: flags.has('quick'), node: flags.has('node'), out: values.get('out') };
}
