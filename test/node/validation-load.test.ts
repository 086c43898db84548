/**
 * Validation at load (issue 15), the GPU-free half: config.json against the checkpoint's tensor
 * names and against the tokenizer (loadModelFiles on in-memory fixture folders), tokenizer.json
 * structure, chat templates rendered once at load, and the finite-value scan of streamed bytes.
 * Every refusal is a typed error whose message names the file and the field or tensor; the GPU
 * half (NaN weights refused mid-upload, nothing left allocated) is test/browser/loader.test.ts.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { f32ToF16Bits } from '../../src/gpu/f16.ts';
import { ConfigError, MAX_POSITION_EMBEDDINGS, parseModelConfig } from '../../src/model/config.ts';
import { loadModelFiles } from '../../src/model/loader.ts';
import { headerLength, parseHeader, type TensorInfo } from '../../src/model/safetensors.ts';
import { sourceFromMemory } from '../../src/model/source.ts';
import { checkCheckpoint } from '../../src/model/tensors.ts';
import { ChatTemplateError, ChatTemplateLoadError, TextTokenizer, TokenizerLoadError } from '../../src/model/tokenizer.ts';
import { FiniteScan, ModelConsistencyError, type FloatDtype } from '../../src/model/validate.ts';
import { makeFixture, withFiles, type TokenizerFiles } from '../util/fixtures.ts';

const dir = new URL('../../public/models/stories260K/', import.meta.url);
const read = (f: string) => readFileSync(new URL(f, dir), 'utf8');
const tok: TokenizerFiles = { tokenizerJson: read('tokenizer.json'), tokenizerConfig: read('tokenizer_config.json') };
const fixture = makeFixture({ arch: 'llama', dtype: 'F32' }, tok);
const stories = JSON.parse(read('config.json')) as Record<string, unknown>;

/** The error `fn` throws (sync or async), checked to be an instance of `type`. */
async function caught<E extends Error>(type: new (...a: never[]) => E, fn: () => unknown): Promise<E> {
  let err: unknown = null;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a throw').toBeInstanceOf(type);
  expect(typeof (err as { code?: unknown }).code).toBe('string');
  return err as E;
}

const filesLoad = (changes: Record<string, string | undefined>) => loadModelFiles(sourceFromMemory(withFiles(fixture, changes)));
const configWith = (extra: Record<string, unknown>) => JSON.stringify({ ...fixture.rawConfig, ...extra });

