// GEMM weight loader, format 'f16': per unit one u32 (two consecutive k) of each of 4 rows,
// unpacked with unpack2x16float (core WGSL, no shader-f16). TK is even, so a word never straddles
// K-steps.
@group(0) @binding(3) var<storage, read> w: array<u32>;  // [rows, ceil(K / 2)] packed f16 pairs

/** W[n, k .. k + 1] of this shard (k even), 0 past its rows or K. */
fn w_pair(n: u32, k: u32) -> vec2f {
  if (n >= p.rows || k >= p.K) { return vec2f(0.0); }
  let v = unpack2x16float(w[n * p.wWords + k / 2u]);
  return select(v, vec2f(v.x, 0.0), k + 1u >= p.K);  // odd K: the high half is padding
}

fn load_w_tile(n0: u32, k0: u32, lid: u32) {
  const PAIRS = TK / 2u;
  for (var i = lid; i < COLS * PAIRS; i += WG) {
    let j = i % PAIRS;
    let nq = i / PAIRS;
    let n = n0 + 4u * nq;
    let k = 2u * j;
    let r0 = w_pair(n, k0 + k);
    let r1 = w_pair(n + 1u, k0 + k);
    let r2 = w_pair(n + 2u, k0 + k);
    let r3 = w_pair(n + 3u, k0 + k);
    ws[k * COLS + nq] = vec4f(r0.x, r1.x, r2.x, r3.x);
    ws[(k + 1u) * COLS + nq] = vec4f(r0.y, r1.y, r2.y, r3.y);
  }
}
