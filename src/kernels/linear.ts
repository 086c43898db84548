/**
 * Fused linear (the fused plan's matmul, src/kernels/plan.ts): y[M, N] = epilogue(prologue(x) · Wᵀ)
 * in ONE dispatch per weight shard, and, with nothing fused, the small-M GEMM that replaces the
 * workgroup-tiled one on CPU-class devices (matmul.ts chooses it).
 *
 * Work split (shaders are generated here, like the GEMV's): no workgroup memory, no barrier. One
 * invocation owns a block of MB rows x 4 columns of y (MB = 1, 2 or 4 by M) and walks K four
 * elements at a time in registers: per step it loads MB vec4 of x and 4 vec4 of W (dequantized
 * from f16 / q4 by the format's loader) and adds MB·4 dot products. Neighbouring invocations take
 * neighbouring row blocks, so they share W's rows in cache. Needs K % 4 == 0 (vec4 rows).
 *
 * Fusions (each optional, all composable):
 * - gather prologue: row m of x is x[rows[m]] (the LM head over each sequence's last token);
 * - RMSNorm prologue: x rows normalised as rmsNorm does, (x · rsqrt(mean(x²) + eps)) · g, the row's
 *   sum of squares computed by each invocation for its own rows (K extra reads per row);
 * - bias epilogue: + bias[n];
 * - SiLU-gate pair: a second weight U of the same shape, y = silu(x·Wᵀ) · (x·Uᵀ) (gate/up in one);
 * - residual epilogue: y += result (o_proj / down_proj straight into the residual stream), or
 *   y = base + result from another buffer;
 * - split epilogue: the columns go to three outputs (q, k, v from one [q; k; v] weight).
 *
 * CPU reference: linearRef composes the families' own references in the unfused order (gather,
 * rmsNormRef, matmulRef, bias, siluGate, residual add), so the fused kernel is tested against
 * exactly what the unfused plan computes.
 */
import type { GpuContext } from '../gpu/device.ts';
import { bufferOf } from '../gpu/binding.ts';
import { grid1d, makeDispatch, type Binding, type KernelDispatch } from '../gpu/dispatch.ts';
import { LimitsTooSmallError, ShapeError } from '../gpu/errors.ts';
import { requireBufferFits, requireDims, requireElements } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';
import { spreadWorkgroupSize } from './plan.ts';
import { rmsNormRef } from './rmsnorm.ts';
import { siluGateRef } from './silu.ts';
import { checkWeightShards, matmulRef, Q4_GROUP, Q4_OFFSET, rowScaleWords, rowWords, type GpuWeight, type WeightFormat, type WeightShard } from './weights.ts';

export const LinearParams = defineUniforms('Params', {
  M: 'u32', // rows of y
  N: 'u32', // columns of y (all shards): its row stride
  K: 'u32',
  rows: 'u32', // rows of W in this shard
  rowStart: 'u32', // first column of y this shard writes
  wWords: 'u32', // u32 (or f32) words per row of weight data
  sWords: 'u32', // u32 words per row of q4 scales (0 otherwise)
  blocksM: 'u32', // row blocks along M
  blocksTotal: 'u32', // blocksM * column blocks of this shard
  eps: 'f32', // RMSNorm prologue's epsilon
  split0: 'u32', // split epilogue: columns [0, split0) go to y, [split0, split0 + split1) to y1, the rest to y2
  split1: 'u32',
});

/** Columns of y per invocation. */
const NB = 4;
/** Most invocations per workgroup (fewer for small outputs: spreadWorkgroupSize). */
const MAX_WG = 64;

export interface LinearArgs {
  x: Binding; // [M, K] f32 (or [xRows, K] with `rows`): a buffer or a range of rows
  w: GpuWeight; // [N, K], any format
  y: Binding; // [M, N] f32 output (overwritten, or added to with `residual`)
  M: number;
  /** Gather prologue: row m of x is x[rows.index[m]]; x holds rows.xRows rows. */
  rows?: { index: GPUBuffer; xRows: number }; // index [M] u32
  /** RMSNorm prologue over each x row (dim K). */
  norm?: { weight: GPUBuffer; eps: number }; // weight [K] f32
  bias?: GPUBuffer; // [N] f32
  /** SiLU-gate pair: y = silu(x·Wᵀ) · (x·upᵀ); `up` has W's shape, format and shards. */
  up?: GpuWeight;
  /** y += result instead of y = result. */
  residual?: boolean;
  /**
   * y = base + result, base [M, N] another buffer (a residual add whose stream must stay intact,
   * e.g. training's xMid = x + o_proj(att), where x is saved for the backward).
   */
  base?: GPUBuffer;
  /**
   * Split epilogue (q/k/v over one concatenated weight): columns [0, cols[0]) of the result go to
   * y as [M, cols[0]], the next cols[1] to y1 as [M, cols[1]], the rest to y2 as [M, N - both].
   */
  split?: { cols: [number, number]; y1: GPUBuffer; y2: GPUBuffer };
}

