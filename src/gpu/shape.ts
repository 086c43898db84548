/**
 * Small guard helpers shared by kernel families. Each throws a ShapeError naming the kernel, the
 * argument and the offending shape, so a bad call never reaches `dispatchWorkgroups`.
 */
import { bindingBytes, isRange, type Binding } from './binding.ts';
import { ShapeError } from './errors.ts';

export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Every dimension is a positive integer. */
export function requireDims(kernel: string, argument: string, dims: Record<string, number>): void {
  for (const [name, v] of Object.entries(dims)) {
    if (!Number.isInteger(v) || v <= 0) {
      throw new ShapeError(kernel, argument, `has ${name} = ${v}; it must be a positive integer`);
    }
  }
}

/** A typed array or GPU buffer holds at least `needed` elements of 4 bytes. */
export function requireElements(kernel: string, argument: string, have: number, needed: number, shape: readonly number[]): void {
  if (have < needed) {
    throw new ShapeError(kernel, argument, `holds ${have} elements, shape ${fmtShape(shape)} needs ${needed}`);
  }
}

/** A GPU buffer is large enough for `shape` of 4-byte elements starting at `byteOffset`. */
export function requireBufferFits(kernel: string, argument: string, buffer: Binding, shape: readonly number[], byteOffset = 0): void {
  const elems = shape.reduce((a, b) => a * b, 1);
  const need = byteOffset + elems * 4;
  const have = bindingBytes(buffer);
  if (have < need) {
    throw new ShapeError(kernel, argument, `${isRange(buffer) ? 'range' : 'buffer'} of ${have} bytes is too small for shape ${fmtShape(shape)} at offset ${byteOffset} (${need} bytes)`);
  }
}

export function requireEqual(kernel: string, argument: string, what: string, a: number, b: number): void {
  if (a !== b) throw new ShapeError(kernel, argument, `${what}: ${a} != ${b}`);
}
