/**
 * The typed error of `mace bench drift`'s building blocks (rules, simulated user, metrics, plots,
 * guard): a stable `code` and the field that was wrong, e.g. `phases[1].startS` or `rows[3].baseChosen`,
 * in the style of src/learn/errors.ts.
 */
import { LearnError } from '../../src/learn/errors.ts';

/** Bad input to a drift building block: names the field. */
export class DriftError extends LearnError {
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super('bad-drift-input', `${field} ${detail}`);
  }
}

/** A finite number, else a DriftError naming `field`. */
export function finite(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new DriftError(field, `= ${String(v)}; it must be a finite number`);
  return v;
}

/** A number in [0, 1], else a DriftError naming `field`. */
export function unitInterval(v: unknown, field: string): number {
  const x = finite(v, field);
  if (x < 0 || x > 1) throw new DriftError(field, `= ${x}; it must be in [0, 1]`);
  return x;
}
