// Exact f32 <-> f16 bit conversions in integer arithmetic, the same rules as src/gpu/f16.ts (round
// to nearest even, f16 subnormals kept, overflow to inf). pack2x16float is not used for weights:
// WGSL lets it round either way and flush subnormals, and weights must match the CPU bit for bit.

/** f16 bits of the f32 with bits `x`. */
fn f16_bits(x: u32) -> u32 {
  let sign = (x >> 16u) & 0x8000u;
  let exp = (x >> 23u) & 0xffu;
  var mant = x & 0x7fffffu;
  if (exp == 0xffu) { return sign | 0x7c00u | select(0u, 0x200u, mant != 0u); } // inf / NaN
  let e = i32(exp) - 112; // rebias 127 -> 15
  if (e >= 31) { return sign | 0x7c00u; } // overflow
  if (e <= 0) {
    // f16 subnormal or zero: shift the mantissa with its implicit 1 into place, rounding to even.
    if (e < -10) { return sign; }
    mant = mant | 0x800000u;
    let shift = u32(14 - e);
    let half = 1u << (shift - 1u);
    let rest = mant & ((1u << shift) - 1u);
    var h = mant >> shift;
    if (rest > half || (rest == half && (h & 1u) == 1u)) { h += 1u; }
    return sign | h;
  }
  var h = (u32(e) << 10u) | (mant >> 13u);
  let rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u) == 1u)) { h += 1u; } // a carry into the exponent is still right
  return sign | h;
}

/** The value of non-negative finite f16 bits `h` (exact). */
fn f16_value(h: u32) -> f32 {
  let exp = (h >> 10u) & 0x1fu;
  let mant = h & 0x3ffu;
  if (exp == 0u) { return f32(mant) * 0x1p-24f; }
  return bitcast<f32>(((exp + 112u) << 23u) | (mant << 13u));
}
