// Causal attention backward, part 2: dk and dv. One workgroup per (key j, KV head g); it walks the
// pairs (query i >= j, query head h of group g), G = nHeads / nKvHeads of them per query, in tiles
// of WG pairs, one pair per invocation:
//   P = exp(scale * q_ih . k_j - lse[i, h]);  dS = P * (dout_ih . v_j - delta[i, h])
// then each invocation owns DPT dims:  dv[d] += sum P * dout_ih[d],  dk[d] += sum dS * q_ih[d]
// (pairs in order: deterministic), and dk is scaled once at the end. delta comes from part 1.
// Key window (uniforms sinks, window >= 1): key j is seen by the queries i in [j, qEnd), qEnd = T
// for a sink (j < sinks), else min(T, j + window); the pairs of other queries are never visited.
{{PARAMS}}

const HD: u32 = {{HEAD_DIM}}u;
const WG: u32 = {{WG}}u;
const DPT: u32 = {{DIMS_PER_THREAD}}u; // ceil(HD / WG)

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;          // [T, nHeads, HD]
@group(0) @binding(2) var<storage, read> k: array<f32>;          // [T, nKvHeads, HD]
@group(0) @binding(3) var<storage, read> v: array<f32>;          // [T, nKvHeads, HD]
@group(0) @binding(4) var<storage, read> dout: array<f32>;       // [T, nHeads, HD]
@group(0) @binding(5) var<storage, read> lse: array<f32>;        // [T, nHeads]
@group(0) @binding(6) var<storage, read> delta: array<f32>;      // [T, nHeads]
@group(0) @binding(7) var<storage, read_write> dk: array<f32>;   // [T, nKvHeads, HD]
@group(0) @binding(8) var<storage, read_write> dv: array<f32>;   // [T, nKvHeads, HD]

var<workgroup> kShared: array<f32, HD>;
var<workgroup> vShared: array<f32, HD>;
var<workgroup> pTile: array<f32, WG>;    // P of each pair of the tile
var<workgroup> dsTile: array<f32, WG>;   // dS of each pair
var<workgroup> rowTile: array<u32, WG>;  // offset of the pair's q / dout row

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let item = wid.x + wid.y * nwg.x;
  if (item >= p.T * p.nKvHeads) { return; } // uniform: the whole workgroup leaves
  let j = item / p.nKvHeads;
  let kvHead = item % p.nKvHeads;
  let G = p.nHeads / p.nKvHeads;
  let kvBase = item * HD;
  for (var d = lid; d < HD; d = d + WG) {
    kShared[d] = k[kvBase + d];
    vShared[d] = v[kvBase + d];
  }
  workgroupBarrier();

  let wnd = max(p.window, 1u);
  let qEnd = select(j + wnd, p.T, j < p.sinks || wnd >= p.T - j); // no j + wnd overflow
  let pairs = (qEnd - j) * G;
  var accK: array<f32, DPT>;
  var accV: array<f32, DPT>;
  for (var t0 = 0u; t0 < pairs; t0 = t0 + WG) {
    let t = t0 + lid;
    var prob = 0.0;
    var g = 0.0;
    var row = 0u;
    if (t < pairs) {
      let i = j + t / G;
      let head = kvHead * G + t % G;
      let r = i * p.nHeads + head;
      row = r * HD;
      var s = 0.0;
      var dp = 0.0;
      for (var d = 0u; d < HD; d = d + 1u) {
        s = s + q[row + d] * kShared[d];
        dp = dp + dout[row + d] * vShared[d];
      }
      prob = exp(s * p.scale - lse[r]);
      g = prob * (dp - delta[r]);
    }
    pTile[lid] = prob;
    dsTile[lid] = g;
    rowTile[lid] = row;
    workgroupBarrier();
    let n = min(WG, pairs - t0);
    for (var u = 0u; u < DPT; u = u + 1u) {
      let d = lid + u * WG;
      if (d < HD) {
        var ak = accK[u];
        var av = accV[u];
        for (var jj = 0u; jj < n; jj = jj + 1u) {
          let rb = rowTile[jj] + d;
          ak = ak + dsTile[jj] * q[rb];
          av = av + pTile[jj] * dout[rb];
        }
        accK[u] = ak;
        accV[u] = av;
      }
    }
    workgroupBarrier(); // the next tile overwrites the tiles
  }
  for (var u = 0u; u < DPT; u = u + 1u) {
    let d = lid + u * WG;
    if (d < HD) {
      dk[kvBase + d] = accK[u] * p.scale;
      dv[kvBase + d] = accV[u];
    }
  }
}
