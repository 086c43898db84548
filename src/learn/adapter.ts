/**
 * A trainable LoRA adapter on the GPU: every A and B of every target module of every layer in one
 * flat parameter buffer, with gradient, first- and second-moment buffers of the same layout, so
 * AdamW (src/kernels/adamw.ts) updates the whole adapter in three dispatches.
 *
 * Flat layout (elements, f32): for layer 0..nLayers-1, for each target module in LINEAR_MODULES
 * order: A [r, in] at aOffset, then B [out, r] at bOffset. Every slice starts at a multiple of
 * SLICE_ALIGN elements (256 bytes, WebGPU's minStorageBufferOffsetAlignment default), so a slice
 * can also be bound on its own; the padding between slices is 0 in params and grads and stays 0
 * (a zero gradient gives a zero AdamW update). loraForward/loraBackward take the offsets.
 *
 * Init as PEFT: A = kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)) from the GPU fill
 * (seeded, index = the flat offset, so every slice gets its own stream); B = 0.
 */
import { createStorage, readF32 } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/device.ts';
import { encodeDispatches, releaseDispatches, type KernelDispatch } from '../gpu/dispatch.ts';
import { LimitsTooSmallError } from '../gpu/errors.ts';
import { fillUniform } from '../kernels/fill.ts';
import { loraScale } from '../kernels/lora.ts';
import type { ModelConfig } from '../model/config.ts';
import { LINEAR_MODULES, linearShape, type LinearModule } from '../model/tensors.ts';
import { firstNonFinite } from '../model/validate.ts';
import { AdapterConfigError, AdapterShapeError, LearnError } from './errors.ts';

/** A host adapter tensor holds NaN or ±Infinity (a diverged training run): names the tensor and element. */
export class NonFiniteAdapterError extends LearnError {
  constructor(
    readonly tensor: string,
    readonly index: number,
    value: number,
  ) {
    super('non-finite-adapter', `adapter tensor ${tensor} holds ${value} at element ${index}; adapter weights must be finite numbers`);
  }
}

/** Slice starts are multiples of this many elements (256 bytes). */
export const SLICE_ALIGN = 64;

export interface AdapterConfig {
  r: number;
  loraAlpha: number;
  useRslora: boolean;
  /** A subset of LINEAR_MODULES. */
  targetModules: LinearModule[];
  baseModelNameOrPath: string;
}

/** Where one module's A and B live in the flat buffers. */
export interface AdapterSlice {
  layer: number;
  module: LinearModule;
  inDim: number;
  outDim: number;
  aOffset: number; // elements; A [r, inDim]
  bOffset: number; // elements; B [outDim, r]
}

export interface AdapterLayout {
  r: number;
  slices: AdapterSlice[];
  /** Elements of the flat buffers (slices + alignment padding). */
  n: number;
}

export interface GpuAdapter {
  readonly config: AdapterConfig;
  readonly model: ModelConfig;
  readonly layout: AdapterLayout;
  /** PEFT scaling: loraAlpha / r, or / sqrt(r) with rsLoRA. */
  readonly scale: number;
  readonly params: GPUBuffer; // [n] f32
  readonly grads: GPUBuffer; // [n] f32, accumulated by loraBackward, zeroed by AdamW
  readonly m: GPUBuffer; // [n] f32 AdamW first moments
  readonly v: GPUBuffer; // [n] f32 AdamW second moments
  /** [1] f32 = scale: loraForward's per-slot scale buffer for this single adapter (nSlots 1, ids all 0). */
  readonly scales: GPUBuffer;
  slice(layer: number, module: LinearModule): AdapterSlice | undefined;
  destroy(): void;
}

/** One module's tensors on the host, PEFT shapes: A [r, in], B [out, r]. */
export interface HostLora {
  layer: number;
  module: LinearModule;
  A: Float32Array;
  B: Float32Array;
}

/** An adapter on the host: what readAdapter returns, PEFT export writes and import produces. */
export interface HostAdapter {
  config: AdapterConfig;
  /** One entry per (layer, target module), in layout order. */
  tensors: HostLora[];
}