/** Whether the fused kernel takes this weight: K a multiple of 4 (its rows are read as vec4). */
export function linearSupports(w: GpuWeight): boolean {
  return w.K % 4 === 0;
}

// ---------------------------------------------------------------- CPU reference

export interface LinearRefArgs {
  x: Float32Array; // [M, K] or [xRows, K]
  w: Float32Array; // [N, K] dequantized
  N: number;
  K: number;
  M: number;
  rows?: ArrayLike<number>; // [M]
  norm?: { weight: Float32Array; eps: number };
  bias?: Float32Array; // [N]
  up?: Float32Array; // [N, K] dequantized
  /** The y the result is added to (residual, or the `base` buffer); absent: y = result. */
  residual?: Float32Array; // [M, N]
}

/** The split epilogue's three outputs of an [M, N] result: columns [0, c0), [c0, c0 + c1), the rest. */
export function splitColumnsRef(y: Float32Array, M: number, N: number, c0: number, c1: number): [Float32Array, Float32Array, Float32Array] {
  const widths = [c0, c1, N - c0 - c1];
  const starts = [0, c0, c0 + c1];
  return widths.map((w, i) => {
    const out = new Float32Array(M * w);
    for (let m = 0; m < M; m++) out.set(y.subarray(m * N + starts[i], m * N + starts[i] + w), m * w);
    return out;
  }) as [Float32Array, Float32Array, Float32Array];
}

/** The unfused composition the fused kernel must reproduce, [M, N]. */
export function linearRef(a: LinearRefArgs): Float32Array {
  const { M, N, K } = a;
  requireDims('linearRef', 'shape', { M, N, K });
  requireElements('linearRef', 'w', a.w.length, N * K, [N, K]);
  let x = a.x;
  if (a.rows) {
    requireElements('linearRef', 'rows', a.rows.length, M, [M]);
    x = new Float32Array(M * K);
    for (let m = 0; m < M; m++) x.set(a.x.subarray(a.rows[m] * K, (a.rows[m] + 1) * K), m * K);
  } else requireElements('linearRef', 'x', a.x.length, M * K, [M, K]);
  if (a.norm) x = rmsNormRef(x, a.norm.weight, M, K, a.norm.eps);
  const y = matmulRef(x, a.w, M, N, K);
  if (a.bias) for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) y[m * N + n] += a.bias[n];
  if (a.up) {
    const act = siluGateRef(y, matmulRef(x, a.up, M, N, K));
    y.set(act);
  }
  if (a.residual) for (let i = 0; i < M * N; i++) y[i] += a.residual[i];
  return y;
}

// ---------------------------------------------------------------- GPU

/**
 * Weight loader of one format: declarations at `binding` (+1 for q4 scales) and
 * `load_<name>(n, k) -> vec4f` = W[n, k .. k + 3] (k a multiple of 4, K % 4 == 0). The shader's
 * Params must have wWords and sWords. Shared with the small-M input gradient (matmul-bwd.ts).
 */
