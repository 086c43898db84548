/**
 * Central finite differences for gradient checks of the backward references. The scalar probed is
 * L(x) = Σ_j dy_j · f(x)_j, so the numeric dL/dx is what a backward given dy must return.
 * Inputs are f32 (what the references take): each probe perturbs one element to fround(x ± h) and
 * divides by the exact f64 difference of the two perturbed values; L is summed in f64. The error
 * left is O(h²) truncation plus the f32 rounding of f's outputs, ≈ sqrt(#outputs) · 2⁻²⁴ · |y| · |dy| / h.
 */

export function numericGrad(f: (x: Float32Array) => ArrayLike<number>, x: Float32Array, dy: ArrayLike<number>, h = 1e-2): Float64Array {
  const grad = new Float64Array(x.length);
  const probe = x.slice();
  const loss = (): number => {
    const y = f(probe);
    if (y.length !== dy.length) throw new Error(`numericGrad: f returned ${y.length} values, dy has ${dy.length}`);
    let s = 0;
    for (let j = 0; j < y.length; j++) s += dy[j] * y[j];
    return s;
  };
  for (let i = 0; i < x.length; i++) {
    const x0 = x[i];
    const hi = Math.fround(x0 + h), lo = Math.fround(x0 - h);
    probe[i] = hi;
    const lHi = loss();
    probe[i] = lo;
    const lLo = loss();
    probe[i] = x0;
    grad[i] = (lHi - lLo) / (hi - lo);
  }
  return grad;
}

/**
 * Compare an analytic gradient with a numeric one: |a − n| <= atol + rtol · max|n| over the
 * whole tensor (gradients cross zero, so an elementwise relative test would be meaningless near
 * 0). Returns null when close, else a message with the worst element.
 */
export function gradMismatch(analytic: ArrayLike<number>, numeric: ArrayLike<number>, tol: { atol: number; rtol: number }, what = 'grad'): string | null {
  if (analytic.length !== numeric.length) return `${what}: length ${analytic.length} != ${numeric.length}`;
  let scale = 0;
  for (let i = 0; i < numeric.length; i++) scale = Math.max(scale, Math.abs(numeric[i]));
  const bound = tol.atol + tol.rtol * scale;
  let worst = -1, worstErr = 0;
  for (let i = 0; i < numeric.length; i++) {
    const err = Math.abs(analytic[i] - numeric[i]);
    if (!(err <= worstErr) || Number.isNaN(err)) {
      worstErr = Number.isNaN(err) ? Infinity : err;
      worst = i;
    }
  }
  if (worst < 0 || worstErr <= bound) return null;
  return `${what}: worst |analytic - numeric| = ${worstErr} at ${worst} (analytic ${analytic[worst]}, numeric ${numeric[worst]}) > ${bound} (max |numeric| ${scale})`;
}