/** Check `c` against the model; every failure names the field. */
export function validateAdapterConfig(model: ModelConfig, c: AdapterConfig, file = 'adapter config'): void {
  if (!Number.isInteger(c.r) || c.r <= 0) throw new AdapterConfigError('r', `= ${c.r}; the rank must be a positive integer`, file);
  if (!(Number.isFinite(c.loraAlpha) && c.loraAlpha > 0)) throw new AdapterConfigError('lora_alpha', `= ${c.loraAlpha}; it must be a finite number > 0`, file);
  if (typeof c.useRslora !== 'boolean') throw new AdapterConfigError('use_rslora', `= ${String(c.useRslora)}; it must be true or false`, file);
  if (!Array.isArray(c.targetModules) || c.targetModules.length === 0) throw new AdapterConfigError('target_modules', 'must be a non-empty list of module names', file);
  const seen = new Set<string>();
  for (const m of c.targetModules) {
    if (!(LINEAR_MODULES as readonly string[]).includes(m)) throw new AdapterConfigError('target_modules', `names '${String(m)}', not a Linear of ${model.architecture} (${LINEAR_MODULES.join(', ')})`, file);
    if (seen.has(m)) throw new AdapterConfigError('target_modules', `lists '${m}' twice`, file);
    seen.add(m);
  }
  if (typeof c.baseModelNameOrPath !== 'string') throw new AdapterConfigError('base_model_name_or_path', 'must be a string', file);
}

/** Target modules in LINEAR_MODULES order (the layout's and the export's order). */
export function orderedTargets(c: AdapterConfig): LinearModule[] {
  return LINEAR_MODULES.filter((m) => c.targetModules.includes(m));
}

export function adapterLayout(model: ModelConfig, c: AdapterConfig): AdapterLayout {
  validateAdapterConfig(model, c);
  const align = (x: number) => Math.ceil(x / SLICE_ALIGN) * SLICE_ALIGN;
  const slices: AdapterSlice[] = [];
  let at = 0;
  for (let layer = 0; layer < model.nLayers; layer++) {
    for (const module of orderedTargets(c)) {
      const [outDim, inDim] = linearShape(model, module);
      const aOffset = at;
      const bOffset = align(aOffset + c.r * inDim);
      at = align(bOffset + outDim * c.r);
      slices.push({ layer, module, inDim, outDim, aOffset, bOffset });
    }
  }
  return { r: c.r, slices, n: at };
}

/** Allocate and initialise an adapter as PEFT does (A uniform, B zero), seeded. */
export async function createAdapter(ctx: GpuContext, model: ModelConfig, config: AdapterConfig, seed: number): Promise<GpuAdapter> {
  const layout = adapterLayout(model, config);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new AdapterConfigError('seed', `= ${seed}; it must be a u32`);
  const bytes = layout.n * 4;
  if (bytes > ctx.limits.maxStorageBufferBindingSize) throw new LimitsTooSmallError('maxStorageBufferBindingSize', bytes, ctx.limits.maxStorageBufferBindingSize, `LoRA adapter r=${config.r} on ${orderedTargets(config).length} modules x ${model.nLayers} layers (one flat buffer)`);
  const made: GPUBuffer[] = [];
  const buf = (label: string) => {
    const b = createStorage(ctx, bytes, label); // zero-initialised by WebGPU
    made.push(b);
    return b;
  };
  try {
    const params = buf('lora.params'), grads = buf('lora.grads'), m = buf('lora.m'), v = buf('lora.v');
    const scale = loraScale(config.r, config.loraAlpha, config.useRslora);
    const scales = createStorage(ctx, 4, 'lora.scale'); // [1] f32
    made.push(scales);
    ctx.device.queue.writeBuffer(scales, 0, new Float32Array([scale]));
    await initA(ctx, params, layout, seed);
    const index = new Map(layout.slices.map((s) => [`${s.layer}.${s.module}`, s]));
    return {
      config: { ...config, targetModules: orderedTargets(config) },
      model,
      layout,
      scale,
      params,
      grads,
      m,
      v,
      scales,
      slice: (layer, module) => index.get(`${layer}.${module}`),
      destroy: () => made.forEach((b) => b.destroy()),
    };
  } catch (e) {
    made.forEach((b) => b.destroy());
    throw e;
  }
}

/**
 * A slices = U(-1/sqrt(in), 1/sqrt(in)). The fill writes from element 0 of its output, so each
 * slice is filled into a staging buffer and copied to its offset; the hash index is the slice's
 * flat offset (`first`), so slices get distinct values and the result depends only on the seed.
 */
async function initA(ctx: GpuContext, params: GPUBuffer, layout: AdapterLayout, seed: number): Promise<void> {
  const most = Math.max(...layout.slices.map((s) => layout.r * s.inDim));
  const staging = createStorage(ctx, most * 4, 'lora.init'); // [r, in] f32 of the largest A
  const fills: KernelDispatch[] = [];
  try {
    const enc = ctx.device.createCommandEncoder({ label: 'lora init' });
    for (const s of layout.slices) {
      const n = layout.r * s.inDim;
      const bound = 1 / Math.sqrt(s.inDim);
      fills.push(fillUniform(ctx, { out: staging, n, seed, lo: -bound, hi: bound, first: s.aOffset }));
      encodeDispatches(enc, fills.slice(-1));
      enc.copyBufferToBuffer(staging, 0, params, s.aOffset * 4, n * 4);
    }
    ctx.device.queue.submit([enc.finish()]);
    await ctx.device.queue.onSubmittedWorkDone();
  } finally {
    releaseDispatches(fills);
    staging.destroy();
  }
}