export function vec4WeightLoader(format: WeightFormat, name: string, binding: number): string {
  if (format === 'f32') {
    return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<vec4f>; // [rows, K] f32
fn load_${name}(n: u32, k: u32) -> vec4f { return ${name}[(n * p.wWords + k) / 4u]; }`;
  }
  if (format === 'f16') {
    return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<vec2u>; // [rows, K / 2] u32 of f16 pairs
fn load_${name}(n: u32, k: u32) -> vec4f {
  let v = ${name}[(n * p.wWords + k / 2u) / 2u];
  return vec4f(unpack2x16float(v.x), unpack2x16float(v.y));
}`;
  }
  return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<u32>; // [rows, ceil(K / 32) * 4] nibbles
@group(0) @binding(${binding + 1}) var<storage, read> ${name}_s: array<u32>; // [rows, sWords] packed f16 scales
fn load_${name}(n: u32, k: u32) -> vec4f {
  let g = k / ${Q4_GROUP}u;
  let scale = unpack2x16float(${name}_s[n * p.sWords + g / 2u])[g % 2u];
  let bits = ${name}[n * p.wWords + k / 8u] >> (4u * (k % 8u));
  let q = vec4f(f32(bits & 0xfu), f32((bits >> 4u) & 0xfu), f32((bits >> 8u) & 0xfu), f32((bits >> 12u) & 0xfu));
  return (q - ${Q4_OFFSET}.0) * scale;
}`;
}

function weightBindings(format: WeightFormat, s: WeightShard): Binding[] {
  return format === 'q4' ? [s.data, s.scales!] : [s.data];
}

/** Rows of y per invocation for M rows. */
export function linearRowBlock(M: number): number {
  return M <= 2 ? M : 4;
}

interface Features {
  format: WeightFormat;
  MB: number;
  gather: boolean;
  norm: boolean;
  bias: boolean;
  pair: boolean;
  residual: boolean;
  base: boolean;
  split: boolean;
  wg: number;
}

export function linearVariant(f: Features): string {
  const tags = [f.gather && 'gather', f.norm && 'norm', f.bias && 'bias', f.pair && 'silugate', f.residual && 'residual', f.base && 'base', f.split && 'split3'].filter(Boolean);
  return `linear_${f.format}_f32_m${f.MB}x${NB}${tags.length ? `_${tags.join('_')}` : ''}_wg${f.wg}`;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** The specialised WGSL of one variant (bindings in the order linear() passes them). */
function linearShader(f: Features, name: string): string {
  const rowsI = range(f.MB);
  const colsJ = range(NB);
  let b = 3;
  const decl: string[] = [];
  if (f.split) {
    decl.push(`@group(0) @binding(${b++}) var<storage, read_write> y1: array<f32>; // [M, split1]`);
    decl.push(`@group(0) @binding(${b++}) var<storage, read_write> y2: array<f32>; // [M, N - split0 - split1]`);
  }
  if (f.base) decl.push(`@group(0) @binding(${b++}) var<storage, read> base: array<f32>; // [M, N] added to the result`);
  if (f.gather) decl.push(`@group(0) @binding(${b++}) var<storage, read> rowIndex: array<u32>; // [M] source row of x per row of y`);
  if (f.norm) decl.push(`@group(0) @binding(${b++}) var<storage, read> normW: array<vec4f>; // [K] RMSNorm weight`);
  if (f.bias) decl.push(`@group(0) @binding(${b++}) var<storage, read> bias: array<f32>; // [N]`);
  decl.push(vec4WeightLoader(f.format, 'wa', b));
  b += f.format === 'q4' ? 2 : 1;
  if (f.pair) decl.push(vec4WeightLoader(f.format, 'wb', b));

  const body: string[] = [];
  for (const i of rowsI) body.push(`  let r${i} = ${f.gather ? `rowIndex[min(m0 + ${i}u, p.M - 1u)]` : `min(m0 + ${i}u, p.M - 1u)`} * K4;`);
  for (const j of colsJ) body.push(`  let c${j} = min(n0 + ${j}u, p.rows - 1u);`);
  if (f.norm) {
    for (const i of rowsI) body.push(`  var ss${i} = vec4f(0.0);`);
    body.push('  for (var k4 = 0u; k4 < K4; k4++) {');
    for (const i of rowsI) body.push(`    let v${i} = x[r${i} + k4]; ss${i} += v${i} * v${i};`);
    body.push('  }');
    for (const i of rowsI) body.push(`  let inv${i} = inverseSqrt(dot(ss${i}, vec4f(1.0)) / f32(p.K) + p.eps);`);
  }
  for (const i of rowsI) for (const j of colsJ) body.push(`  var a${i}_${j} = 0.0;${f.pair ? ` var b${i}_${j} = 0.0;` : ''}`);
  body.push('  for (var k4 = 0u; k4 < K4; k4++) {');
  body.push('    let k = 4u * k4;');
  if (f.norm) body.push('    let g = normW[k4];');
  for (const i of rowsI) body.push(f.norm ? `    let x${i} = (x[r${i} + k4] * inv${i}) * g;` : `    let x${i} = x[r${i} + k4];`);
  for (const j of colsJ) {
    body.push(`    let w${j} = load_wa(c${j}, k);`);
    for (const i of rowsI) body.push(`    a${i}_${j} += dot(x${i}, w${j});`);
    if (f.pair) {
      body.push(`    let u${j} = load_wb(c${j}, k);`);
      for (const i of rowsI) body.push(`    b${i}_${j} += dot(x${i}, u${j});`);
    }
  }
  body.push('  }');
  for (const i of rowsI) {
    for (const j of colsJ) {
      let v = `a${i}_${j}`;
      if (f.bias) v = `${v} + bias[p.rowStart + n0 + ${j}u]`;
      if (f.pair) v = `silu(${v}) * b${i}_${j}`;
      body.push(`  store(m0 + ${i}u, n0 + ${j}u, ${v});`);
    }
  }

  const src = `// Fused linear ${name} (src/kernels/linear.ts): y[m, rowStart + n] ${f.residual ? '+=' : '='} epilogue(prologue(x)[m, :] · W[n, :]).
// One invocation per block of ${f.MB} rows x ${NB} columns; K walked 4 at a time in registers; no workgroup memory.
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4f>;        // [rows of x, K] f32
@group(0) @binding(2) var<storage, read_write> y: array<f32>;    // [M, N] f32
${decl.join('\n')}

// As shaders/silu_gate.wgsl: exp() only sees -|x|, so it never overflows.
fn silu(v: f32) -> f32 {
  let e = exp(-abs(v));
  return v * select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0);
}

/** y[m, rowStart + n] (+)= v, unless (m, n) lies past M or this shard's rows. */
fn store(m: u32, n: u32, v: f32) {
  if (m >= p.M || n >= p.rows) { return; }
${f.split ? `  let c = p.rowStart + n;
  let s2 = p.N - p.split0 - p.split1;
  if (c < p.split0) { y[m * p.split0 + c] = v; }
  else if (c < p.split0 + p.split1) { y1[m * p.split1 + c - p.split0] = v; }
  else { y2[m * s2 + c - p.split0 - p.split1] = v; }` : `  let i = m * p.N + p.rowStart + n;
  ${f.residual ? 'y[i] = y[i] + v;' : f.base ? 'y[i] = base[i] + v;' : 'y[i] = v;'}`}
}

@compute @workgroup_size(${f.wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let blk = (wid.x + wid.y * nwg.x) * ${f.wg}u + lid;
  if (blk >= p.blocksTotal) { return; }
  let m0 = (blk % p.blocksM) * ${f.MB}u;
  let n0 = (blk / p.blocksM) * ${NB}u;
  let K4 = p.K / 4u;
  // Rows past M and columns past the shard repeat the last one (loads stay in bounds); never stored.
${body.join('\n')}
}
`;
  return specialize(src, { PARAMS: LinearParams.wgsl }, name);
}

