/**
 * A JSON schema (the subset structured output supports) compiled into the node tree the decoding
 * automaton walks (automaton.ts). Supported: type (one name or a list), properties, required,
 * additionalProperties (false, true or a schema; absent = true as in JSON Schema), enum, const,
 * items, minItems, maxItems, minLength, maxLength, anyOf, and the annotations title, description,
 * default, examples, $schema, $comment (they constrain nothing). Any other keyword (pattern, format,
 * $ref, oneOf, minimum, ...) is an InvalidRequestError naming its path — never ignored, since an
 * ignored constraint would let through output the caller's schema refuses.
 */
import { InvalidRequestError } from '../errors.ts';

export type SchemaNode =
  | { kind: 'object'; props: PropertyNode[]; additional: SchemaNode | null; minChars: number }
  | { kind: 'array'; items: SchemaNode; minItems: number; maxItems: number; minChars: number }
  | { kind: 'string'; minLength: number; maxLength: number; minChars: number }
  | { kind: 'number'; integer: boolean; minChars: number }
  /** JSON texts (canonical JSON.stringify) of the values allowed: enum, const, boolean, null. */
  | { kind: 'literal'; texts: string[]; minChars: number }
  | { kind: 'anyOf'; options: SchemaNode[]; minChars: number }
  /** Any JSON value (json_object's members, an absent `items`, additional properties). */
  | { kind: 'any'; minChars: number };

export interface PropertyNode {
  name: string;
  /** The key as JSON text, quotes included. */
  keyText: string;
  node: SchemaNode;
  required: boolean;
}

const TYPES = ['object', 'array', 'string', 'number', 'integer', 'boolean', 'null'] as const;
type TypeName = (typeof TYPES)[number];
const KEYWORDS = new Set(['type', 'properties', 'required', 'additionalProperties', 'enum', 'const', 'items', 'minItems', 'maxItems', 'minLength', 'maxLength', 'anyOf']);
const ANNOTATIONS = new Set(['title', 'description', 'default', 'examples', '$schema', '$comment']);
/** Deepest nesting compiled (a schema is data from a request: bounded like everything else). */
export const MAX_SCHEMA_DEPTH = 32;
/** Most properties, enum values and anyOf options per schema node. */
export const MAX_SCHEMA_BRANCH = 256;

export const ANY: SchemaNode = { kind: 'any', minChars: 1 };

/** json_object: any JSON object (members of any type). */
export const JSON_OBJECT: SchemaNode = { kind: 'object', props: [], additional: ANY, minChars: 2 };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function count(path: string, v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new InvalidRequestError(path, `= ${JSON.stringify(v)} must be an integer >= 0 (${what})`);
  return v;
}

/** Characters of `s` as JSON Schema counts them (code points). */
export const codePoints = (s: string): number => [...s].length;

/** Compile `schema` (at request path `path`) into a node; every refusal names the keyword's path. */
export function compileSchema(schema: unknown, path: string, depth = 0): SchemaNode {
  if (schema === true) return ANY;
  if (!isObject(schema)) throw new InvalidRequestError(path, `must be a JSON schema object, got ${JSON.stringify(schema) ?? String(schema)}`);
  if (depth > MAX_SCHEMA_DEPTH) throw new InvalidRequestError(path, `nests deeper than ${MAX_SCHEMA_DEPTH} levels`);
  for (const k of Object.keys(schema)) {
    if (!KEYWORDS.has(k) && !ANNOTATIONS.has(k)) throw new InvalidRequestError(`${path}.${k}`, `is not supported by structured output (supported: ${[...KEYWORDS].join(', ')}; annotations ${[...ANNOTATIONS].join(', ')})`);
  }
  if (schema.anyOf !== undefined) {
    const list = schema.anyOf;
    if (!Array.isArray(list) || list.length === 0 || list.length > MAX_SCHEMA_BRANCH) throw new InvalidRequestError(`${path}.anyOf`, `must be a non-empty array of at most ${MAX_SCHEMA_BRANCH} schemas`);
    const others = Object.keys(schema).filter((k) => k !== 'anyOf' && !ANNOTATIONS.has(k));
    if (others.length) throw new InvalidRequestError(`${path}.${others[0]}`, 'beside anyOf is not supported: move it into each anyOf option');
    const options = list.map((s, i) => compileSchema(s, `${path}.anyOf[${i}]`, depth + 1));
    return { kind: 'anyOf', options, minChars: Math.min(...options.map((o) => o.minChars)) };
  }
  const types = typesOf(schema.type, `${path}.type`);
  if (schema.enum !== undefined || schema.const !== undefined) return literalNode(schema, types, path, depth);
  if (types === null) throw new InvalidRequestError(`${path}.type`, 'is required (or enum, const, anyOf): a schema without it would allow any value');
  const nodes = types.map((t) => typedNode(schema, t, path, depth, types.length > 1));
  return nodes.length === 1 ? nodes[0] : { kind: 'anyOf', options: nodes, minChars: Math.min(...nodes.map((n) => n.minChars)) };
}

function typesOf(v: unknown, path: string): TypeName[] | null {
  if (v === undefined) return null;
  const list = Array.isArray(v) ? v : [v];
  if (list.length === 0) throw new InvalidRequestError(path, 'must name at least one type');
  for (const t of list) if (!TYPES.includes(t as TypeName)) throw new InvalidRequestError(path, `= ${JSON.stringify(t)} is not a JSON Schema type (${TYPES.join(', ')})`);
  return [...new Set(list as TypeName[])];
}

/** Keywords that only make sense for one type: refused on a schema that cannot be that type. */
const FOR_TYPE: Record<string, TypeName[]> = {
  properties: ['object'], required: ['object'], additionalProperties: ['object'],
  items: ['array'], minItems: ['array'], maxItems: ['array'],
  minLength: ['string'], maxLength: ['string'],
};

