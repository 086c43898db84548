/**
 * The kernel benchmark: copy bandwidth (the practical roofline), decode GEMV at M = 1 and 4 and
 * prefill GEMM at M = 128, in every weight format, on the real per-layer shapes of SmolLM2-135M
 * and Llama-3.2-1B. Environment-agnostic: it takes a GpuContext, so the bench page, the demo and
 * `mace bench kernels --node` (Dawn) all run this same code.
 *
 * Weights are made on the GPU (fill.ts random values, converted by buildWeight), never as JS
 * arrays: Llama's f32 lm_head alone is 1 GB.
 */
import { createStorage } from '../src/gpu/buffers.ts';
import { describeGpu, type GpuContext } from '../src/gpu/device.ts';
import { encodeDispatches, type KernelDispatch } from '../src/gpu/dispatch.ts';
import { copyF32 } from '../src/kernels/copy.ts';
import { fillUniform } from '../src/kernels/fill.ts';
import { gemm } from '../src/kernels/gemm.ts';
import { GEMV_MAX_M, gemv } from '../src/kernels/gemv.ts';
import { buildWeight } from '../src/kernels/quantize.ts';
import { WEIGHT_FORMATS, weightBytes, type GpuWeight, type WeightFormat } from '../src/kernels/weights.ts';
import { gbPerSec, median, summarizeDecode, type BenchVariant, type KernelBenchResult } from './report.ts';
import { BENCH_MODEL_IDS, BENCH_MODELS, decodeShapes, prefillLayers, type BenchModelId, type LayerShape } from './shapes.ts';
import { timeCall, type TimingPlan } from './timing.ts';

export { benchToMarkdown, summarizeDecode, type BenchVariant, type DecodeSummary, type KernelBenchResult } from './report.ts';
export { BENCH_MODEL_IDS, type BenchModelId } from './shapes.ts';

export interface KernelBenchOptions {
  /** Default: both models; with `quick`, SmolLM2-135M only. */
  models?: BenchModelId[];
  /** Default: f32, f16, q4. */
  formats?: WeightFormat[];
  /** Timed submissions per variant (median). Default 7, quick 3. */
  iters?: number;
  /** SmolLM2 only, fewer iterations, shorter submissions, fewer GEMM shapes, a smaller copy buffer. */
  quick?: boolean;
  /** Recorded in the result; default: 'chromium' when there is a DOM, else 'node'. */
  env?: 'chromium' | 'node';
  /** Progress for people: a line of text and the fraction done in [0, 1]. */
  onProgress?: (message: string, fraction: number) => void;
}

const DECODE_MS = [1, 4];
const PREFILL_M = 128;
/** Copy buffer: big enough that no cache holds it, capped by the binding and buffer limits. */
const COPY_BYTES = { quick: 128 * 2 ** 20, full: 256 * 2 ** 20 };
/** Weight values ~ U(-0.05, 0.05): magnitudes of a trained layer (the timing does not depend on them). */
const W_RANGE = { lo: -0.05, hi: 0.05 };

