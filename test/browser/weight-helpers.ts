/** Shared by the matmul-family browser tests: a random Linear weight in any format, as the kernels see it. */
import type { GpuContext } from '../../src/gpu/device.ts';
import { dequantizeRef, packF16Ref, quantizeQ4Ref, rowScaleWords, rowWords, type GpuWeight, type WeightFormat, type WeightShard } from '../../src/kernels/weights.ts';
import { randomF32, upload } from './gpu.ts';

export interface TestWeight {
  weight: GpuWeight;
  dequantized: Float32Array; // [N, K]: exactly the values the kernel multiplies by
}

/** Random [N, K] weights packed on the CPU in `format` and uploaded as shards of `split` rows. */
export function makeWeight(ctx: GpuContext, format: WeightFormat, N: number, K: number, seed: number, split: number[] = [N]): TestWeight {
  const w = randomF32(N * K, seed);
  let data: Float32Array | Uint32Array = w;
  let scales: Uint32Array | undefined;
  if (format === 'f16') data = packF16Ref(w, N, K);
  if (format === 'q4') ({ data, scales } = quantizeQ4Ref(w, N, K));
  const dw = rowWords(format, K), sw = rowScaleWords(format, K);
  const shards: WeightShard[] = [];
  let rowStart = 0;
  for (const rows of split) {
    shards.push({
      rowStart,
      rows,
      data: upload(ctx, data.subarray(rowStart * dw, (rowStart + rows) * dw), `w@${rowStart}`),
      scales: scales && upload(ctx, scales.subarray(rowStart * sw, (rowStart + rows) * sw), `scales@${rowStart}`),
    });
    rowStart += rows;
  }
  return { weight: { label: `test-${format}`, format, N, K, shards }, dequantized: dequantizeRef(format, N, K, data, scales) };
}
