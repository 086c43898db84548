/**
 * Pipeline cache keyed by readable variant names (e.g. `gemv_q4_f32_wg64`). A variant is compiled
 * once per device and reused by every dispatch; the name is also the pipeline's label, so browser
 * errors and GPU captures say which variant failed.
 */
import { ShaderCompileError } from './errors.ts';

export class PipelineCache {
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly modules = new Map<string, GPUShaderModule>();
  /** The module each variant was built from. */
  private readonly variantModules = new Map<string, GPUShaderModule>();
  /**
   * One compilation check per module: in Chromium a second getCompilationInfo() on the same
   * module was seen never to resolve, so the first answer is kept and shared.
   */
  private readonly checks = new WeakMap<GPUShaderModule, Promise<void>>();

  constructor(private readonly device: GPUDevice) {}

  /** Number of distinct pipelines compiled so far (tests use it to prove reuse). */
  get size(): number {
    return this.pipelines.size;
  }

  has(variant: string): boolean {
    return this.pipelines.has(variant);
  }

  /**
   * The pipeline for `variant`, building it from `code()` the first time. `code` is a thunk so a
   * cache hit costs no string work. Layout is 'auto': each kernel's bind group follows its WGSL.
   */
  get(variant: string, code: () => string, entryPoint = 'main'): GPUComputePipeline {
    const hit = this.pipelines.get(variant);
    if (hit) return hit;
    const source = code();
    let module = this.modules.get(source);
    if (!module) {
      module = this.device.createShaderModule({ label: variant, code: source });
      this.modules.set(source, module);
    }
    const pipeline = this.device.createComputePipeline({ label: variant, layout: 'auto', compute: { module, entryPoint } });
    this.pipelines.set(variant, pipeline);
    this.variantModules.set(variant, module);
    return pipeline;
  }

  /**
   * Compile `variant` and report WGSL errors as a ShaderCompileError (async: uses the module's
   * compilation info). Used by tests and at engine start to fail early with the line that broke.
   */
  check(variant: string): Promise<void> {
    const module = this.variantModules.get(variant);
    if (!module) return Promise.reject(new Error(`pipeline ${variant} was never built`));
    let done = this.checks.get(module);
    if (!done) {
      done = module.getCompilationInfo().then((info) => {
        const errors = info.messages.filter((m) => m.type === 'error');
        if (errors.length) throw new ShaderCompileError(variant, errors.map((e) => `${e.lineNum}:${e.linePos} ${e.message}`).join('; '));
      });
      this.checks.set(module, done);
    }
    return done;
  }
}