/** One dispatch per weight shard (up's shards pair with w's). Guards throw ShapeError before any dispatch is built. */
export function linear(ctx: GpuContext, a: LinearArgs): KernelDispatch[] {
  const K = 'linear';
  const { w, M } = a;
  requireDims(K, 'shape', { M, N: w.N, K: w.K });
  if (!linearSupports(w)) throw new ShapeError(K, 'w', `'${w.label}' has K = ${w.K}; the fused linear needs K % 4 == 0`);
  checkWeightShards(K, `w '${w.label}'`, w);
  const xRows = a.rows ? a.rows.xRows : M;
  if (a.rows) {
    requireDims(K, 'rows.xRows', { xRows });
    requireBufferFits(K, 'rows.index', a.rows.index, [M]);
  }
  requireBufferFits(K, 'x', a.x, [xRows, w.K]);
  if (a.split) {
    const [c0, c1] = a.split.cols;
    const c2 = w.N - c0 - c1;
    if (![c0, c1].every((c) => Number.isInteger(c) && c > 0) || c2 < 1) throw new ShapeError(K, 'split.cols', `= [${c0}, ${c1}] must split N = ${w.N} into three non-empty column ranges`);
    if (a.residual || a.base || a.up) throw new ShapeError(K, 'split', 'cannot be combined with residual, base or the SiLU-gate pair');
    requireBufferFits(K, 'y', a.y, [M, c0]);
    requireBufferFits(K, 'split.y1', a.split.y1, [M, c1]);
    requireBufferFits(K, 'split.y2', a.split.y2, [M, c2]);
    const outs = [bufferOf(a.y), a.split.y1, a.split.y2];
    if (new Set(outs).size !== 3 || outs.includes(bufferOf(a.x))) throw new ShapeError(K, 'split', 'y, y1, y2 and x must be four different buffers');
  } else requireBufferFits(K, 'y', a.y, [M, w.N]);
  if (bufferOf(a.x) === bufferOf(a.y)) throw new ShapeError(K, 'y', 'must not alias x');
  if (a.norm) {
    requireBufferFits(K, 'norm.weight', a.norm.weight, [w.K]);
    if (!(a.norm.eps >= 0 && Number.isFinite(a.norm.eps))) throw new ShapeError(K, 'norm.eps', `= ${a.norm.eps}; it must be a finite number >= 0`);
  }
  if (a.bias) requireBufferFits(K, 'bias', a.bias, [w.N]);
  if (a.up) {
    const u = a.up;
    if (u.N !== w.N || u.K !== w.K || u.format !== w.format) throw new ShapeError(K, 'up', `'${u.label}' is [${u.N}, ${u.K}] ${u.format}; it must match w [${w.N}, ${w.K}] ${w.format}`);
    checkWeightShards(K, `up '${u.label}'`, u);
    const same = u.shards.length === w.shards.length && u.shards.every((s, i) => s.rowStart === w.shards[i].rowStart && s.rows === w.shards[i].rows);
    if (!same) throw new ShapeError(K, 'up', `'${u.label}' is sharded differently from w '${w.label}'`);
    if (a.residual || a.base) throw new ShapeError(K, 'residual', 'cannot be combined with the SiLU-gate pair');
  }
  if (a.base) {
    if (a.residual) throw new ShapeError(K, 'base', 'cannot be combined with residual (y += result)');
    requireBufferFits(K, 'base', a.base, [M, w.N]);
    if (a.base === bufferOf(a.y)) throw new ShapeError(K, 'base', 'must not alias y (use residual: true)');
  }
  const written = [bufferOf(a.y), ...(a.split ? [a.split.y1, a.split.y2] : [])];
  for (const [name, b] of [['rows.index', a.rows?.index], ['norm.weight', a.norm?.weight], ['bias', a.bias]] as const) {
    if (b && written.includes(b)) throw new ShapeError(K, 'y', `must not alias ${name}`);
  }
  const MB = linearRowBlock(M);
  const fewest = Math.min(...w.shards.map((s) => Math.ceil(M / MB) * Math.ceil(s.rows / NB)));
  const f: Features = { wg: spreadWorkgroupSize(fewest, MAX_WG), format: w.format, MB, gather: !!a.rows, norm: !!a.norm, bias: !!a.bias, pair: !!a.up, residual: !!a.residual, base: !!a.base, split: !!a.split };
  const variant = linearVariant(f);
  const nStorage = 2 + (f.base ? 1 : 0) + (f.split ? 2 : 0) + (f.gather ? 1 : 0) + (f.norm ? 1 : 0) + (f.bias ? 1 : 0) + (w.format === 'q4' ? 2 : 1) * (f.pair ? 2 : 1);
  const maxStorage = ctx.limits.maxStorageBuffersPerShaderStage;
  if (nStorage > maxStorage) throw new LimitsTooSmallError('maxStorageBuffersPerShaderStage', nStorage, maxStorage, variant);
  const blocksM = Math.ceil(M / f.MB);
  return w.shards.map((s, i) => {
    const blocksTotal = blocksM * Math.ceil(s.rows / NB);
    const storage: Binding[] = [a.x, a.y]; // x [xRows, K] f32, y [M, N] f32 (with split: [M, cols[0]])
    if (a.split) storage.push(a.split.y1, a.split.y2); // [M, cols[1]], [M, N - cols[0] - cols[1]]
    if (a.base) storage.push(a.base); // [M, N] f32
    if (a.rows) storage.push(a.rows.index); // [M] u32
    if (a.norm) storage.push(a.norm.weight); // [K] f32
    if (a.bias) storage.push(a.bias); // [N] f32
    storage.push(...weightBindings(w.format, s)); // [rows, wWords] (+ q4 scales [rows, sWords])
    if (a.up) storage.push(...weightBindings(w.format, a.up.shards[i]));
    return makeDispatch(ctx, {
      variant,
      code: () => linearShader(f, variant),
      uniforms: LinearParams.pack({ M, N: w.N, K: w.K, rows: s.rows, rowStart: s.rowStart, wWords: rowWords(w.format, w.K), sWords: rowScaleWords(w.format, w.K), blocksM, blocksTotal, eps: a.norm?.eps ?? 0, split0: a.split?.cols[0] ?? 0, split1: a.split?.cols[1] ?? 0 }),
      storage,
      workgroups: grid1d(Math.ceil(blocksTotal / f.wg), ctx.limits.maxComputeWorkgroupsPerDimension),
    });
  });
}
