/**
 * Typed errors of the GPU layer. Every failure a caller can act on has its own class, so the
 * engine (and the widget) can tell "this browser has no WebGPU" from "this model is too big".
 */

/** Base class: `code` is stable and machine-readable, `message` is for people. */
export class MaceGpuError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** `navigator.gpu` does not exist (browser without WebGPU, or not a secure context). */
export class WebGpuUnavailableError extends MaceGpuError {
  constructor(detail = 'navigator.gpu is undefined') {
    super('webgpu-unavailable', `WebGPU is not available: ${detail}`);
  }
}

/** `requestAdapter()` returned null (blocklisted GPU, disabled by flags, headless without a backend). */
export class NoAdapterError extends MaceGpuError {
  constructor(detail = 'requestAdapter() returned null') {
    super('no-adapter', `No WebGPU adapter: ${detail}`);
  }
}

/** The adapter's limits cannot hold what was asked (e.g. a model's largest row or a workgroup tile). */
export class LimitsTooSmallError extends MaceGpuError {
  constructor(
    readonly limit: string,
    readonly needed: number,
    readonly available: number,
    what: string,
  ) {
    super('limits-too-small', `${what} needs ${limit} >= ${needed}, the adapter offers ${available}`);
  }
}

/** A required feature is missing (only raised where no fallback exists). */
export class MissingFeatureError extends MaceGpuError {
  constructor(readonly feature: string, what: string) {
    super('missing-feature', `${what} needs the WebGPU feature '${feature}'`);
  }
}

/** The device was lost; `reason` is the GPUDeviceLostReason ('destroyed' or 'unknown'). */
export class DeviceLostError extends MaceGpuError {
  constructor(
    readonly reason: string,
    detail: string,
  ) {
    super('device-lost', `GPU device lost (${reason}): ${detail}`);
  }
}

/**
 * A kernel was called with shapes that break its preconditions. Thrown by a kernel's guard
 * before anything is dispatched; the message names the kernel, the argument and the shape.
 */
export class ShapeError extends MaceGpuError {
  constructor(
    readonly kernel: string,
    readonly argument: string,
    detail: string,
  ) {
    super('bad-shape', `${kernel}: ${argument} ${detail}`);
  }
}

/** A shader failed to compile or a pipeline failed to build (a bug in our WGSL, never user input). */
export class ShaderCompileError extends MaceGpuError {
  constructor(readonly variant: string, detail: string) {
    super('shader-compile', `shader ${variant} failed to compile: ${detail}`);
  }
}