export async function runKernelBench(ctx: GpuContext, opts: KernelBenchOptions = {}): Promise<KernelBenchResult> {
  const quick = opts.quick ?? false;
  const models = opts.models ?? (quick ? ['smollm2-135m' as const] : [...BENCH_MODEL_IDS]);
  const formats = opts.formats ?? [...WEIGHT_FORMATS];
  const iters = opts.iters ?? (quick ? 3 : 7);
  checkOptions(models, formats, iters);
  const plan: TimingPlan = { iters, targetMs: quick ? 25 : 100, maxCalls: quick ? 256 : 2048 };
  const progress = opts.onProgress ?? (() => {});

  const total = 1 + models.reduce((s, m) => s + decodeShapes(BENCH_MODELS[m]).length * formats.length, 0);
  let done = 0;
  progress('copy bandwidth', 0);
  const copy = await benchCopy(ctx, quick ? COPY_BYTES.quick : COPY_BYTES.full, plan);
  const copyGBs = gbPerSec(copy.bytes, copy.ms);
  progress(`copy: ${copyGBs.toFixed(2)} GB/s`, ++done / total);

  const variants: BenchVariant[] = [];
  let seed = 1;
  for (const model of models) {
    for (const shape of decodeShapes(BENCH_MODELS[model])) {
      for (const format of formats) {
        const rows = await benchWeight(ctx, { model, shape, format, seed: seed++, plan, gemm: prefillLayers(quick).includes(shape.layer) });
        for (const r of rows) if (r.kind === 'gemv') r.roofline = r.weightGBs / copyGBs;
        variants.push(...rows);
        progress(`${BENCH_MODELS[model].name} ${shape.layer} ${shape.N}×${shape.K} ${format}: ${rows.map((r) => `M=${r.M} ${r.ms.toFixed(3)} ms`).join(', ')}`, ++done / total);
      }
    }
  }

  return {
    device: {
      description: describeGpu(ctx),
      adapter: { ...ctx.adapterInfo },
      features: { ...ctx.features },
      limits: { ...ctx.limits },
    },
    env: opts.env ?? ('document' in globalThis ? 'chromium' : 'node'),
    quick,
    iters,
    gpuTiming: ctx.features.timestampQuery ? 'timestamp' : 'none',
    copyGBs,
    copy,
    variants,
    summary: summarizeDecode(variants, copyGBs),
  };
}

function checkOptions(models: readonly string[], formats: readonly string[], iters: number): void {
  const badModel = models.find((m) => !(BENCH_MODEL_IDS as readonly string[]).includes(m));
  if (badModel) throw new Error(`unknown model '${badModel}' (known: ${BENCH_MODEL_IDS.join(', ')})`);
  const badFormat = formats.find((f) => !(WEIGHT_FORMATS as readonly string[]).includes(f));
  if (badFormat) throw new Error(`unknown weight format '${badFormat}' (known: ${WEIGHT_FORMATS.join(', ')})`);
  if (!Number.isInteger(iters) || iters < 1) throw new Error(`iters must be a positive integer, got ${iters}`);
}

/** The variant label(s) of one call, e.g. `gemv_q4_f32_wg64` (several only when shards differ). */
function variantName(call: readonly KernelDispatch[]): string {
  return [...new Set(call.map((d) => d.label))].join('+');
}

/** Submit work now without waiting: later submissions see its results (queue order). */
function submit(ctx: GpuContext, ...dispatches: KernelDispatch[]): void {
  const enc = ctx.device.createCommandEncoder({ label: 'bench setup' });
  encodeDispatches(enc, dispatches);
  ctx.device.queue.submit([enc.finish()]);
}

/** A [n] f32 buffer of random values in [lo, hi), filled on the GPU. */
function randomBuffer(ctx: GpuContext, n: number, seed: number, range: { lo: number; hi: number }, label: string): GPUBuffer {
  const buf = createStorage(ctx, n * 4, label);
  submit(ctx, fillUniform(ctx, { out: buf, n, seed, ...range }));
  return buf;
}

async function benchCopy(ctx: GpuContext, wantBytes: number, plan: TimingPlan): Promise<KernelBenchResult['copy']> {
  const cap = Math.min(wantBytes, ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize);
  const n = Math.floor(cap / 16) * 4; // whole vec4s: the bandwidth path only
  const src = randomBuffer(ctx, n, 0xc0b1, { lo: -1, hi: 1 }, 'bench copy src'); // [n] f32
  const dst = createStorage(ctx, n * 4, 'bench copy dst'); // [n] f32
  try {
    const call = copyF32(ctx, { src, dst, n });
    const t = await timeCall(ctx, call, plan);
    const bytes = 2 * n * 4; // read + written
    const bufferCopyMs = await timeBufferCopy(ctx, src, dst, n * 4, plan.iters);
    return { bytes, ms: t.ms, gpuMs: t.gpuMs, name: variantName(call), bufferCopyGBs: gbPerSec(bytes, bufferCopyMs) };
  } finally {
    src.destroy();
    dst.destroy();
  }
}