describe('config.json on its own', () => {
  it('refuses a model_type that disagrees with architectures, naming both', async () => {
    const e = await caught(ConfigError, () => parseModelConfig({ ...stories, model_type: 'gpt2' }));
    expect(e.field).toBe('model_type');
    expect(e.message).toBe("config.json: model_type is \"gpt2\", but architectures[0] is 'LlamaForCausalLM', whose model_type is 'llama'; the two must agree (a config with an unknown model_type is refused, not guessed)");
    await caught(ConfigError, () => parseModelConfig({ ...stories, architectures: ['MistralForCausalLM'], model_type: 'llama' }));
    await caught(ConfigError, () => parseModelConfig({ ...stories, model_type: 7 }));
    // Agreeing or absent model_type is fine.
    expect(parseModelConfig({ ...stories, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2' }).architecture).toBe('Qwen2ForCausalLM');
    const { model_type: _, ...untyped } = stories;
    expect(parseModelConfig(untyped).architecture).toBe('LlamaForCausalLM');
  });

  it('refuses absurd max_position_embeddings, naming config.json and the field', async () => {
    for (const bad of [MAX_POSITION_EMBEDDINGS + 1, 1e30, 0, -4, 1.5, '4096', Number.NaN, Infinity]) {
      const e = await caught(ConfigError, () => parseModelConfig({ ...stories, max_position_embeddings: bad }));
      expect(e.field).toBe('max_position_embeddings');
      expect(e.message).toMatch(/^config\.json: max_position_embeddings /);
    }
    expect(parseModelConfig({ ...stories, max_position_embeddings: MAX_POSITION_EMBEDDINGS }).maxPositionEmbeddings).toBe(2 ** 24);
  });

  it('keeps pad_token_id and _name_or_path', () => {
    const c = parseModelConfig({ ...stories, pad_token_id: 0, _name_or_path: 'karpathy/stories260K' });
    expect(c.padTokenId).toBe(0);
    expect(c.names).toEqual(['karpathy/stories260K']);
  });
});

describe('config.json against the checkpoint', () => {
  const bytes = new Uint8Array(readFileSync(new URL('model.safetensors', dir)));
  const header = parseHeader(bytes.subarray(8, 8 + headerLength(bytes, 'm')), 'model.safetensors');
  const found = () => new Map<string, TensorInfo>(header.tensors.map((t) => [t.name, { ...t, shape: [...t.shape] }]));
  const config = parseModelConfig(stories);

  it('a checkpoint with more layers than num_hidden_layers is refused (they would be dropped silently)', async () => {
    const e = await caught(ModelConsistencyError, () => checkCheckpoint({ ...config, nLayers: 4 }, found()));
    expect(e).toMatchObject({ code: 'inconsistent-model', file: 'config.json', field: 'num_hidden_layers' });
    expect(e.message).toMatch(/^config\.json: num_hidden_layers = 4, but model\.safetensors holds 5 layers \(tensor 'model\.layers\.4\..+'\)/);
  });

  it('fewer layers than the config says: one error naming the count, even for an absurd count (no billion-entry tensor list)', async () => {
    const e = await caught(ModelConsistencyError, () => checkCheckpoint({ ...config, nLayers: 6 }, found()));
    expect(e.message).toBe("config.json: num_hidden_layers = 6, but model.safetensors holds only 5 layers (no tensor 'model.layers.5.*')");
    const huge = await caught(ModelConsistencyError, () => checkCheckpoint({ ...config, nLayers: 1e9 }, found()));
    expect(huge.field).toBe('num_hidden_layers');
  });

  it('embedding rows that disagree with vocab_size name vocab_size and the tensor', async () => {
    const e = await caught(ModelConsistencyError, () => checkCheckpoint({ ...config, vocabSize: 600 }, found()));
    expect(e.message).toBe("config.json: vocab_size = 600, but tensor 'model.embed_tokens.weight' in model.safetensors has 512 rows (one per token id)");
    const untied = found();
    untied.set('lm_head.weight', { ...untied.get('model.embed_tokens.weight')!, name: 'lm_head.weight', shape: [500, 64] });
    const head = await caught(ModelConsistencyError, () => checkCheckpoint({ ...config, tieWordEmbeddings: false }, untied));
    expect(head.message).toMatch(/vocab_size = 512, but tensor 'lm_head\.weight' in model\.safetensors has 500 rows/);
  });
});

describe('config.json against the tokenizer (loadModelFiles)', () => {
  it('the fixture folder loads: 512 tokens for vocab_size 512', async () => {
    const { tokenizer, config } = await filesLoad({});
    expect(tokenizer.vocabSize).toBe(512);
    expect(config.vocabSize).toBe(512);
  });

  it('a tokenizer larger than vocab_size is refused, naming tokenizer.json, the field and the id', async () => {
    const e = await caught(ModelConsistencyError, () => filesLoad({ 'config.json': configWith({ vocab_size: 500 }) }));
    expect(e).toMatchObject({ file: 'tokenizer.json', field: 'model.vocab' });
    expect(e.message).toMatch(/^tokenizer\.json: model\.vocab holds token id 511 \(".*"\), but config\.json vocab_size = 500/);
    // An added token past the vocabulary is named by its own field.
    const tj = JSON.parse(tok.tokenizerJson);
    tj.added_tokens.push({ id: 530, content: '<extra>', special: true, single_word: false, lstrip: false, rstrip: false, normalized: false });
    const added = await caught(ModelConsistencyError, () => filesLoad({ 'tokenizer.json': JSON.stringify(tj) }));
    expect(added.message).toMatch(/^tokenizer\.json: added_tokens\[3\] holds token id 530 \("<extra>"\), but config\.json vocab_size = 512/);
  });

  it('a tokenizer smaller than vocab_size (a padded embedding) is accepted while every special id is a token', async () => {
    const { tokenizer } = await filesLoad({ 'config.json': configWith({ vocab_size: 640 }) });
    expect(tokenizer.vocabSize).toBe(512);
    const e = await caught(ModelConsistencyError, () => filesLoad({ 'config.json': configWith({ vocab_size: 640, eos_token_id: 600 }) }));
    expect(e.message).toBe('config.json: eos_token_id = 600 is not a token of tokenizer.json (its ids run 0..511)');
  });

  it('special ids outside the vocabulary name their file and field', async () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ 'config.json': configWith({ eos_token_id: 700 }) }, /^config\.json: eos_token_id = 700 is outside the vocabulary: config\.json vocab_size = 512 \(ids 0\.\.511\)$/],
      [{ 'config.json': configWith({ eos_token_id: [2, 512] }) }, /^config\.json: eos_token_id\[1\] = 512 is outside the vocabulary/],
      [{ 'config.json': configWith({ bos_token_id: 9999 }) }, /^config\.json: bos_token_id = 9999 is outside/],
      [{ 'config.json': configWith({ pad_token_id: 512 }) }, /^config\.json: pad_token_id = 512 is outside/],
      [{ 'generation_config.json': JSON.stringify({ eos_token_id: [2, 1000] }) }, /^generation_config\.json: eos_token_id\[1\] = 1000 is outside/],
      [{ 'generation_config.json': JSON.stringify({ pad_token_id: 4096 }) }, /^generation_config\.json: pad_token_id = 4096 is outside/],
    ];
    for (const [changes, message] of cases) {
      const e = await caught(ModelConsistencyError, () => filesLoad(changes));
      expect(e.message).toMatch(message);
    }
    const named = await caught(TokenizerLoadError, () => filesLoad({ 'tokenizer_config.json': JSON.stringify({ ...JSON.parse(tok.tokenizerConfig), eos_token: '</nope>' }) }));
    expect(named).toMatchObject({ file: 'tokenizer_config.json', field: 'eos_token' });
    expect(named.message).toBe('tokenizer_config.json: eos_token "</nope>" is not a token of tokenizer.json');
  });

  it('an unknown model_type under a known architecture is refused through the loader too', async () => {
    const e = await caught(ConfigError, () => filesLoad({ 'config.json': configWith({ model_type: 'mamba' }) }));
    expect(e.message).toMatch(/^config\.json: model_type is "mamba", but architectures\[0\] is 'LlamaForCausalLM'/);
  });
});

