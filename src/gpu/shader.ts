/**
 * The tiny placeholder pass that specialises WGSL. Sources in shaders/*.wgsl contain `{{NAME}}`
 * markers (workgroup size, the uniform struct, dtype helpers); `specialize` replaces each one and
 * refuses to return a shader with a marker left over or a value that was never used, so a typo
 * fails loudly at pipeline creation rather than as a WGSL parse error.
 */
export type ShaderValue = string | number | boolean;

const MARKER = /\{\{([A-Z0-9_]+)\}\}/g;

export function specialize(source: string, values: Record<string, ShaderValue>, name = 'shader'): string {
  const used = new Set<string>();
  const out = source.replace(MARKER, (_m, key: string) => {
    if (!(key in values)) throw new Error(`${name}: placeholder {{${key}}} has no value`);
    used.add(key);
    const v = values[key];
    // WGSL float literals need a decimal point or exponent; integers stay integers.
    return typeof v === 'number' && !Number.isInteger(v) ? v.toExponential() : String(v);
  });
  const unused = Object.keys(values).filter((k) => !used.has(k));
  if (unused.length) throw new Error(`${name}: values given for absent placeholders: ${unused.join(', ')}`);
  return out;
}