/**
 * copyBufferToBuffer of the same bytes, median of `iters`: the driver's own copy, for reference
 * (on CPU implementations it is a memcpy, far faster than any compute shader).
 */
async function timeBufferCopy(ctx: GpuContext, src: GPUBuffer, dst: GPUBuffer, bytes: number, iters: number): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i <= iters; i++) {
    const enc = ctx.device.createCommandEncoder({ label: 'bench copyBufferToBuffer' });
    enc.copyBufferToBuffer(src, 0, dst, 0, bytes);
    const cmd = enc.finish();
    const t0 = performance.now();
    ctx.device.queue.submit([cmd]);
    await ctx.device.queue.onSubmittedWorkDone();
    if (i > 0) samples.push(performance.now() - t0); // the first one is a warm-up
  }
  return median(samples);
}

/** A [N, K] weight in `format` with random values, made and converted on the GPU. */
async function randomWeight(ctx: GpuContext, N: number, K: number, format: WeightFormat, seed: number, label: string): Promise<GpuWeight> {
  // buildWeight asks for the rows batch by batch and has submitted the work on a batch before it
  // asks for the next one, so one staging buffer at a time is alive (destroy waits for that work).
  let staging: GPUBuffer | undefined;
  try {
    return await buildWeight(ctx, N, K, format, label, (rowStart, rows) => {
      staging?.destroy();
      // [rows, K] f32: rows [rowStart, rowStart + rows) of one fill of the whole [N, K] weight.
      staging = createStorage(ctx, rows * K * 4, `${label} rows@${rowStart}`);
      submit(ctx, fillUniform(ctx, { out: staging, n: rows * K, seed, ...W_RANGE, first: rowStart * K }));
      return staging;
    });
  } finally {
    staging?.destroy();
  }
}

function destroyWeight(w: GpuWeight): void {
  for (const s of w.shards) {
    s.data.destroy();
    s.scales?.destroy();
  }
}

interface WeightBench {
  model: BenchModelId;
  shape: LayerShape;
  format: WeightFormat;
  seed: number;
  plan: TimingPlan;
  gemm: boolean; // also time the prefill GEMM on this weight
}

/** GEMV at M = 1 and 4 (and GEMM at M = 128 when asked) on one random weight. */
async function benchWeight(ctx: GpuContext, b: WeightBench): Promise<BenchVariant[]> {
  const { N, K, layer, perStep } = b.shape;
  const label = `${b.model} ${layer} ${b.format}`;
  const maxM = b.gemm ? PREFILL_M : Math.max(...DECODE_MS);
  const w = await randomWeight(ctx, N, K, b.format, b.seed, label);
  const x = randomBuffer(ctx, maxM * K, b.seed ^ 0x5eed, { lo: -1, hi: 1 }, `${label} x`); // [maxM, K] f32
  const y = createStorage(ctx, maxM * N * 4, `${label} y`); // [maxM, N] f32
  const bytes = weightBytes(b.format, N, K);
  const rows: BenchVariant[] = [];
  try {
    for (const M of DECODE_MS.filter((m) => m <= GEMV_MAX_M)) {
      const call = gemv(ctx, { x, w, y, M });
      const t = await timeCall(ctx, call, b.plan);
      rows.push({ name: variantName(call), kind: 'gemv', model: b.model, layer, format: b.format, M, N, K, perStep, ms: t.ms, gpuMs: t.gpuMs, weightGBs: gbPerSec(bytes, t.ms) });
    }
    if (b.gemm) {
      const call = gemm(ctx, { x, w, y, M: PREFILL_M });
      const t = await timeCall(ctx, call, b.plan);
      const gflops = (2 * PREFILL_M * N * K) / (t.ms * 1e6);
      rows.push({ name: variantName(call), kind: 'gemm', model: b.model, layer, format: b.format, M: PREFILL_M, N, K, perStep, ms: t.ms, gpuMs: t.gpuMs, weightGBs: gbPerSec(bytes, t.ms), gflops });
    }
    return rows;
  } finally {
    destroyWeight(w);
    x.destroy();
    y.destroy();
  }
}