describe('tokenizer.json structure: typed errors, never a raw TypeError', () => {
  const cases: [string, string, RegExp][] = [
    ['null', '(file)', /^tokenizer\.json: must hold a JSON object, got null$/],
    ['[]', '(file)', /^tokenizer\.json: must hold a JSON object, got a list$/],
    ['42', '(file)', /^tokenizer\.json: must hold a JSON object, got number$/],
    ['{"model": null}', 'model', /^tokenizer\.json: has no "model" object$/],
    ['{"model": {"type": "BPE", "merges": []}}', 'model.vocab', /^tokenizer\.json: model\.vocab is missing: the tokenizer has no vocabulary$/],
    ['{"model": {"type": "BPE", "vocab": 5}}', 'model.vocab', /^tokenizer\.json: model\.vocab must be an object of token ids/],
    ['{"model": {"type": "BPE", "vocab": {}}}', 'model.vocab', /^tokenizer\.json: model\.vocab is empty/],
    ['{"model": {"type": "BPE", "vocab": {"a": -1}}}', 'model.vocab', /^tokenizer\.json: model\.vocab\["a"\] must be a token id/],
    ['{"model": {"type": "Unigram", "vocab": [["a", 0], "b"]}}', 'model.vocab[1]', /^tokenizer\.json: model\.vocab\[1\] must be a \[token, score\] pair/],
    ['{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": 3}}', 'model.merges', /^tokenizer\.json: model\.merges must be a list/],
    ['{"model": {"type": "BPE", "vocab": {"a": 0}}, "added_tokens": [{"id": "x"}]}', 'added_tokens[0]', /^tokenizer\.json: added_tokens\[0\] must be \{id: integer >= 0, content: string\}$/],
  ];
  for (const [text, field, message] of cases) {
    it(`${text.slice(0, 60)}`, async () => {
      const e = await caught(TokenizerLoadError, () => TextTokenizer.load(text, tok.tokenizerConfig));
      expect(e.field).toBe(field);
      expect(e.message).toMatch(message);
    });
  }

  it('tokenizer_config.json that is null is refused naming it; through the loader too', async () => {
    const e = await caught(TokenizerLoadError, () => TextTokenizer.load(tok.tokenizerJson, 'null'));
    expect(e.message).toBe('tokenizer_config.json: must hold a JSON object, got null');
    await caught(TokenizerLoadError, () => filesLoad({ 'tokenizer.json': 'null' }));
  });
});

