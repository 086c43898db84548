// matmul_input_grad weight loader, format 'f32': 4 consecutive k of one row per unit.
@group(0) @binding(3) var<storage, read> w: array<f32>;  // [rows, K] this shard's rows of W

/** W[n, k] of this shard, or 0 past its rows or K. */
fn w_at(n: u32, k: u32) -> f32 {
  if (n < p.rows && k < p.K) { return w[n * p.wWords + k]; }
  return 0.0;
}

fn load_w_tile(n0: u32, k0: u32, lid: u32) {
  for (var i = lid; i < TN * COLS; i += WG) {
    let kq = i % COLS;  // consecutive invocations read consecutive k of a row: coalesced
    let n = n0 + i / COLS;
    let k = k0 + 4u * kq;
    ws[i] = vec4f(w_at(n, k), w_at(n, k + 1u), w_at(n, k + 2u), w_at(n, k + 3u));
  }
}
