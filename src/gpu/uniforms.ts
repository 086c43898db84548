/**
 * Uniform layouts: one definition per kernel, the single source of truth for both sides.
 * `layout.wgsl` is the WGSL struct spliced into the shader through the `{{PARAMS}}` placeholder,
 * `layout.pack(values)` writes the bytes the TS side uploads. Every field is a 4-byte scalar, so
 * offsets are 4·index and there is no vec3 alignment trap; the size is rounded up to 16 bytes.
 */
export type UniformScalar = 'u32' | 'i32' | 'f32';

export interface UniformLayout<F extends Record<string, UniformScalar>> {
  readonly structName: string;
  readonly fields: F;
  /** WGSL `struct <structName> { ... }` text. */
  readonly wgsl: string;
  /** Byte size, a multiple of 16. */
  readonly size: number;
  pack(values: { [K in keyof F]: number }): ArrayBuffer;
}

export function defineUniforms<const F extends Record<string, UniformScalar>>(structName: string, fields: F): UniformLayout<F> {
  const names = Object.keys(fields);
  const size = Math.max(16, Math.ceil((names.length * 4) / 16) * 16);
  const wgsl = `struct ${structName} {\n${names.map((n) => `  ${n}: ${fields[n]},`).join('\n')}\n}`;
  return {
    structName,
    fields,
    wgsl,
    size,
    pack(values) {
      const buf = new ArrayBuffer(size);
      const dv = new DataView(buf);
      names.forEach((n, i) => {
        const v = (values as Record<string, number>)[n];
        if (v === undefined || !Number.isFinite(v)) throw new TypeError(`${structName}.${n} = ${v} is not a finite number`);
        const t = fields[n];
        if (t === 'u32') {
          if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`${structName}.${n} = ${v} is not a u32`);
          dv.setUint32(i * 4, v, true);
        } else if (t === 'i32') {
          if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new RangeError(`${structName}.${n} = ${v} is not an i32`);
          dv.setInt32(i * 4, v, true);
        } else {
          dv.setFloat32(i * 4, v, true);
        }
      });
      return buf;
    },
  };
}