describe('chat templates rendered once at load', () => {
  const withTemplate = (chat_template: unknown) => ({ ...JSON.parse(tok.tokenizerConfig), chat_template });
  const good = "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}";

  it('a template that renders is unaffected', () => {
    const t = TextTokenizer.load(tok.tokenizerJson, withTemplate(good));
    expect(t.applyChatTemplate([{ role: 'user', content: 'Hi' }])).toBe('<s>[user] Hi\n[assistant] ');
    expect(t.chatTemplateSource).toEqual({ file: 'tokenizer_config.json', name: 'default' });
  });

  it('a syntax error is reported at load with the file, the template name, the jinja message and the line', async () => {
    const broken = "{{ bos_token }}\n{% for m in messages %}\n{{ m.content ) }}\n{% endfor %}";
    const e = await caught(ChatTemplateLoadError, () => TextTokenizer.load(tok.tokenizerJson, withTemplate(broken)));
    expect(e).toMatchObject({ code: 'bad-chat-template', file: 'tokenizer_config.json', template: 'default', line: 3 });
    expect(e.message.startsWith("tokenizer_config.json: chat template 'default' (line 3) does not parse: ")).toBe(true);
    expect(e.message.endsWith(e.jinjaMessage)).toBe(true);
    expect(e.jinjaMessage.length).toBeGreaterThan(0);
  });

  it('a template that fails when rendered is reported at load, naming the named template', async () => {
    const failing = '{% for m in messages %}{{ m.content.upper(1, 2, 3).nope() }}{% endfor %}';
    const e = await caught(ChatTemplateLoadError, () => TextTokenizer.load(tok.tokenizerJson, withTemplate([{ name: 'tool_use', template: good }, { name: 'default', template: failing }])));
    expect(e).toMatchObject({ file: 'tokenizer_config.json', template: 'default', line: null });
    expect(e.message).toMatch(/^tokenizer_config\.json: chat template 'default' fails on a probe conversation \(system, user, assistant, user, add_generation_prompt\): .+/);
    // Without a 'default' entry the first one is used.
    expect(TextTokenizer.load(tok.tokenizerJson, withTemplate([{ name: 'tool_use', template: good }])).chatTemplateSource).toEqual({ file: 'tokenizer_config.json', name: 'tool_use' });
    await caught(TokenizerLoadError, () => TextTokenizer.load(tok.tokenizerJson, withTemplate(42)));
    await caught(TokenizerLoadError, () => TextTokenizer.load(tok.tokenizerJson, withTemplate([{ name: 'x' }])));
  });

  it('a template that refuses a system message on purpose (Mistral v0.1 style) loads; the refusal comes per request', async () => {
    const alternate = "{% for m in messages %}{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{{ m.role }}: {{ m.content }}\n{% endfor %}";
    const t = TextTokenizer.load(tok.tokenizerJson, withTemplate(alternate));
    expect(t.applyChatTemplate([{ role: 'user', content: 'Hi' }])).toBe('user: Hi\n');
    const e = await caught(ChatTemplateError, () => t.applyChatTemplate([{ role: 'system', content: 'S' }, { role: 'user', content: 'Hi' }]));
    expect(e.message).toBe("chat template: Conversation roles must alternate user/assistant/user/assistant/... (tokenizer_config.json, template 'default')");
    // A template refusing every conversation is broken.
    const never = await caught(ChatTemplateLoadError, () => TextTokenizer.load(tok.tokenizerJson, withTemplate("{{ raise_exception('no chat here') }}")));
    expect(never.message).toBe("tokenizer_config.json: chat template 'default' refuses every probe conversation, even one user message (raise_exception): no chat here");
  });

  it('a template whose output does not follow its messages is refused at load', async () => {
    const t0 = performance.now();
    const e = await caught(ChatTemplateLoadError, () => TextTokenizer.load(tok.tokenizerJson, withTemplate("{% for i in range(200000) %}xxxxxxxxxx{% endfor %}{% for m in messages %}{{ m['content'] }}{% endfor %}")));
    console.log(`template expanding a probe to 2 MB refused at load in ${(performance.now() - t0).toFixed(0)} ms`);
    expect(e.message).toMatch(/^tokenizer_config\.json: chat template 'default' expands a probe conversation \(system, user, assistant, user\) past 65536 characters, so its output does not follow its messages: 2000\d+ characters from \d+ characters of messages$/);
    // One that repeats each message 10 000 times is refused the same way; a long fixed preamble (8 KiB) is fine.
    await caught(ChatTemplateLoadError, () => TextTokenizer.load(tok.tokenizerJson, withTemplate("{% for m in messages %}{% for i in range(10000) %}{{ m['content'] }}{% endfor %}{% endfor %}")));
    const preamble = TextTokenizer.load(tok.tokenizerJson, withTemplate(`${'x'.repeat(8192)}{% for m in messages %}{{ m['content'] }}{% endfor %}`));
    expect(preamble.hasChatTemplate).toBe(true);
  }, 30_000); // renders 2 MB of template output three times: seconds on a loaded 2-core machine

  it('chat_template.jinja replaces tokenizer_config.json and is named in errors', async () => {
    const { tokenizer } = await loadModelFiles(sourceFromMemory(withFiles(fixture, { 'chat_template.jinja': good })));
    expect(tokenizer.chatTemplateSource).toEqual({ file: 'chat_template.jinja', name: 'default' });
    const e = await caught(ChatTemplateLoadError, () => loadModelFiles(sourceFromMemory(withFiles(fixture, { 'chat_template.jinja': '{% if %}' }))));
    expect(e.file).toBe('chat_template.jinja');
    expect(e.message).toMatch(/^chat_template\.jinja: chat template 'default' \(line 1\) does not parse: /);
  });
});