/** The module's A and B of the flat params, copied out (host side, e.g. for export or tests). */
export async function readAdapter(ctx: GpuContext, a: GpuAdapter): Promise<HostAdapter> {
  const all = await readF32(ctx, a.params, a.layout.n);
  const r = a.layout.r;
  return {
    config: { ...a.config, targetModules: [...a.config.targetModules] },
    tensors: a.layout.slices.map((s) => ({
      layer: s.layer,
      module: s.module,
      A: all.slice(s.aOffset, s.aOffset + r * s.inDim),
      B: all.slice(s.bOffset, s.bOffset + s.outDim * r),
    })),
  };
}

/**
 * Check that `host` has exactly one A [r, in] and B [out, r] for every (layer, target module) of
 * `config` on `model`, and nothing else, every value finite (NonFiniteAdapterError). Returns the
 * tensors keyed by `${layer}.${module}`.
 */
export function checkHostAdapter(model: ModelConfig, host: HostAdapter): Map<string, HostLora> {
  validateAdapterConfig(model, host.config);
  const r = host.config.r;
  const byKey = new Map<string, HostLora>();
  for (const t of host.tensors) {
    const key = `${t.layer}.${t.module}`;
    const name = `layers.${t.layer}.${t.module}`;
    if (!Number.isInteger(t.layer) || t.layer < 0 || t.layer >= model.nLayers || !host.config.targetModules.includes(t.module)) {
      throw new AdapterShapeError(name, `is not a (layer, target module) of this adapter (${model.nLayers} layers, targets ${host.config.targetModules.join(', ')})`);
    }
    if (byKey.has(key)) throw new AdapterShapeError(name, 'appears twice');
    const [outDim, inDim] = linearShape(model, t.module);
    if (!(t.A instanceof Float32Array) || t.A.length !== r * inDim) throw new AdapterShapeError(`${name}.lora_A`, `has ${t.A?.length} elements, [r=${r}, in=${inDim}] needs ${r * inDim}`);
    if (!(t.B instanceof Float32Array) || t.B.length !== outDim * r) throw new AdapterShapeError(`${name}.lora_B`, `has ${t.B?.length} elements, [out=${outDim}, r=${r}] needs ${outDim * r}`);
    for (const [which, values] of [['lora_A', t.A], ['lora_B', t.B]] as const) {
      const bad = firstNonFinite(values);
      if (bad >= 0) throw new NonFiniteAdapterError(`${name}.${which}`, bad, values[bad]);
    }
    byKey.set(key, t);
  }
  for (let layer = 0; layer < model.nLayers; layer++) {
    for (const m of host.config.targetModules) if (!byKey.has(`${layer}.${m}`)) throw new AdapterShapeError(`layers.${layer}.${m}`, 'is missing');
  }
  return byKey;
}

/**
 * Write host tensors into the adapter's parameters (bit-exact). The host adapter must have the
 * adapter's rank, alpha, rsLoRA flag and target modules; the optimizer moments are left as they are
 * (pass resetMoments to zero them, e.g. when loading weights to train from).
 */
export function writeAdapter(ctx: GpuContext, a: GpuAdapter, host: HostAdapter, options: { resetMoments?: boolean } = {}): void {
  const c = a.config, h = host.config;
  if (h.r !== c.r) throw new AdapterShapeError('config.r', `= ${h.r}, the GPU adapter has rank ${c.r}`);
  if (h.loraAlpha !== c.loraAlpha || h.useRslora !== c.useRslora) throw new AdapterShapeError('config.lora_alpha', `${h.loraAlpha} (rslora ${h.useRslora}) differs from the GPU adapter's ${c.loraAlpha} (rslora ${c.useRslora})`);
  const want = orderedTargets(c).join(','), got = orderedTargets(h).join(',');
  if (want !== got) throw new AdapterShapeError('config.target_modules', `[${got}] differ from the GPU adapter's [${want}]`);
  const byKey = checkHostAdapter(a.model, host);
  const all = new Float32Array(a.layout.n); // padding stays 0
  for (const s of a.layout.slices) {
    const t = byKey.get(`${s.layer}.${s.module}`)!;
    all.set(t.A, s.aOffset);
    all.set(t.B, s.bOffset);
  }
  ctx.device.queue.writeBuffer(a.params, 0, all);
  if (options.resetMoments) {
    const zeros = new Float32Array(a.layout.n);
    ctx.device.queue.writeBuffer(a.m, 0, zeros);
    ctx.device.queue.writeBuffer(a.v, 0, zeros);
  }
}
