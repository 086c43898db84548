// matmul_input_grad weight loader, format 'q4' (groups of {{Q4_GROUP}} along K, f16 scales;
// src/kernels/weights.ts): per unit half a u32 word (4 consecutive k, k a multiple of 4) of one row.
@group(0) @binding(3) var<storage, read> w: array<u32>;       // [rows, ceil(K / 32) * 4] nibbles
@group(0) @binding(4) var<storage, read> scales: array<u32>;  // [rows, ceil(ceil(K / 32) / 2)] packed f16

/** W[n, k .. k + 3] of this shard (k a multiple of 4); 0 past its rows or K. */
fn w_quad(n: u32, k: u32) -> vec4f {
  if (n >= p.rows || k >= p.K) { return vec4f(0.0); }
  let g = k / {{Q4_GROUP}}u;
  let scale = unpack2x16float(scales[n * p.sWords + g / 2u])[g % 2u];
  let bits = w[n * p.wWords + k / 8u] >> (4u * (k % 8u));
  return vec4f(q4_at(bits, 0u, k), q4_at(bits, 1u, k), q4_at(bits, 2u, k), q4_at(bits, 3u, k)) * scale;
}

/** Quant e (0..3) of `bits` centred on 0; 0 past K (stored as q = 7 there anyway). */
fn q4_at(bits: u32, e: u32, k: u32) -> f32 {
  return select(f32(i32((bits >> (4u * e)) & 0xfu) - {{Q4_OFFSET}}), 0.0, k + e >= p.K);
}

fn load_w_tile(n0: u32, k0: u32, lid: u32) {
  for (var i = lid; i < TN * COLS; i += WG) {
    ws[i] = w_quad(n0 + i / COLS, k0 + 4u * (i % COLS));
  }
}
