// GEMV weights in 'q4' (weights.ts): a chunk is one group of 32 elements = data words 4c..4c+3
// (word 4c+j holds elements 32c+8j .. +7, nibble t at bits 4t) and the f16 scale in half c%2 of
// scale word c/2. Elements past K are q = 7, i.e. 0, and x_at gives 0 there too.
//
// SwiftShader turns every storage load into a per-lane gather, so loads dominate: a group per
// chunk loads its scale once per 32 weights instead of once per 8. Arithmetic is trimmed too; the
// per-chunk x work is done once per token and shared by the workgroup's ROWS rows, so it goes there:
// - nibble t is masked in place (q & 0xF << 4t, exactly q_t * 16^t as a float) instead of shifted
//   down, and x is pre-multiplied by 16^-t (exact: powers of two); the top nibble is shifted
//   by 4 first so the i32 conversion (one x86 instruction, unlike u32's) stays positive;
// - the -7 offset becomes -7 * sum(x) once per chunk, the scale one multiply per chunk.
@group(0) @binding(3) var<storage, read> w: array<u32>;      // [rows, ceil(K/32)*4] u32 nibbles
@group(0) @binding(4) var<storage, read> scales: array<u32>; // [rows, ceil(ceil(K/32)/2)] u32 of 2 x f16

/** x[m, 32c + 8j + t] * 16^-t (2^-24 for t = 7) for word j: lo = t 0..3, hi = t 4..7. */
struct XWord { lo: vec4<f32>, hi: vec4<f32> }
struct XChunk { w0: XWord, w1: XWord, w2: XWord, w3: XWord, sum: f32 } // sum: of the 32 plain x
/** q_t * 16^t (2^24 for t = 7) of one data word. */
struct WWord { lo: vec4<f32>, hi: vec4<f32> }
struct WChunk { w0: WWord, w1: WWord, w2: WWord, w3: WWord, scale: f32 }

const LO_MASK = vec4<u32>(0xfu, 0xf0u, 0xf00u, 0xf000u);
const HI_MASK = vec4<u32>(0xf0000u, 0xf00000u, 0xf000000u, 0xf000000u);
const LO_UNIT = vec4<f32>(1.0, 0x1p-4f, 0x1p-8f, 0x1p-12f);
const HI_UNIT = vec4<f32>(0x1p-16f, 0x1p-20f, 0x1p-24f, 0x1p-24f);

fn x_word(m: u32, k: u32) -> XWord {
  return XWord(vec4<f32>(x_at(m, k), x_at(m, k + 1u), x_at(m, k + 2u), x_at(m, k + 3u)),
               vec4<f32>(x_at(m, k + 4u), x_at(m, k + 5u), x_at(m, k + 6u), x_at(m, k + 7u)));
}

fn load_x(m: u32, c: u32) -> XChunk {
  let k = 32u * c;
  let a = x_word(m, k);
  let b = x_word(m, k + 8u);
  let d = x_word(m, k + 16u);
  let e = x_word(m, k + 24u);
  let sum = dot((a.lo + a.hi) + (b.lo + b.hi) + (d.lo + d.hi) + (e.lo + e.hi), vec4<f32>(1.0));
  return XChunk(scaled(a), scaled(b), scaled(d), scaled(e), sum);
}

fn scaled(xw: XWord) -> XWord { return XWord(xw.lo * LO_UNIT, xw.hi * HI_UNIT); }

fn w_word(q: u32) -> WWord {
  let lo = vec4<u32>(q) & LO_MASK;
  let hi = vec4<u32>(q, q, q, q >> 4u) & HI_MASK;
  return WWord(vec4<f32>(bitcast<vec4<i32>>(lo)), vec4<f32>(bitcast<vec4<i32>>(hi)));
}

fn load_w(row: u32, c: u32) -> WChunk {
  let base = row * p.rowWords + 4u * c;
  let pair = scales[row * p.scaleWords + c / 2u];
  let scale = unpack2x16float(pair)[c & 1u];
  return WChunk(w_word(w[base]), w_word(w[base + 1u]), w_word(w[base + 2u]), w_word(w[base + 3u]), scale);
}

fn dot_word(ww: WWord, xw: XWord) -> f32 { return dot(ww.lo, xw.lo) + dot(ww.hi, xw.hi); }

// sum_e (q_e - 7) * scale * x_e: still exactly the dequantized weight, summed in another order.
fn dot_chunk(wc: WChunk, xc: XChunk) -> f32 {
  return wc.scale * ((dot_word(wc.w0, xc.w0) + dot_word(wc.w1, xc.w1)) + (dot_word(wc.w2, xc.w2) + dot_word(wc.w3, xc.w3)) - 7.0 * xc.sum);
}
