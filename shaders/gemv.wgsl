{{ENABLES}}
// GEMV (decode matmul) skeleton: y[m, rowStart + n] = sum_k x[m, k] * w[n, k] for the shard's rows n.
// The weight format's file (gemv_<format>.wgsl) is appended and defines w, load_w, load_x and
// dot_chunk; a reduction file (gemv_reduce_<kind>.wgsl) defines stage/finish.
//
// Work split: a workgroup owns ROWS consecutive weight rows; its WG invocations split K into
// "chunks" (one f32, one packed u32 of two f16, or one q4 group of 32) with invocation lid
// taking chunks lid, lid + WG, ...: neighbouring invocations read neighbouring words (coalesced
// on a GPU; SwiftShader gathers per lane whatever the pattern, so there fewer loads is what counts).
// x is loaded once per chunk and reused for all ROWS rows. The per-row and per-token code is
// unrolled in TS ({{...}} blocks): private arrays indexed in loops are ~6x slower on SwiftShader.
{{PARAMS}}

const M = {{M}}u;       // rows of x (decode tokens)
const ROWS = {{ROWS}}u; // weight rows per workgroup
const WG = {{WG}}u;     // invocations per workgroup, splitting K

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;           // [M, K] f32
@group(0) @binding(2) var<storage, read_write> y: array<f32>;     // [M, N] f32

/** Write output o = r * M + m (row r of this workgroup, token m) unless the row is past the shard. */
fn store(o: u32, row0: u32, v: f32) {
  let r = o / M;
  if (row0 + r < p.rows) { y[(o % M) * p.N + p.rowStart + row0 + r] = v; }
}

/**
 * x[m, k], or 0 past K (a padded last chunk must not pick up the next token's x, or NaN * 0).
 * K_TAIL is false when K fills the chunks exactly, and the test then folds away.
 */
const K_TAIL = {{K_TAIL}};
fn x_at(m: u32, k: u32) -> f32 {
  if (K_TAIL) { return select(0.0, x[m * p.K + k], k < p.K); }
  return x[m * p.K + k];
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row0 = (wid.x + wid.y * nwg.x) * ROWS;
  if (row0 >= p.rows) { return; } // whole workgroup: uniform
  // Rows past the shard repeat its last row (loads stay in bounds); their results are not stored.
{{ROW_INDICES}}
{{ACC_DECL}}
  for (var c = lid; c < p.chunks; c += WG) {
{{X_LOADS}}
{{ACCUMULATE}}
  }
{{STAGE}}
  finish(lid, row0);
}
