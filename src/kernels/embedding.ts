/**
 * Embedding gather: out[t, :] = table[tokens[t], :]. The table is a GpuWeight [vocab, hidden] in
 * any storage format, because with tied embeddings the same tensor is the LM head and is stored
 * like a Linear weight. One dispatch per row shard; each writes only the tokens whose id falls in
 * its rows. Ids >= vocab produce a row of zeros (never an out-of-bounds read).
 */
import embeddingWgsl from '../../shaders/embedding.wgsl?raw';
import type { GpuContext } from '../gpu/device.ts';
import { grid1d, makeDispatch, type KernelDispatch } from '../gpu/dispatch.ts';
import { requireBufferFits, requireDims } from '../gpu/shape.ts';
import { specialize } from '../gpu/shader.ts';
import { defineUniforms } from '../gpu/uniforms.ts';
import { checkWeightShards, rowScaleWords, rowWords, type GpuWeight, type WeightFormat } from './weights.ts';

export const EmbeddingParams = defineUniforms('Params', {
  T: 'u32',
  hidden: 'u32',
  vocab: 'u32',
  rowStart: 'u32',
  rows: 'u32',
  rowWords: 'u32',
  scaleWords: 'u32',
  ownsOutOfRange: 'u32',
});
const WG = 256;
const FORMAT_CODE: Record<WeightFormat, number> = { f32: 0, f16: 1, q4: 2 };

/** CPU reference over the dequantized table [vocab, hidden] (dequantizeRef): ids >= vocab give zeros. */
export function embeddingRef(tokens: Uint32Array, table: Float32Array, vocab: number, hidden: number): Float32Array {
  const out = new Float32Array(tokens.length * hidden);
  tokens.forEach((id, t) => {
    if (id < vocab) out.set(table.subarray(id * hidden, (id + 1) * hidden), t * hidden);
  });
  return out;
}

export interface EmbeddingArgs {
  tokens: GPUBuffer; // [T] u32 token ids (per-token data: storage, rewritten each step)
  table: GpuWeight; // [vocab, hidden] in any WeightFormat, possibly row-sharded
  out: GPUBuffer; // [T, hidden] f32 (overwritten)
  T: number;
}

function checkTable(kernel: string, w: GpuWeight): void {
  requireDims(kernel, `table '${w.label}'`, { vocab: w.N, hidden: w.K });
  checkWeightShards(kernel, `table '${w.label}'`, w);
}

export function embedding(ctx: GpuContext, a: EmbeddingArgs): KernelDispatch[] {
  const w = a.table;
  requireDims('embedding', 'T', { T: a.T });
  checkTable('embedding', w);
  requireBufferFits('embedding', 'tokens', a.tokens, [a.T]);
  requireBufferFits('embedding', 'out', a.out, [a.T, w.K]);
  const variant = `embedding_${w.format}_f32_wg${WG}`;
  const code = () => specialize(embeddingWgsl, { PARAMS: EmbeddingParams.wgsl, FORMAT: FORMAT_CODE[w.format], WG }, variant);
  const workgroups = grid1d(Math.ceil((a.T * w.K) / WG), ctx.limits.maxComputeWorkgroupsPerDimension);
  return w.shards.map((s, i) =>
    makeDispatch(ctx, {
      variant,
      code,
      uniforms: EmbeddingParams.pack({
        T: a.T,
        hidden: w.K,
        vocab: w.N,
        rowStart: s.rowStart,
        rows: s.rows,
        rowWords: rowWords(w.format, w.K),
        scaleWords: rowScaleWords(w.format, w.K),
        ownsOutOfRange: i === w.shards.length - 1 ? 1 : 0,
      }),
      // The shader declares a scales binding for every format; without q4 scales the table is bound
      // there again (read-only twice is allowed) so one WGSL source serves all formats.
      storage: [a.tokens, s.data, s.scales ?? s.data, a.out],
      workgroups,
    }),
  );
}
