// Input gradient through a frozen Linear weight, one weight shard per dispatch:
//   dx[m, k] (+)= sum_n dy[m, rowStart + n] * W[n, k]   for m < M, k < K, n < rows (the shard's rows).
// Each workgroup owns a TM x TK tile of dx. Per step of TN weight rows it stages dy[TM, TN]
// (transposed: 4 rows of dy per vec4) and W[TN, TK] (4 consecutive k per vec4, dequantized by the
// format's load_w_tile) in workgroup memory; every invocation accumulates a 4 x 4 block of dx.
// Edges: loads past M, rows or K stage zeros; stores past M or K are skipped. With p.accumulate
// the block is added to dx (later shards of a sharded weight, or a caller summing several inputs).
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;         // [M, N]
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;   // [M, K]
// binding 3 (and 4 for q4): the shard's weight data, declared by the format snippet below.

const TM = {{TM}}u;     // rows of dx per workgroup
const TK = {{TK}}u;     // columns of dx per workgroup
const TN = {{TN}}u;     // weight rows staged per step
const WG = {{WG}}u;     // (TM / 4) * (TK / 4)
const COLS = TK / 4u;   // invocations along k, each owning 4 columns
const MQ = TM / 4u;     // invocations along m, each owning 4 rows

var<workgroup> dys: array<vec4f, TN * MQ>;  // [TN, TM / 4]: dy tile transposed
var<workgroup> ws: array<vec4f, TN * COLS>;   // [TN, TK / 4]: W tile, 4 consecutive k per vec4

/** dy[m, rowStart + n], or 0 past M or the shard's rows. */
fn dy_at(m: u32, n: u32) -> f32 {
  if (m < p.M && n < p.rows) { return dy[m * p.N + p.rowStart + n]; }
  return 0.0;
}

fn load_dy_tile(m0: u32, n0: u32, lid: u32) {
  for (var i = lid; i < MQ * TN; i += WG) {
    let n = i % TN;  // consecutive invocations read consecutive columns of dy: coalesced
    let mq = i / TN;
    let m = m0 + 4u * mq;
    let gn = n0 + n;
    dys[n * MQ + mq] = vec4f(dy_at(m, gn), dy_at(m + 1u, gn), dy_at(m + 2u, gn), dy_at(m + 3u, gn));
  }
}

{{WEIGHT_SNIPPET}}

fn store_row(m: u32, k: u32, v: vec4f) {
  if (m >= p.M) { return; }
  let base = m * p.K;
  for (var j = 0u; j < 4u; j++) {
    if (k + j < p.K) {
      if (p.accumulate != 0u) { dx[base + k + j] += v[j]; } else { dx[base + k + j] = v[j]; }
    }
  }
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let tile = wid.x + wid.y * nwg.x;
  if (tile >= p.tilesTotal) { return; }  // uniform per workgroup: the barriers below stay legal
  let m0 = (tile % p.tilesM) * TM;
  let k0 = (tile / p.tilesM) * TK;
  let tx = lid % COLS;
  let ty = lid / COLS;

  var acc0 = vec4f(0.0);
  var acc1 = vec4f(0.0);
  var acc2 = vec4f(0.0);
  var acc3 = vec4f(0.0);
  let nSteps = (p.rows + TN - 1u) / TN;
  for (var s = 0u; s < nSteps; s++) {
    let n0 = s * TN;
    load_dy_tile(m0, n0, lid);
    load_w_tile(n0, k0, lid);
    workgroupBarrier();
    for (var n = 0u; n < TN; n++) {
      let a = dys[n * MQ + ty];  // dy[m0 + 4ty .. +3, n0 + n]
      let b = ws[n * COLS + tx]; // W[n0 + n, k0 + 4tx .. +3]
      acc0 += a.x * b;
      acc1 += a.y * b;
      acc2 += a.z * b;
      acc3 += a.w * b;
    }
    workgroupBarrier();  // the next step overwrites the tiles
  }

  let m = m0 + 4u * ty;
  let k = k0 + 4u * tx;
  store_row(m, k, acc0);
  store_row(m + 1u, k, acc1);
  store_row(m + 2u, k, acc2);
  store_row(m + 3u, k, acc3);
}
