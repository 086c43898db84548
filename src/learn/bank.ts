/**
 * Adapter bank for serving: several LoRA adapters resident at once, so one batch can mix rows of
 * different adapters (and rows with none). Layout, in one f32 buffer, per layer, per bank module
 * (LINEAR_MODULES order): A [nSlots, r, in] at aOffset, then B [nSlots, out, r] at bOffset, each
 * region starting at a multiple of SLICE_ALIGN elements. scales [nSlots] f32 holds each slot's
 * PEFT scale (0 when empty). r is the bank's rank: an adapter of lower rank is zero-padded, a
 * module an adapter does not target holds zeros; both add exactly nothing. Rows pick their slot
 * through loraForward's ids buffer [M] u32 (NO_ADAPTER for none).
 */
import { createStorage } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/device.ts';
import type { KernelDispatch } from '../gpu/dispatch.ts';
import { LimitsTooSmallError } from '../gpu/errors.ts';
import { loraForward, loraScale } from '../kernels/lora.ts';
import type { ModelConfig } from '../model/config.ts';
import { LINEAR_MODULES, linearShape, type LinearModule } from '../model/tensors.ts';
import { checkHostAdapter, SLICE_ALIGN, type HostAdapter } from './adapter.ts';
import { AdapterConfigError, AdapterSlotError, AdapterShapeError } from './errors.ts';

export interface BankOptions {
  nSlots: number;
  /** The bank's rank: the largest rank an adapter may have. */
  rank: number;
  /** Modules that get a LoRA path in the forward (union of what the served adapters target). */
  targetModules: LinearModule[];
}

export interface BankRegion {
  layer: number;
  module: LinearModule;
  inDim: number;
  outDim: number;
  aOffset: number; // elements: A [nSlots, r, inDim]
  bOffset: number; // elements: B [nSlots, outDim, r]
}

export interface AdapterBank {
  readonly nSlots: number;
  readonly r: number;
  readonly targetModules: readonly LinearModule[];
  readonly buffer: GPUBuffer; // all regions, f32
  readonly scales: GPUBuffer; // [nSlots] f32
  region(layer: number, module: LinearModule): BankRegion | undefined;
  /** Copy a host adapter into `slot` (zero-padded to the bank rank), and set its scale. */
  load(slot: number, adapter: HostAdapter): void;
  /** Empty `slot`: zero scale, so rows still naming it get no delta. */
  unload(slot: number): void;
  /** loraForward for one module: y [M, out] += the delta of each row's slot. */
  forward(layer: number, module: LinearModule, io: { x: GPUBuffer; y: GPUBuffer; h: GPUBuffer; ids: GPUBuffer; M: number }): KernelDispatch[];
  destroy(): void;
}

export function createAdapterBank(ctx: GpuContext, model: ModelConfig, o: BankOptions): AdapterBank {
  if (!Number.isInteger(o.nSlots) || o.nSlots <= 0) throw new AdapterConfigError('nSlots', `= ${o.nSlots}; it must be a positive integer`, 'adapter bank');
  if (!Number.isInteger(o.rank) || o.rank <= 0) throw new AdapterConfigError('rank', `= ${o.rank}; it must be a positive integer`, 'adapter bank');
  const targets = LINEAR_MODULES.filter((m) => o.targetModules.includes(m));
  if (targets.length === 0 || targets.length !== new Set(o.targetModules).size) throw new AdapterConfigError('targetModules', `[${o.targetModules.join(', ')}] must be a non-empty list of distinct ${LINEAR_MODULES.join('/')}`, 'adapter bank');
  const { nSlots, rank: r } = o;
  const align = (x: number) => Math.ceil(x / SLICE_ALIGN) * SLICE_ALIGN;
  const regions: BankRegion[] = [];
  let at = 0;
  for (let layer = 0; layer < model.nLayers; layer++) {
    for (const module of targets) {
      const [outDim, inDim] = linearShape(model, module);
      const aOffset = at, bOffset = align(at + nSlots * r * inDim);
      at = align(bOffset + nSlots * outDim * r);
      regions.push({ layer, module, inDim, outDim, aOffset, bOffset });
    }
  }
  if (at * 4 > ctx.limits.maxStorageBufferBindingSize) throw new LimitsTooSmallError('maxStorageBufferBindingSize', at * 4, ctx.limits.maxStorageBufferBindingSize, `adapter bank of ${nSlots} slots at rank ${r}`);
  const buffer = createStorage(ctx, at * 4, 'lora.bank');
  const scales = createStorage(ctx, nSlots * 4, 'lora.bank.scales');
  const index = new Map(regions.map((g) => [`${g.layer}.${g.module}`, g]));
  const checkSlot = (slot: number) => {
    if (!Number.isInteger(slot) || slot < 0 || slot >= nSlots) throw new AdapterSlotError(`slot ${slot} is not in [0, ${nSlots})`);
  };
  return {
    nSlots,
    r,
    targetModules: targets,
    buffer,
    scales,
    region: (layer, module) => index.get(`${layer}.${module}`),
    load(slot, adapter) {
      checkSlot(slot);
      const byKey = checkHostAdapter(model, adapter);
      const ra = adapter.config.r;
      if (ra > r) throw new AdapterShapeError('config.r', `= ${ra} is above the bank's rank ${r}`);
      const extra = adapter.config.targetModules.filter((m) => !targets.includes(m));
      if (extra.length) throw new AdapterShapeError('config.target_modules', `include ${extra.join(', ')}, which the bank does not serve`);
      for (const g of regions) {
        const t = byKey.get(`${g.layer}.${g.module}`);
        const A = new Float32Array(r * g.inDim); // rows ra.. stay 0
        const B = new Float32Array(g.outDim * r); // columns ra.. stay 0
        if (t) {
          A.set(t.A);
          for (let o2 = 0; o2 < g.outDim; o2++) B.set(t.B.subarray(o2 * ra, (o2 + 1) * ra), o2 * r);
        }
        ctx.device.queue.writeBuffer(buffer, (g.aOffset + slot * r * g.inDim) * 4, A);
        ctx.device.queue.writeBuffer(buffer, (g.bOffset + slot * g.outDim * r) * 4, B);
      }
      ctx.device.queue.writeBuffer(scales, slot * 4, new Float32Array([loraScale(ra, adapter.config.loraAlpha, adapter.config.useRslora)]));
    },
    unload(slot) {
      checkSlot(slot);
      ctx.device.queue.writeBuffer(scales, slot * 4, new Float32Array([0]));
    },
    forward(layer, module, io) {
      const g = index.get(`${layer}.${module}`);
      if (!g) throw new AdapterSlotError(`the bank serves no LoRA on layer ${layer} ${module}`);
      return loraForward(ctx, { ...io, A: buffer, B: buffer, scales, inDim: g.inDim, outDim: g.outDim, r, nSlots, aOffset: g.aOffset, bOffset: g.bOffset });
    },
    destroy() {
      buffer.destroy();
      scales.destroy();
    },
  };
}
