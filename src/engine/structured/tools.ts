/**
 * Tools (OpenAI function calling) for chat.completions: the request's `tools`, `tool_choice` and
 * `parallel_tool_calls` checked; the grammar of a forced call (tool_choice 'required' or a named
 * function: one JSON object {"name": <a tool's name>, "arguments": <its parameters schema>});
 * the documented fallback prompt for templates that take no `tools`; and the parser that turns
 * output into OpenAI `tool_calls`.
 *
 * Output the parser takes as tool calls (the forms chat templates teach): the whole answer being a
 * JSON object {"name", "arguments" | "parameters"} or an array of them, or one or more
 * <tool_call>{...}</tool_call> blocks (Hermes, Qwen). A name must be one of the request's tools and
 * the arguments an object; otherwise the answer is plain content.
 */
import { InvalidRequestError } from '../errors.ts';
import { NAME_PATTERN } from './response-format.ts';
import { compileSchema, type SchemaNode } from './schema.ts';

export interface FunctionTool {
  type: 'function';
  function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean | null };
}

export type ToolChoice = 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } };

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export interface ToolPlan {
  tools: FunctionTool[];
  choice: 'none' | 'auto' | 'required' | 'named';
  /** The function a named tool_choice forces. */
  forcedName: string | null;
  parallel: boolean;
  /** The grammar of a forced call; null when the model chooses (auto) or may not call (none). */
  forced: SchemaNode | null;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
/** A function without `parameters` takes none: its arguments are {}. */
const NO_PARAMETERS = { type: 'object', properties: {}, additionalProperties: false };

/** Check tools / tool_choice / parallel_tool_calls; null when there are no tools (and no choice). */
export function toolPlanOf(p: { tools?: unknown; tool_choice?: unknown; parallel_tool_calls?: unknown }): ToolPlan | null {
  const { tools, tool_choice: choice, parallel_tool_calls: parallel } = p;
  if (parallel !== undefined && parallel !== null && typeof parallel !== 'boolean') throw new InvalidRequestError('parallel_tool_calls', 'must be a boolean');
  if (tools === undefined || tools === null) {
    if (choice !== undefined && choice !== null && choice !== 'none') throw new InvalidRequestError('tool_choice', 'needs tools');
    return null;
  }
  if (!Array.isArray(tools) || tools.length === 0 || tools.length > 128) throw new InvalidRequestError('tools', 'must be a non-empty array of at most 128 tools');
  const names = new Set<string>();
  const nodes: SchemaNode[] = [];
  const checked = tools.map((t, i): FunctionTool => {
    const path = `tools[${i}]`;
    if (!isObject(t) || t.type !== 'function') throw new InvalidRequestError(`${path}.type`, "must be 'function' (the only kind of tool)");
    for (const k of Object.keys(t)) if (k !== 'type' && k !== 'function') throw new InvalidRequestError(`${path}.${k}`, 'is not a field of a tool (type, function)');
    const f = t.function;
    if (!isObject(f)) throw new InvalidRequestError(`${path}.function`, 'must be an object {name, description?, parameters?, strict?}');
    for (const k of Object.keys(f)) if (!['name', 'description', 'parameters', 'strict'].includes(k)) throw new InvalidRequestError(`${path}.function.${k}`, 'is not a field of a function (name, description, parameters, strict)');
    if (typeof f.name !== 'string' || !NAME_PATTERN.test(f.name)) throw new InvalidRequestError(`${path}.function.name`, `= ${JSON.stringify(f.name)} must be 1 to 64 letters, digits, '_' or '-'`);
    if (names.has(f.name)) throw new InvalidRequestError(`${path}.function.name`, `'${f.name}' names two tools`);
    names.add(f.name);
    if (f.description !== undefined && typeof f.description !== 'string') throw new InvalidRequestError(`${path}.function.description`, 'must be a string');
    if (f.strict !== undefined && f.strict !== null && typeof f.strict !== 'boolean') throw new InvalidRequestError(`${path}.function.strict`, 'must be a boolean');
    const params = f.parameters ?? NO_PARAMETERS;
    const args = compileSchema(params, `${path}.function.parameters`);
    if (args.kind !== 'object') throw new InvalidRequestError(`${path}.function.parameters`, "must be a schema of type 'object' (arguments are an object)");
    nodes.push(callNode(f.name, args));
    return { type: 'function', function: { ...f, name: f.name } as FunctionTool['function'] };
  });
  let kind: ToolPlan['choice'] = 'auto';
  let forcedName: string | null = null;
  if (choice === 'none' || choice === 'auto' || choice === 'required') kind = choice;
  else if (choice !== undefined && choice !== null) {
    if (!isObject(choice) || choice.type !== 'function' || !isObject(choice.function) || typeof choice.function.name !== 'string') throw new InvalidRequestError('tool_choice', "must be 'none', 'auto', 'required' or {type: 'function', function: {name}}");
    forcedName = choice.function.name;
    if (!names.has(forcedName)) throw new InvalidRequestError('tool_choice.function.name', `'${forcedName}' is not one of the tools (${[...names].join(', ')})`);
    kind = 'named';
  }
  const forcedNodes = kind === 'named' ? [nodes[checked.findIndex((t) => t.function.name === forcedName)]] : nodes;
  const forced = kind === 'required' || kind === 'named' ? (forcedNodes.length === 1 ? forcedNodes[0] : { kind: 'anyOf' as const, options: forcedNodes, minChars: Math.min(...forcedNodes.map((n) => n.minChars)) }) : null;
  return { tools: checked, choice: kind, forcedName, parallel: parallel !== false, forced };
}

/** {"name": <name>, "arguments": <args>}, both required, nothing else. */
function callNode(name: string, args: SchemaNode): SchemaNode {
  const nameText = JSON.stringify(name);
  const props = [
    { name: 'name', keyText: '"name"', node: { kind: 'literal' as const, texts: [nameText], minChars: nameText.length }, required: true },
    { name: 'arguments', keyText: '"arguments"', node: args, required: true },
  ];
  return { kind: 'object', props, additional: null, minChars: 2 + props.reduce((a, p) => a + p.keyText.length + 1 + p.node.minChars, 0) + 1 };
}

/**
 * The fallback for a model whose chat template does not take `tools` (or has none): a system
 * message listing the tools as JSON and the answer form the parser takes.
 */
export function toolsSystemText(plan: ToolPlan): string {
  const list = plan.tools.map((t) => JSON.stringify(t.function)).join('\n');
  const how = plan.choice === 'auto' ? 'To call a tool, answer with only' : 'Answer with only';
  return `You can call these tools (JSON, one per line):\n${list}\n${how} a JSON object {"name": <the tool's name>, "arguments": <an object of its parameters>}.`;
}

let callSerial = 0;
function callId(): string {
  callSerial = (callSerial + 1) % 1e9;
  return `call_${Date.now().toString(36)}${callSerial.toString(36)}`;
}

function asCall(v: unknown, names: ReadonlySet<string>): ToolCall | null {
  if (!isObject(v) || typeof v.name !== 'string' || !names.has(v.name)) return null;
  const args = v.arguments ?? v.parameters ?? {};
  const parsed = typeof args === 'string' ? safeParse(args) : args;
  if (!isObject(parsed)) return null;
  return { id: callId(), type: 'function', function: { name: v.name, arguments: JSON.stringify(parsed) } };
}

function safeParse(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}

/** The tool calls an answer makes (see the file comment), or null when it is plain content. */
export function parseToolCalls(text: string, plan: ToolPlan): ToolCall[] | null {
  const names = new Set(plan.forcedName ? [plan.forcedName] : plan.tools.map((t) => t.function.name));
  const trimmed = text.trim();
  let values: unknown[] | null = null;
  const blocks = [...trimmed.matchAll(/<tool_call>([\s\S]*?)<\/tool_call>/g)];
  if (blocks.length) values = blocks.map((b) => safeParse(b[1].trim()));
  else {
    const whole = safeParse(trimmed);
    if (whole !== undefined) values = Array.isArray(whole) ? whole : [whole];
  }
  if (!values || values.length === 0) return null;
  const calls = values.map((v) => asCall(v, names));
  if (calls.some((c) => c === null)) return null;
  return plan.parallel ? (calls as ToolCall[]) : [calls[0]!];
}

/** Could `text` (so far) still become a tool call? Streaming holds such text back until it knows. */
export function mayBeToolCall(text: string): boolean {
  const t = text.trimStart();
  if (t.length === 0) return true;
  return t[0] === '{' || t[0] === '[' || '<tool_call>'.startsWith(t.slice(0, 11)) || t.startsWith('<tool_call>');
}