describe('FiniteScan: NaN/Inf in streamed little-endian bytes', () => {
  const bf16 = (v: number) => new Uint32Array(Float32Array.of(v).buffer)[0] >>> 16; // exact for the values below
  const encode = (values: number[], dtype: FloatDtype): Uint8Array => {
    if (dtype === 'F32') return new Uint8Array(Float32Array.from(values).buffer);
    return new Uint8Array(Uint16Array.from(values, (v) => (dtype === 'F16' ? f32ToF16Bits(v) : bf16(v))).buffer);
  };
  /** Feed `bytes` in pieces of 1..7 bytes (elements straddle pieces); the first hit or null. */
  const scan = (bytes: Uint8Array, dtype: FloatDtype, seed: number) => {
    const s = new FiniteScan(dtype);
    let at = 0;
    let k = seed;
    while (at < bytes.length) {
      k = (k * 1103515245 + 12345) >>> 0;
      const n = 1 + (k % 7);
      const hit = s.push(bytes.subarray(at, at + n));
      if (hit) return hit;
      at += n;
    }
    return null;
  };
  // Finite extremes must pass: the largest finite values (exponent all ones but one), subnormals, -0.
  const finite = { F32: [3.4028234663852886e38, -3.4028234663852886e38, 1e-45, -0, 1, 0.5], F16: [65504, -65504, 6e-8, -0, 1, 0.5], BF16: [3.3895313892515355e38, -1, 9.2e-41, -0, 2, 0.5] };
  for (const dtype of ['F32', 'F16', 'BF16'] as const) {
    it(`${dtype}: finite extremes pass, and the first NaN / Infinity / -Infinity is found at its index`, () => {
      const base = Array.from({ length: 40 }, (_, i) => finite[dtype][i % 6]);
      for (let seed = 1; seed <= 5; seed++) expect(scan(encode(base, dtype), dtype, seed)).toBeNull();
      for (const [value, at] of [[NaN, 17], [Infinity, 0], [-Infinity, 39]] as const) {
        const v = [...base];
        v[at] = value;
        if (at < 39) v[at + 1] = NaN; // a later one is not reported first
        for (let seed = 1; seed <= 5; seed++) expect(scan(encode(v, dtype), dtype, seed)).toEqual({ index: at, value: String(value) });
      }
    });
  }
});
