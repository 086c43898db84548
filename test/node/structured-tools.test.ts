import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../src/engine/errors.ts';
import { logitBiasOf, normalizeParams } from '../../src/engine/params.ts';
import { applyGrammarAndBias, chatEvents } from '../../src/engine/structured/endpoint.ts';
import { GrammarMatcher } from '../../src/engine/structured/matcher.ts';
import { responseFormatNode } from '../../src/engine/structured/response-format.ts';
import { mayBeToolCall, parseToolCalls, toolPlanOf, toolsSystemText } from '../../src/engine/structured/tools.ts';
import type { RequestEvent } from '../../src/engine/request.ts';
import { applyLogitMaskRef, packLogitRows } from '../../src/kernels/logit-mask.ts';
import { chatPromptIds } from '../../src/model/prompt.ts';
import { TextTokenizer } from '../../src/model/tokenizer.ts';

const dir = new URL('../../public/models/stories260K/', import.meta.url);
const read = (f: string) => readFileSync(new URL(f, dir), 'utf8');
const tok = TextTokenizer.load(read('tokenizer.json'), read('tokenizer_config.json'), [2]);

const WEATHER = { type: 'function' as const, function: { name: 'get_weather', description: 'Weather in a city', parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 10 } }, required: ['city'], additionalProperties: false } } };
const TIME = { type: 'function' as const, function: { name: 'get_time' } };

function paramOf(f: () => unknown): string | null {
  try {
    f();
    return null;
  } catch (e) {
    if (e instanceof InvalidRequestError) return e.param;
    throw e;
  }
}

describe('tools, tool_choice, parallel_tool_calls', () => {
  it('checks every field, naming it', () => {
    expect(paramOf(() => toolPlanOf({ tool_choice: 'required' }))).toBe('tool_choice');
    expect(paramOf(() => toolPlanOf({ tools: [] }))).toBe('tools');
    expect(paramOf(() => toolPlanOf({ tools: [{ type: 'code' }] }))).toBe('tools[0].type');
    expect(paramOf(() => toolPlanOf({ tools: [{ type: 'function', function: { name: 'a b' } }] }))).toBe('tools[0].function.name');
    expect(paramOf(() => toolPlanOf({ tools: [WEATHER, WEATHER] }))).toBe('tools[1].function.name');
    expect(paramOf(() => toolPlanOf({ tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { x: { type: 'string', format: 'date' } } } } }] }))).toBe('tools[0].function.parameters.properties.x.format');
    expect(paramOf(() => toolPlanOf({ tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'string' } } }] }))).toBe('tools[0].function.parameters');
    expect(paramOf(() => toolPlanOf({ tools: [WEATHER], tool_choice: { type: 'function', function: { name: 'nope' } } }))).toBe('tool_choice.function.name');
    expect(paramOf(() => toolPlanOf({ tools: [WEATHER], tool_choice: 'always' }))).toBe('tool_choice');
    expect(paramOf(() => toolPlanOf({ tools: [WEATHER], parallel_tool_calls: 'yes' }))).toBe('parallel_tool_calls');
  });
  it('a forced call is constrained to {"name", "arguments"} of the tools it may call', () => {
    const required = toolPlanOf({ tools: [WEATHER, TIME], tool_choice: 'required' })!;
    expect(GrammarMatcher.accepts(required.forced!, '{"name":"get_time","arguments":{}}')).toBe(true);
    expect(GrammarMatcher.accepts(required.forced!, '{"arguments":{"city":"Oslo"},"name":"get_weather"}')).toBe(true);
    expect(GrammarMatcher.accepts(required.forced!, '{"name":"get_time","arguments":{"x":1}}')).toBe(false);
    expect(GrammarMatcher.accepts(required.forced!, '{"name":"other","arguments":{}}')).toBe(false);
    const named = toolPlanOf({ tools: [WEATHER, TIME], tool_choice: { type: 'function', function: { name: 'get_weather' } } })!;
    expect(GrammarMatcher.accepts(named.forced!, '{"name":"get_time","arguments":{}}')).toBe(false);
    expect(GrammarMatcher.accepts(named.forced!, '{"name":"get_weather","arguments":{"city":"Rome"}}')).toBe(true);
    expect(toolPlanOf({ tools: [WEATHER] })!.forced).toBeNull(); // auto: the model chooses
  });
  it('parses the answer forms into OpenAI tool_calls; anything else is content', () => {
    const plan = toolPlanOf({ tools: [WEATHER, TIME] })!;
    const one = parseToolCalls(' {"name": "get_weather", "arguments": {"city": "Oslo"}}', plan)!;
    expect(one).toHaveLength(1);
    expect(one[0]).toMatchObject({ type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } });
    expect(one[0].id).toMatch(/^call_/);
    expect(parseToolCalls('<tool_call>{"name":"get_time","parameters":{}}</tool_call>\n<tool_call>{"name":"get_weather","arguments":{"city":"x"}}</tool_call>', plan)).toHaveLength(2);
    expect(parseToolCalls('[{"name":"get_time","arguments":{}},{"name":"get_time","arguments":{}}]', { ...plan, parallel: false })).toHaveLength(1);
    expect(parseToolCalls('Once upon a time', plan)).toBeNull();
    expect(parseToolCalls('{"name":"unknown","arguments":{}}', plan)).toBeNull();
    expect(parseToolCalls('{"name":"get_time","arguments":3}', plan)).toBeNull();
    expect(mayBeToolCall('  {"na')).toBe(true);
    expect(mayBeToolCall('<tool')).toBe(true);
    expect(mayBeToolCall('Once')).toBe(false);
  });
  it('a stream holds back a call and sends it as delta.tool_calls; plain text flows as content', async () => {
    const plan = toolPlanOf({ tools: [TIME] })!;
    const usage = { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3, prefill_tokens_per_s: 0, decode_tokens_per_s: 0, ttft_ms: 0, prompt_tokens_details: { cached_tokens: 0 } };
    async function* events(texts: string[]): AsyncGenerator<RequestEvent> {
      for (const t of texts) yield { kind: 'delta', text: t, ids: [7], logprobs: [] };
      yield { kind: 'done', reason: 'stop', usage, ids: [], logprobs: [] };
    }
    const collect = async (texts: string[]) => {
      const out = [];
      for await (const e of chatEvents(events(texts), plan)) out.push(e);
      return out;
    };
    const call = await collect(['{"name":', '"get_time",', '"arguments":{}}']);
    expect(call.map((e) => e.kind)).toEqual(['delta', 'done']);
    expect(call[0]).toMatchObject({ kind: 'delta', text: '', ids: [7, 7, 7] });
    expect((call[0] as { toolCalls: unknown[] }).toolCalls).toHaveLength(1);
    expect(call[1]).toMatchObject({ kind: 'done', reason: 'tool_calls' });
    const prose = await collect(['Once', ' upon']);
    expect(prose.map((e) => (e.kind === 'delta' ? e.text : e.reason))).toEqual(['Once', ' upon', 'stop']);
  });
});

