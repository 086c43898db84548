/**
 * The ownership rule (docs/ARCHITECTURE.md): every GPU buffer, query set and dispatch uniform has
 * exactly one owner (device context, model weights, engine, trainer, adapter bank...) that frees
 * it in destroy(), and a constructor that fails half-way frees what it made before the error goes
 * on. `Building` is how a constructor keeps that promise: it takes each piece as it is made and,
 * on a failure, destroys them all (newest first).
 */

/** Anything holding GPU memory until destroy(). */
export interface Destroyable {
  destroy(): void;
}

export class Building {
  private readonly made: Destroyable[] = [];

  /** Keep `x` to destroy it if the construction fails; returns it. */
  take<T extends Destroyable>(x: T): T {
    this.made.push(x);
    return x;
  }

  /** The construction failed: destroy everything taken, newest first (a failing destroy does not stop the rest). */
  abandon(): void {
    for (const x of this.made.splice(0).reverse()) {
      try {
        x.destroy();
      } catch {
        // keep freeing the others
      }
    }
  }
}

/** Run `make` with a Building; if it throws, whatever it took is destroyed and the error rethrown. */
export function building<T>(make: (b: Building) => T): T {
  const b = new Building();
  try {
    return make(b);
  } catch (e) {
    b.abandon();
    throw e;
  }
}
