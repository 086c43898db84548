/**
 * Softmax family: row softmax over [rows, cols] f32 with an optional temperature (scalar, or one
 * per row from a storage buffer so a batch of sequences can sample with their own settings and the
 * dispatch is reused across requests). In place (y omitted) or out of place.
 *
 * Also home of the workgroup-reduction prelude shared with attention decode: a max with a subgroup
 * fast path (shaders/reduce_max_subgroups.wgsl) or a workgroup-memory tree fallback, and a tree
 * sum (shaders/reduce_tree.wgsl), spliced in front of the kernel's WGSL.
 */
import softmaxWgsl from '../../shaders/softmax.wgsl?raw';
import reduceTreeWgsl from '../../shaders/reduce_tree.wgsl?raw';
import reduceMaxSubgroupsWgsl from '../../shaders/reduce_max_subgroups.wgsl?raw';
import { uploadStorage } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/device.ts';
import { grid1d, makeDispatch, type KernelDispatch } from '../gpu/dispatch.ts';
import { ShapeError } from '../gpu/errors.ts';
import { requireBufferFits, requireDims } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';

/** WGSL prepended to a kernel that calls `{{MAX_FN}}(v, lid)` and `workgroupSum(v, lid)`. */
export interface ReductionPrelude {
  /** Goes before the kernel source (`enable subgroups;` must come first in a module). */
  prefix: string;
  /** Value of the kernel's {{MAX_FN}} placeholder. */
  maxFn: string;
  /** Suffix of the variant name: 'sg' or 'wgmem'. */
  tag: string;
}

export function reductionPrelude(useSubgroups: boolean): ReductionPrelude {
  return useSubgroups
    ? { prefix: `${reduceMaxSubgroupsWgsl}\n${reduceTreeWgsl}\n`, maxFn: 'workgroupMaxSubgroups', tag: 'sg' }
    : { prefix: `${reduceTreeWgsl}\n`, maxFn: 'workgroupMaxTree', tag: 'wgmem' };
}

/** CPU reference: softmax of each row of x / temperature, computed in f64 and rounded to f32. */
export function softmaxRef(x: Float32Array, rows: number, cols: number, temperature: number | ArrayLike<number> = 1): Float32Array {
  const y = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const t = typeof temperature === 'number' ? temperature : temperature[r];
    let max = -Infinity;
    for (let c = 0; c < cols; c++) max = Math.max(max, x[r * cols + c] / t);
    let sum = 0;
    for (let c = 0; c < cols; c++) sum += Math.exp(x[r * cols + c] / t - max);
    for (let c = 0; c < cols; c++) y[r * cols + c] = Math.exp(x[r * cols + c] / t - max) / sum;
  }
  return y;
}

export const SoftmaxParams = defineUniforms('Params', { rows: 'u32', cols: 'u32', tempStride: 'u32' });

export interface SoftmaxArgs {
  x: GPUBuffer; // [rows, cols] f32 input (and output when y is omitted)
  y?: GPUBuffer; // [rows, cols] f32 output; omit for in place
  rows: number;
  cols: number;
  /**
   * Divides the logits before the softmax. A number (> 0, default 1) is fixed in the dispatch;
   * a buffer `[rows] f32` gives each row its own value (all > 0) and can change between runs.
   */
  temperature?: number | GPUBuffer;
}

/** Threads per row: small rows (a handful of classes) waste fewer idle lanes with 64. */
function softmaxWorkgroup(cols: number): number {
  return cols <= 512 ? 64 : 256;
}

export function softmax(ctx: GpuContext, a: SoftmaxArgs): KernelDispatch {
  const kernel = 'softmax';
  const { rows, cols } = a;
  requireDims(kernel, 'shape', { rows, cols });
  requireBufferFits(kernel, 'x', a.x, [rows, cols]);
  if (a.y) requireBufferFits(kernel, 'y', a.y, [rows, cols]);
  const t = a.temperature ?? 1;
  let temps: GPUBuffer;
  if (typeof t === 'number') {
    if (!(t > 0) || !Number.isFinite(t)) throw new ShapeError(kernel, 'temperature', `= ${t}; it must be a finite number > 0`);
    temps = uploadStorage(ctx, new Float32Array([t]), 'softmax.temperature'); // [1] f32
  } else {
    requireBufferFits(kernel, 'temperature', t, [rows]);
    temps = t;
  }
  const inPlace = !a.y || a.y === a.x;
  const WG = softmaxWorkgroup(cols);
  const red = reductionPrelude(ctx.features.subgroups);
  const variant = `softmax_f32_wg${WG}_${inPlace ? 'inplace' : 'out'}_${red.tag}`;
  return makeDispatch(ctx, {
    variant,
    code: () => specialize(red.prefix + softmaxWgsl, { PARAMS: SoftmaxParams.wgsl, WG, SRC: inPlace ? 'y' : 'x', MAX_FN: red.maxFn }, variant),
    uniforms: SoftmaxParams.pack({ rows, cols, tempStride: typeof t === 'number' ? 0 : 1 }),
    storage: inPlace ? [a.x, temps] : [a.y!, temps, a.x],
    workgroups: grid1d(rows, ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}
