// Tiled GEMM for prefill, one weight shard per dispatch:
//   y[m, rowStart + n] = sum_k x[m, k] * W[n, k]   for m < M, n < rows (the shard's rows of W).
// Each workgroup owns a TM x TN tile of y. Per K-step of TK it stages x[TM, TK] and W[TN, TK]
// (dequantized to f32 by the format's load_w_tile) in workgroup memory, both transposed so that
// the inner loop reads one vec4 of 4 rows of x and one vec4 of 4 columns of W per k. Every
// invocation keeps a 4 x 4 block of y in registers (4 vec4 accumulators).
// Edges: loads past M, rows or K write zeros into the tiles; stores past M or rows are skipped.
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;         // [M, K] activations
@group(0) @binding(2) var<storage, read_write> y: array<f32>;   // [M, N] output, columns [rowStart, rowStart + rows) written
// binding 3 (and 4 for q4): the shard's weight data, declared by the format snippet below.

const TM = {{TM}}u;           // rows of y (tokens) per workgroup
const TN = {{TN}}u;           // columns of y (weight rows) per workgroup
const TK = {{TK}}u;           // K-step staged in workgroup memory
const WG = {{WG}}u;           // invocations: (TM / 4) * (TN / 4)
const COLS = TN / 4u;         // invocations along n, each owning 4 columns

var<workgroup> xs: array<vec4f, {{XS_VEC4}}>;  // [TK, TM / 4] vec4 = x tile transposed, 4 rows per vec4
var<workgroup> ws: array<vec4f, {{WS_VEC4}}>;  // [TK, TN / 4] vec4 = W tile transposed, 4 columns per vec4

// The loaders write whole vec4s (4 rows of x, or 4 rows of W, at one k): no dynamic vector
// component stores, which some backends lower poorly. Consecutive invocations take consecutive k,
// so each of the 4 global reads of a row is coalesced.

/** x[m, k], or 0 past M or K (so partial tiles add nothing). */
fn x_at(m: u32, k: u32) -> f32 {
  if (m < p.M && k < p.K) { return x[m * p.K + k]; }
  return 0.0;
}

fn load_x_tile(m0: u32, k0: u32, lid: u32) {
  for (var i = lid; i < (TM / 4u) * TK; i += WG) {
    let k = i % TK;
    let mq = i / TK;
    let m = m0 + 4u * mq;
    let gk = k0 + k;
    xs[k * (TM / 4u) + mq] = vec4f(x_at(m, gk), x_at(m + 1u, gk), x_at(m + 2u, gk), x_at(m + 3u, gk));
  }
}

{{WEIGHT_SNIPPET}}

fn store_row(m: u32, n: u32, v: vec4f) {
  if (m >= p.M) { return; }
  let base = m * p.N + p.rowStart;
  for (var j = 0u; j < 4u; j++) {
    if (n + j < p.rows) { y[base + n + j] = v[j]; }
  }
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let tile = wid.x + wid.y * nwg.x;
  if (tile >= p.tilesTotal) { return; }  // uniform per workgroup: the barriers below stay legal
  // Tiles along M vary fastest: neighbouring workgroups share one W tile (the larger operand) in cache.
  let m0 = (tile % p.tilesM) * TM;
  let n0 = (tile / p.tilesM) * TN;
  let tx = lid % COLS;
  let ty = lid / COLS;

  var acc0 = vec4f(0.0);
  var acc1 = vec4f(0.0);
  var acc2 = vec4f(0.0);
  var acc3 = vec4f(0.0);
  let kSteps = (p.K + TK - 1u) / TK;
  for (var s = 0u; s < kSteps; s++) {
    let k0 = s * TK;
    load_x_tile(m0, k0, lid);
    load_w_tile(n0, k0, lid);
    workgroupBarrier();
    for (var k = 0u; k < TK; k++) {
      let a = xs[k * (TM / 4u) + ty];  // x[m0 + 4ty .. +3, k0 + k]
      let b = ws[k * COLS + tx];       // W[n0 + 4tx .. +3, k0 + k]
      acc0 += a.x * b;
      acc1 += a.y * b;
      acc2 += a.z * b;
      acc3 += a.w * b;
    }
    workgroupBarrier();  // the next K-step overwrites the tiles
  }

  let m = m0 + 4u * ty;
  let n = n0 + 4u * tx;
  store_row(m, n, acc0);
  store_row(m + 1u, n, acc1);
  store_row(m + 2u, n, acc2);
  store_row(m + 3u, n, acc3);
}
