/**
 * Typed errors of the learning layer (LoRA adapters, optimizer, DPO, PEFT files). Each has a stable
 * `code` and names what was wrong: the config field, the file and tensor key, the hyperparameter.
 */

/** Base class: `code` is machine-readable and stable, `message` is for people. */
export class LearnError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** An AdapterConfig (or an adapter_config.json) that does not fit the model: names the field. */
export class AdapterConfigError extends LearnError {
  constructor(
    readonly field: string,
    detail: string,
    readonly file = 'adapter config',
  ) {
    super('bad-adapter-config', `${file}: ${field} ${detail}`);
  }
}

/** A PEFT adapter file whose tensors do not fit (missing, extra, misshaped, wrong dtype): names file and key. */
export class PeftFormatError extends LearnError {
  constructor(
    readonly file: string,
    readonly key: string,
    detail: string,
  ) {
    super('bad-peft-adapter', `${file}: '${key}' ${detail}`);
  }
}

/** A host adapter (A/B arrays) that does not match the GPU adapter or bank it is written into. */
export class AdapterShapeError extends LearnError {
  constructor(
    readonly tensor: string,
    detail: string,
  ) {
    super('bad-adapter-shape', `adapter tensor ${tensor} ${detail}`);
  }
}

/** An optimizer or schedule hyperparameter out of range (lr < 0, beta outside [0, 1), ...). */
export class HyperparameterError extends LearnError {
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super('bad-hyperparameter', `${field} ${detail}`);
  }
}

/** DPO inputs that are not finite numbers, or an empty batch. */
export class DpoInputError extends LearnError {
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super('bad-dpo-input', `${field} ${detail}`);
  }
}

/** Every slot of an adapter bank is taken, or a slot index is out of range. */
export class AdapterSlotError extends LearnError {
  constructor(detail: string) {
    super('bad-adapter-slot', detail);
  }
}
