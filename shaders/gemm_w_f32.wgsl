// GEMM weight loader, format 'f32': one element of each of 4 rows per unit.
@group(0) @binding(3) var<storage, read> w: array<f32>;  // [rows, K] this shard's rows of W

/** W[n, k] of this shard, or 0 past its rows or K. */
fn w_at(n: u32, k: u32) -> f32 {
  if (n < p.rows && k < p.K) { return w[n * p.wWords + k]; }
  return 0.0;
}

fn load_w_tile(n0: u32, k0: u32, lid: u32) {
  for (var i = lid; i < COLS * TK; i += WG) {
    let k = i % TK;
    let nq = i / TK;
    let n = n0 + 4u * nq;
    let gk = k0 + k;
    ws[k * COLS + nq] = vec4f(w_at(n, gk), w_at(n + 1u, gk), w_at(n + 2u, gk), w_at(n + 3u, gk));
  }
}