function typedNode(s: Record<string, unknown>, t: TypeName, path: string, depth: number, mixed: boolean): SchemaNode {
  for (const [k, ts] of Object.entries(FOR_TYPE)) {
    // With several types (e.g. ["string", "null"]) a keyword applies to its own type only, as in JSON Schema.
    if (s[k] !== undefined && !ts.includes(t) && !mixed) throw new InvalidRequestError(`${path}.${k}`, `does not apply to type '${t}'`);
  }
  switch (t) {
    case 'object':
      return objectNode(s, path, depth);
    case 'array': {
      const items = s.items === undefined ? ANY : compileSchema(s.items, `${path}.items`, depth + 1);
      const minItems = s.minItems === undefined ? 0 : count(`${path}.minItems`, s.minItems, 'items');
      const maxItems = s.maxItems === undefined ? Infinity : count(`${path}.maxItems`, s.maxItems, 'items');
      if (maxItems < minItems) throw new InvalidRequestError(`${path}.maxItems`, `= ${maxItems} is below minItems ${minItems}: no array fits`);
      return { kind: 'array', items, minItems, maxItems, minChars: 2 + minItems * items.minChars + Math.max(0, minItems - 1) };
    }
    case 'string': {
      const minLength = s.minLength === undefined ? 0 : count(`${path}.minLength`, s.minLength, 'characters');
      const maxLength = s.maxLength === undefined ? Infinity : count(`${path}.maxLength`, s.maxLength, 'characters');
      if (maxLength < minLength) throw new InvalidRequestError(`${path}.maxLength`, `= ${maxLength} is below minLength ${minLength}: no string fits`);
      return { kind: 'string', minLength, maxLength, minChars: 2 + minLength };
    }
    case 'number':
    case 'integer':
      return { kind: 'number', integer: t === 'integer', minChars: 1 };
    case 'boolean':
      return { kind: 'literal', texts: ['true', 'false'], minChars: 4 };
    case 'null':
      return { kind: 'literal', texts: ['null'], minChars: 4 };
  }
}

function objectNode(s: Record<string, unknown>, path: string, depth: number): SchemaNode {
  const propsIn = s.properties ?? {};
  if (!isObject(propsIn)) throw new InvalidRequestError(`${path}.properties`, 'must be an object of property schemas');
  const names = Object.keys(propsIn);
  if (names.length > MAX_SCHEMA_BRANCH) throw new InvalidRequestError(`${path}.properties`, `has ${names.length} properties; at most ${MAX_SCHEMA_BRANCH}`);
  const req = s.required ?? [];
  if (!Array.isArray(req) || req.some((r) => typeof r !== 'string')) throw new InvalidRequestError(`${path}.required`, 'must be an array of property names');
  const required = new Set(req as string[]);
  for (const r of required) if (!(r in propsIn)) throw new InvalidRequestError(`${path}.required`, `names '${r}', which is not in properties (declare its schema)`);
  for (const name of names) {
    if (/["\\\u0000-\u001f]/.test(name)) throw new InvalidRequestError(`${path}.properties.${name}`, 'is a property name with a quote, backslash or control character, which structured output does not support');
  }
  const props: PropertyNode[] = names.map((name) => ({ name, keyText: JSON.stringify(name), node: compileSchema(propsIn[name], `${path}.properties.${name}`, depth + 1), required: required.has(name) }));
  const ap = s.additionalProperties;
  const additional = ap === undefined || ap === true ? ANY : ap === false ? null : compileSchema(ap, `${path}.additionalProperties`, depth + 1);
  const reqProps = props.filter((p) => p.required);
  const minChars = 2 + reqProps.reduce((a, p) => a + p.keyText.length + 1 + p.node.minChars, 0) + Math.max(0, reqProps.length - 1);
  return { kind: 'object', props, additional, minChars };
}

function literalNode(s: Record<string, unknown>, types: TypeName[] | null, path: string, depth: number): SchemaNode {
  const field = s.enum !== undefined ? 'enum' : 'const';
  if (s.enum !== undefined && s.const !== undefined) throw new InvalidRequestError(`${path}.const`, 'beside enum is not supported: use one of them');
  const values = field === 'enum' ? s.enum : [s.const];
  if (!Array.isArray(values) || values.length === 0 || values.length > MAX_SCHEMA_BRANCH) throw new InvalidRequestError(`${path}.${field}`, `must be a non-empty array of at most ${MAX_SCHEMA_BRANCH} values`);
  const others = Object.keys(s).filter((k) => k !== field && k !== 'type' && !ANNOTATIONS.has(k));
  if (others.length) throw new InvalidRequestError(`${path}.${others[0]}`, `beside ${field} is not supported (the ${field} values are the whole constraint)`);
  const texts = values.map((v, i) => {
    if (types && !types.some((t) => valueHasType(v, t))) throw new InvalidRequestError(`${path}.${field}${field === 'enum' ? `[${i}]` : ''}`, `= ${JSON.stringify(v)} is not of type ${types.join(' | ')}`);
    return JSON.stringify(v);
  });
  void depth;
  const unique = [...new Set(texts)];
  return { kind: 'literal', texts: unique, minChars: Math.min(...unique.map((t) => t.length)) };
}

function valueHasType(v: unknown, t: TypeName): boolean {
  switch (t) {
    case 'object':
      return isObject(v);
    case 'array':
      return Array.isArray(v);
    case 'string':
      return typeof v === 'string';
    case 'number':
      return typeof v === 'number' && Number.isFinite(v);
    case 'integer':
      return typeof v === 'number' && Number.isInteger(v);
    case 'boolean':
      return typeof v === 'boolean';
    case 'null':
      return v === null;
  }
}
