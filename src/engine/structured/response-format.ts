/**
 * OpenAI's `response_format` → the grammar of a request's output: {type: 'text'} (none),
 * {type: 'json_object'} (any JSON object), {type: 'json_schema', json_schema: {name, schema,
 * strict?, description?}} (the schema's subset, schema.ts). Anything else is an InvalidRequestError
 * naming the field. `checkBudget` refuses a max_tokens (or a context) too small for the shortest
 * output the grammar allows, since that output could never parse.
 */
import { InvalidRequestError } from '../errors.ts';
import { GrammarMatcher } from './matcher.ts';
import { compileSchema, JSON_OBJECT, type SchemaNode } from './schema.ts';
import type { TokenVocab } from './vocab.ts';

/** OpenAI's rule for json_schema.name (and function names). */
export const NAME_PATTERN = /^[a-zA-Z0-9_-]{1,64}$/;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function onlyFields(o: Record<string, unknown>, allowed: readonly string[], path: string): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw new InvalidRequestError(`${path}.${k}`, `is not a field of ${path} (it takes ${allowed.join(', ')})`);
}

/** The grammar `response_format` asks for; null for text (or absent). */
export function responseFormatNode(v: unknown): SchemaNode | null {
  if (v === null || v === undefined) return null;
  const path = 'response_format';
  if (!isObject(v)) throw new InvalidRequestError(path, `must be an object {type: 'text' | 'json_object' | 'json_schema', ...}, got ${JSON.stringify(v)}`);
  switch (v.type) {
    case 'text':
      onlyFields(v, ['type'], path);
      return null;
    case 'json_object':
      onlyFields(v, ['type'], path);
      return JSON_OBJECT;
    case 'json_schema': {
      onlyFields(v, ['type', 'json_schema'], path);
      const js = v.json_schema;
      if (!isObject(js)) throw new InvalidRequestError(`${path}.json_schema`, 'must be an object {name, schema, strict?, description?}');
      onlyFields(js, ['name', 'schema', 'strict', 'description'], `${path}.json_schema`);
      if (typeof js.name !== 'string' || !NAME_PATTERN.test(js.name)) throw new InvalidRequestError(`${path}.json_schema.name`, `= ${JSON.stringify(js.name)} must be 1 to 64 letters, digits, '_' or '-'`);
      if (js.strict !== undefined && js.strict !== null && typeof js.strict !== 'boolean') throw new InvalidRequestError(`${path}.json_schema.strict`, 'must be a boolean (output always follows the schema here)');
      if (js.description !== undefined && typeof js.description !== 'string') throw new InvalidRequestError(`${path}.json_schema.description`, 'must be a string');
      if (js.schema === undefined) throw new InvalidRequestError(`${path}.json_schema.schema`, 'is required: the JSON schema the output must follow');
      return compileSchema(js.schema, `${path}.json_schema.schema`);
    }
    default:
      throw new InvalidRequestError(`${path}.type`, `= ${JSON.stringify(v.type)} is not supported (text, json_object, json_schema)`);
  }
}

/**
 * Refuse a grammar whose shortest output does not fit `budget` tokens (max_tokens, or what the
 * context leaves after the prompt); `param` names the grammar's field in other errors.
 */
export function checkBudget(node: SchemaNode, vocab: TokenVocab, param: string, budget: number, maxTokensGiven: boolean): void {
  const need = new GrammarMatcher(node, vocab, param).closeCost;
  if (need > budget) {
    if (maxTokensGiven) throw new InvalidRequestError('max_tokens', `= ${budget} is too small for ${param}: its shortest output takes ${need} tokens`);
    throw new InvalidRequestError(param, `needs ${need} tokens for its shortest output; the context leaves ${budget} after the prompt`);
  }
}
