// matmul_input_grad weight loader, format 'f16': per unit two u32 words (4 consecutive k, k even)
// of one row, unpacked with unpack2x16float (core WGSL).
@group(0) @binding(3) var<storage, read> w: array<u32>;  // [rows, ceil(K / 2)] packed f16 pairs

/** W[n, k .. k + 1] of this shard (k even), 0 past its rows or K. */
fn w_pair(n: u32, k: u32) -> vec2f {
  if (n >= p.rows || k >= p.K) { return vec2f(0.0); }
  let v = unpack2x16float(w[n * p.wWords + k / 2u]);
  return select(v, vec2f(v.x, 0.0), k + 1u >= p.K);  // odd K: the high half is padding
}

fn load_w_tile(n0: u32, k0: u32, lid: u32) {
  for (var i = lid; i < TN * COLS; i += WG) {
    let n = n0 + i / COLS;
    let k = k0 + 4u * (i % COLS);
    ws[i] = vec4f(w_pair(n, k), w_pair(n, k + 2u));
  }
}
