/**
 * A plain JSON Schema validator for the subset structured output supports, written from the
 * JSON Schema rules and independent of src/engine/structured (tests check generated output with it).
 */
type Schema = Record<string, unknown> | boolean;

const typeOk = (v: unknown, t: string): boolean =>
  t === 'object' ? typeof v === 'object' && v !== null && !Array.isArray(v)
  : t === 'array' ? Array.isArray(v)
  : t === 'string' ? typeof v === 'string'
  : t === 'number' ? typeof v === 'number'
  : t === 'integer' ? typeof v === 'number' && Number.isInteger(v)
  : t === 'boolean' ? typeof v === 'boolean'
  : t === 'null' ? v === null
  : false;

export function validates(schema: Schema, v: unknown): boolean {
  if (schema === true) return true;
  if (schema === false) return false;
  const s = schema;
  if (s.anyOf && !(s.anyOf as Schema[]).some((o) => validates(o, v))) return false;
  if (s.enum && !(s.enum as unknown[]).some((e) => JSON.stringify(e) === JSON.stringify(v))) return false;
  if ('const' in s && JSON.stringify(s.const) !== JSON.stringify(v)) return false;
  if (s.type !== undefined) {
    const types = Array.isArray(s.type) ? (s.type as string[]) : [s.type as string];
    if (!types.some((t) => typeOk(v, t))) return false;
  }
  if (typeof v === 'string') {
    const n = [...v].length;
    if (typeof s.minLength === 'number' && n < s.minLength) return false;
    if (typeof s.maxLength === 'number' && n > s.maxLength) return false;
  }
  if (Array.isArray(v)) {
    if (typeof s.minItems === 'number' && v.length < s.minItems) return false;
    if (typeof s.maxItems === 'number' && v.length > s.maxItems) return false;
    if (s.items !== undefined && !v.every((x) => validates(s.items as Schema, x))) return false;
  }
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    const props = (s.properties ?? {}) as Record<string, Schema>;
    for (const r of (s.required ?? []) as string[]) if (!(r in o)) return false;
    for (const [k, x] of Object.entries(o)) {
      if (k in props) {
        if (!validates(props[k], x)) return false;
      } else if (s.additionalProperties === false) return false;
      else if (typeof s.additionalProperties === 'object' && !validates(s.additionalProperties as Schema, x)) return false;
    }
  }
  return true;
}
