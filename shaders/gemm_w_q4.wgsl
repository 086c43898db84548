// GEMM weight loader, format 'q4' (groups of {{Q4_GROUP}} along K, f16 scales; src/kernels/weights.ts):
// per unit one u32 (8 consecutive k) of each of 4 rows. Word k / 8 of a row holds k .. k + 7 (a
// group is 4 words), so with TK a multiple of 8 a word never straddles K-steps.
@group(0) @binding(3) var<storage, read> w: array<u32>;       // [rows, ceil(K / 32) * 4] nibbles
@group(0) @binding(4) var<storage, read> scales: array<u32>;  // [rows, ceil(ceil(K / 32) / 2)] packed f16

/** A word of 8 quants of row n of this shard and its group's scale; scale 0 past its rows or K. */
struct Q4Word {
  bits: u32,
  scale: f32,
}

fn q4_word(n: u32, k: u32) -> Q4Word {
  if (n >= p.rows || k >= p.K) { return Q4Word(0u, 0.0); }
  let g = k / {{Q4_GROUP}}u;
  return Q4Word(w[n * p.wWords + k / 8u], unpack2x16float(scales[n * p.sWords + g / 2u])[g % 2u]);
}

/** Element e (0..7) of a word, or 0 when it lies past K (stored as q = 7 = 0 anyway). */
fn q4_value(q: Q4Word, e: u32, k: u32) -> f32 {
  let v = f32(i32((q.bits >> (4u * e)) & 0xfu) - {{Q4_OFFSET}}) * q.scale;
  return select(v, 0.0, k + e >= p.K);
}

fn load_w_tile(n0: u32, k0: u32, lid: u32) {
  const WORDS = TK / 8u;
  for (var i = lid; i < COLS * WORDS; i += WG) {
    let j = i % WORDS;
    let nq = i / WORDS;
    let n = n0 + 4u * nq;
    let k = k0 + 8u * j;
    let r0 = q4_word(n, k);
    let r1 = q4_word(n + 1u, k);
    let r2 = q4_word(n + 2u, k);
    let r3 = q4_word(n + 3u, k);
    for (var e = 0u; e < 8u; e++) {
      ws[(8u * j + e) * COLS + nq] = vec4f(q4_value(r0, e, k), q4_value(r1, e, k), q4_value(r2, e, k), q4_value(r3, e, k));
    }
  }
}
