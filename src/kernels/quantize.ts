/**
 * Weight upload and conversion at load. A Linear weight arrives as f32 rows (from a checkpoint
 * parser, or already on the GPU) and is stored in one of the formats of weights.ts, split along N
 * into shards that each fit one storage binding. The conversion to 'f16' and 'q4' runs on the GPU
 * (shaders/pack_f16.wgsl, shaders/quant_q4.wgsl); their CPU specs are packF16Ref / quantizeQ4Ref.
 */
import f16BitsWgsl from '../../shaders/f16_bits.wgsl?raw';
import packF16Wgsl from '../../shaders/pack_f16.wgsl?raw';
import quantQ4Wgsl from '../../shaders/quant_q4.wgsl?raw';
import { createStorage, planRowShards, uploadStorage } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/device.ts';
import { grid1d, makeDispatch, runOnce, type KernelDispatch } from '../gpu/dispatch.ts';
import { requireBufferFits, requireDims, requireElements } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';
import { rowScaleWords, rowWords, type GpuWeight, type WeightFormat, type WeightShard } from './weights.ts';

/**
 * K: elements per row; rows: rows converted by this dispatch; dstRow: where they go in the shard;
 * words / scaleWords: u32 words per stored row of data and of q4 scales.
 */
export const ConvertParams = defineUniforms('Params', { K: 'u32', rows: 'u32', dstRow: 'u32', words: 'u32', scaleWords: 'u32' });
const WG = 64;

/** f32 rows [rows, K] of the weight starting at rowStart: on the CPU, or a GPU buffer holding them. */
export type RowSource = (rowStart: number, rows: number) => Float32Array | GPUBuffer | Promise<Float32Array | GPUBuffer>;

export interface BuildWeightOptions {
  /** Shard sizes are multiples of this many rows (a matmul tile that must not straddle shards). */
  rowMultiple?: number;
  /** Cap on the f32 bytes of one rowsOf batch (a streaming loader bounds its staging with it). */
  maxBatchBytes?: number;
}

/**
 * Build a GpuWeight [N, K] in `format` from f32 rows. Shards are planned against the binding limit
 * of the stored format; rows are fetched and converted in batches whose f32 staging also fits one
 * binding (a q4 shard holds 8x more rows than an f32 binding of the same size).
 */
export async function buildWeight(ctx: GpuContext, N: number, K: number, format: WeightFormat, label: string, rowsOf: RowSource, options: BuildWeightOptions = {}): Promise<GpuWeight> {
  requireDims('buildWeight', `weight '${label}'`, { N, K });
  const maxBinding = ctx.limits.maxStorageBufferBindingSize;
  const words = rowWords(format, K);
  const scaleWords = rowScaleWords(format, K);
  const plan = planRowShards(N, words * 4, maxBinding, options.rowMultiple ?? 1, `weight '${label}'`);
  // f32 rows per conversion batch: the staging [batch, K] f32 must fit one binding too.
  const batchRows = Math.max(1, Math.floor(Math.min(maxBinding, options.maxBatchBytes ?? Infinity) / (K * 4)));
  const shards: WeightShard[] = [];
  for (const { rowStart, rows } of plan) {
    const shard: WeightShard = {
      rowStart,
      rows,
      data: createStorage(ctx, rows * words * 4, `${label}[${rowStart}:${rowStart + rows}]`), // [rows, words] u32 (f32 for 'f32')
      scales: format === 'q4' ? createStorage(ctx, rows * scaleWords * 4, `${label}.scales[${rowStart}:${rowStart + rows}]`) : undefined, // [rows, scaleWords] u32
    };
    for (let done = 0; done < rows; done += batchRows) {
      const n = Math.min(batchRows, rows - done);
      await fillRows(ctx, shard, format, K, done, n, await rowsOf(rowStart + done, n), label);
    }
    shards.push(shard);
  }
  await ctx.device.queue.onSubmittedWorkDone();
  return { label, format, N, K, shards };
}

/** buildWeight from one f32 array [N, K] on the CPU. */
export async function uploadWeight(ctx: GpuContext, data: Float32Array, N: number, K: number, format: WeightFormat, label: string, options: BuildWeightOptions = {}): Promise<GpuWeight> {
  requireDims('uploadWeight', `weight '${label}'`, { N, K });
  requireElements('uploadWeight', `weight '${label}'`, data.length, N * K, [N, K]);
  return await buildWeight(ctx, N, K, format, label, (r, n) => data.subarray(r * K, (r + n) * K), options);
}

/** Store `rows` f32 rows [rows, K] at row `dstRow` of the shard, converting on the GPU. */
async function fillRows(ctx: GpuContext, shard: WeightShard, format: WeightFormat, K: number, dstRow: number, rows: number, src: Float32Array | GPUBuffer, label: string): Promise<void> {
  const what = `weight '${label}' rows [${shard.rowStart + dstRow}, +${rows})`;
  if (src instanceof Float32Array) requireElements('buildWeight', what, src.length, rows * K, [rows, K]);
  else requireBufferFits('buildWeight', what, src, [rows, K]);
  if (format === 'f32') {
    // Nothing to convert: straight into the shard.
    if (src instanceof Float32Array) ctx.device.queue.writeBuffer(shard.data, dstRow * K * 4, src.buffer, src.byteOffset, rows * K * 4);
    else {
      const enc = ctx.device.createCommandEncoder({ label: `copy ${label}` });
      enc.copyBufferToBuffer(src, 0, shard.data, dstRow * K * 4, rows * K * 4);
      ctx.device.queue.submit([enc.finish()]);
    }
    return;
  }
  const staging = src instanceof Float32Array ? uploadStorage(ctx, src.subarray(0, rows * K), `${label} f32 staging`) : src; // [rows, K] f32
  await runOnce(ctx, [convertDispatch(ctx, shard, format, K, dstRow, rows, staging)]);
  if (staging !== src) staging.destroy();
}

/** The dispatch converting f32 [rows, K] to rows dstRow.. of the shard in 'f16' or 'q4'. */
export function convertDispatch(ctx: GpuContext, shard: WeightShard, format: 'f16' | 'q4', K: number, dstRow: number, rows: number, src: GPUBuffer): KernelDispatch {
  const words = rowWords(format, K);
  const scaleWords = rowScaleWords(format, K);
  const uniforms = ConvertParams.pack({ K, rows, dstRow, words, scaleWords });
  if (format === 'f16') {
    const variant = `pack_f16_wg${WG}`;
    return makeDispatch(ctx, {
      variant,
      code: () => specialize(`${packF16Wgsl}\n${f16BitsWgsl}`, { PARAMS: ConvertParams.wgsl, WG }, variant),
      uniforms,
      storage: [src, shard.data],
      workgroups: grid1d(Math.ceil((rows * words) / WG), ctx.limits.maxComputeWorkgroupsPerDimension),
    });
  }
  const variant = `quant_q4_wg${WG}`;
  return makeDispatch(ctx, {
    variant,
    code: () => specialize(`${quantQ4Wgsl}\n${f16BitsWgsl}`, { PARAMS: ConvertParams.wgsl, WG }, variant),
    uniforms,
    storage: [src, shard.data, shard.scales!],
    workgroups: grid1d(Math.ceil((rows * scaleWords) / WG), ctx.limits.maxComputeWorkgroupsPerDimension),
  });
}