describe('tools in the prompt', () => {
  const plan = toolPlanOf({ tools: [WEATHER] })!;
  const tools = { tools: plan.tools, toolsFallback: toolsSystemText(plan) };
  const history = [
    { role: 'user', content: 'Weather in Oslo?' },
    { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function' as const, function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } }] },
    { role: 'tool', tool_call_id: 'call_1', content: 'sunny' },
  ];
  it('completion mode (no template): the fallback system block, calls as JSON, results as text', () => {
    const text = tok.decode(chatPromptIds(tok, history, undefined, tools));
    expect(text).toContain('You can call these tools');
    expect(text).toContain('"name":"get_weather"');
    expect(text).toContain('{"name":"get_weather","arguments":{"city":"Oslo"}}');
    expect(text).toContain('Tool result (call_1): sunny');
  });
  it('a template that takes tools renders them and the messages\' tool fields', () => {
    const cfg = { ...JSON.parse(read('tokenizer_config.json')), chat_template: "{% if tools %}[tools]{% for t in tools %}{{ t.function.name }};{% endfor %}\n{% endif %}{% for m in messages %}[{{ m.role }}]{% if m.tool_calls %}{% for c in m.tool_calls %}call {{ c.function.name }}({{ c.function.arguments.city }}){% endfor %}{% else %}{{ m.content }}{% endif %}{% if m.tool_call_id %}#{{ m.tool_call_id }}{% endif %}\n{% endfor %}" };
    const chat = TextTokenizer.load(read('tokenizer.json'), cfg);
    const text = chat.decode(chatPromptIds(chat, history, undefined, tools));
    expect(text).toContain('[tools]get_weather;');
    expect(text).toContain('[assistant]call get_weather(Oslo)');
    expect(text).toContain('[tool]sunny#call_1');
    expect(text).not.toContain('You can call these tools');
  });
  it('tool messages need tool_call_id; content null only with tool calls', () => {
    expect(paramOf(() => chatPromptIds(tok, [{ role: 'tool', content: 'x' }]))).toBe('messages[0].tool_call_id');
    expect(paramOf(() => chatPromptIds(tok, [{ role: 'user', content: null }]))).toBe('messages[0].content');
    expect(paramOf(() => chatPromptIds(tok, [{ role: 'user', content: 'x', tool_calls: [] }]))).toBe('messages[0].tool_calls');
  });
});

describe('response_format and logit_bias fields', () => {
  it('response_format: each form, and errors naming the field', () => {
    expect(responseFormatNode({ type: 'text' })).toBeNull();
    expect(responseFormatNode({ type: 'json_object' })?.kind).toBe('object');
    expect(responseFormatNode({ type: 'json_schema', json_schema: { name: 'p', schema: { type: 'integer' }, strict: true } })?.kind).toBe('number');
    expect(paramOf(() => responseFormatNode({ type: 'grammar' }))).toBe('response_format.type');
    expect(paramOf(() => responseFormatNode({ type: 'json_schema', json_schema: { schema: {} } }))).toBe('response_format.json_schema.name');
    expect(paramOf(() => responseFormatNode({ type: 'json_schema', json_schema: { name: 'p' } }))).toBe('response_format.json_schema.schema');
    expect(paramOf(() => responseFormatNode({ type: 'json_schema', json_schema: { name: 'p', schema: { type: 'string', pattern: 'x' } } }))).toBe('response_format.json_schema.schema.pattern');
    expect(paramOf(() => responseFormatNode({ type: 'json_object', schema: {} }))).toBe('response_format.schema');
  });
  it('logit_bias: ids and values checked, naming logit_bias.<id>', () => {
    expect(logitBiasOf({ 5: 100, 7: -3.5 }, 512)).toEqual([{ id: 5, value: 100 }, { id: 7, value: -3.5 }]);
    expect(logitBiasOf({}, 512)).toBeNull();
    expect(paramOf(() => logitBiasOf({ 512: 1 }, 512))).toBe('logit_bias.512');
    expect(paramOf(() => logitBiasOf({ '-1': 1 }, 512))).toBe('logit_bias.-1');
    expect(paramOf(() => logitBiasOf({ '05': 1 }, 512))).toBe('logit_bias.05');
    expect(paramOf(() => logitBiasOf({ 3: 101 }, 512))).toBe('logit_bias.3');
    expect(paramOf(() => logitBiasOf({ 3: '1' }, 512))).toBe('logit_bias.3');
    expect(paramOf(() => logitBiasOf([1], 512))).toBe('logit_bias');
    expect(paramOf(() => logitBiasOf(Object.fromEntries(Array.from({ length: 301 }, (_, i) => [i, 1])), 512))).toBe('logit_bias');
  });
});

describe('applyGrammarAndBias', () => {
  const model = { tokenizer: tok, config: { vocabSize: 512, eosTokenIds: [2] } } as unknown as Parameters<typeof applyGrammarAndBias>[3];
  const base = () => ({ ...normalizeParams({ max_tokens: 50 }, null, { candidates: 64, topLogprobs: 20 }) });
  it('sets the grammar and the bias; refuses stop, ignore_eos and a too small budget with the grammar', () => {
    const s = base();
    applyGrammarAndBias(s, { node: responseFormatNode({ type: 'json_object' })!, param: 'response_format' }, { 7: 3 }, model, 512, 10);
    expect(s.structured?.param).toBe('response_format');
    expect(s.logitBias).toEqual([{ id: 7, value: 3 }]);
    const g = { node: responseFormatNode({ type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', properties: { abc: { type: 'string' } }, required: ['abc'] } } })!, param: 'response_format' };
    expect(paramOf(() => applyGrammarAndBias({ ...base(), stop: ['}'] }, g, null, model, 512, 10))).toBe('stop');
    expect(paramOf(() => applyGrammarAndBias({ ...base(), ignoreEos: true }, g, null, model, 512, 10))).toBe('ignore_eos');
    expect(paramOf(() => applyGrammarAndBias({ ...base(), maxTokens: 10 }, g, null, model, 512, 10))).toBeNull(); // '{"abc":""}' is 10 characters: fits
    expect(paramOf(() => applyGrammarAndBias({ ...base(), maxTokens: 9 }, g, null, model, 512, 10))).toBe('max_tokens');
    expect(paramOf(() => applyGrammarAndBias({ ...base(), maxTokens: null }, g, null, model, 15, 10))).toBe('response_format'); // the context leaves 5
  });
});

describe('logit mask reference', () => {
  it('masked tokens become -inf, bias adds to allowed tokens only, unmasked rows keep every token', () => {
    const V = 37;
    const logits = Float32Array.from({ length: 2 * V }, (_, i) => i / 10);
    const mask = new Uint32Array(2);
    mask[0] = 0b1010; // tokens 1 and 3
    mask[1] = 1 << (36 - 32); // token 36
    const out = applyLogitMaskRef(logits, 2, V, [{ mask, bias: [{ id: 3, value: 5 }, { id: 4, value: 5 }] }, { mask: null, bias: [{ id: 0, value: -100 }] }]);
    for (let t = 0; t < V; t++) {
      const want = t === 1 ? logits[1] : t === 3 ? Math.fround(logits[3] + 5) : t === 36 ? logits[36] : -Infinity;
      expect(out[t]).toBe(want);
    }
    expect(out[V]).toBe(Math.fround(logits[V] - 100));
    expect(Array.from(out.subarray(V + 1))).toEqual(Array.from(logits.subarray(V + 1)));
    const packed = packLogitRows([{ mask, bias: [{ id: 3, value: 5 }] }, { mask: null, bias: [] }], 4);
    expect(Array.from(packed.rows)).toEqual([1, 1, 0, 0]);
    expect(packed.bias[0]).toBe(3);
    expect(new Float32Array(packed.bias.buffer)[1]).toBe(5);
  });
});
