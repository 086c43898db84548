/**
 * Shared setup of the trainer tests: base weights rounded as the GPU stores them (so the CPU
 * TrainingReference sees what the GPU multiplies by), random host adapters, the per-module
 * gradient comparison, and running a plan's units up to (not including) the optimizer.
 */
import { readF32 } from '../../src/gpu/buffers.ts';
import type { GpuContext } from '../../src/gpu/device.ts';
import { dequantizeRef, packF16Ref, quantizeQ4Ref, type WeightFormat } from '../../src/kernels/weights.ts';
import type { GpuAdapter, HostAdapter } from '../../src/learn/adapter.ts';
import { loraKey, type LoraGrads } from '../../src/learn/reference.ts';
import { submitUnits, type DpoTrainer, type PairLogprobs, type StepLoss, type StepPlan } from '../../src/learn/trainer.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import type { HostWeights } from '../../src/model/reference.ts';
import { expectedTensors, LINEAR_MODULES, linearShape } from '../../src/model/tensors.ts';
import { randomF32 } from './gpu.ts';

/** Every matrix (Linears, embedding, untied head) as the GPU holds it in `format`; vectors unchanged. */
export function roundedHost(config: ModelConfig, host: HostWeights, format: WeightFormat): HostWeights {
  if (format === 'f32') return host;
  const out: HostWeights = new Map(host);
  for (const t of expectedTensors(config)) {
    if (t.role === 'vector') continue;
    const [N, K] = t.shape;
    const w = host.get(t.name)!;
    if (format === 'f16') out.set(t.name, dequantizeRef('f16', N, K, packF16Ref(w, N, K)));
    else {
      const q = quantizeQ4Ref(w, N, K);
      out.set(t.name, dequantizeRef('q4', N, K, q.data, q.scales));
    }
  }
  return out;
}

/** A LoRA on every module with A ~ U(±aScale) and B ~ U(±bScale) (B ≠ 0 so dA is not trivially 0). */
export function randomHostAdapter(config: ModelConfig, r: number, seed: number, aScale: number, bScale: number): HostAdapter {
  const tensors = [];
  let s = seed;
  for (let layer = 0; layer < config.nLayers; layer++) {
    for (const module of LINEAR_MODULES) {
      const [out, inp] = linearShape(config, module);
      tensors.push({ layer, module, A: randomF32(r * inp, s++, aScale), B: randomF32(out * r, s++, bScale) });
    }
  }
  return { config: { r, loraAlpha: 2 * r, useRslora: false, targetModules: [...LINEAR_MODULES], baseModelNameOrPath: 'fixture' }, tensors };
}

function norm(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return Math.sqrt(s);
}

/** ||got − want|| / ||want|| (L2 over the whole tensor). */
export function relError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  const d = Array.from(want, (w, i) => got[i] - w);
  return norm(d) / norm(want);
}

export interface ModuleError {
  key: string;
  which: 'A' | 'B';
  rel: number;
  refNorm: number;
}

/** Per (layer, module, A|B): relative L2 error of the GPU grads (flat buffer `flat`) against the reference's. */
export function compareGrads(adapter: GpuAdapter, flat: Float32Array, want: LoraGrads): ModuleError[] {
  const r = adapter.layout.r;
  return adapter.layout.slices.flatMap((s) => {
    const key = loraKey(s.layer, s.module);
    const g = want.get(key);
    if (!g) throw new Error(`reference has no gradient for ${key}`);
    const dA = flat.subarray(s.aOffset, s.aOffset + r * s.inDim);
    const dB = flat.subarray(s.bOffset, s.bOffset + s.outDim * r);
    return [
      { key, which: 'A' as const, rel: relError(dA, g.dA), refNorm: norm(g.dA) },
      { key, which: 'B' as const, rel: relError(dB, g.dB), refNorm: norm(g.dB) },
    ];
  });
}

/** Run a plan's forward, the DPO loss, and the backward up to the optimizer; returns the loss and the accumulated grads. */
export async function gradientsOf(ctx: GpuContext, trainer: DpoTrainer, plan: StepPlan, ref: PairLogprobs): Promise<{ loss: StepLoss; grads: Float32Array }> {
  ctx.device.pushErrorScope('validation');
  submitUnits(ctx, plan.forward);
  const loss = await trainer.loss(plan, ref);
  submitUnits(ctx, plan.backward.filter((u) => u.kind !== 'optimizer'));
  const grads = await readF32(ctx, trainer.adapter.grads, trainer.adapter.layout.n);
  const err = await ctx.device.popErrorScope();
  if (err) throw new Error(`GPU validation error: ${err.message}`);
  return { loss, grads };
}

/** Zero the adapter's accumulated gradients (what the optimizer unit would have done). */
export function zeroGrads(ctx: GpuContext, adapter: GpuAdapter): void {
  ctx.device.queue.writeBuffer(adapter.grads, 0, new Float32Array(adapter.layout.n));
}
