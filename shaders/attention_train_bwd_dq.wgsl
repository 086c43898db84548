// Causal attention backward, part 1: dq, and D = rowsum(dout * out) for part 2. One workgroup per
// (query i, head h):
//   D = sum_d dout[d] * out[d]          (workgroup sum, written to delta[i, h])
//   for keys j <= i in tiles of WG, one key per invocation:
//     P = exp(scale * q.k_j - lse[i, h]);  dS_j = P * (dout . v_j - D)     (to workgroup memory)
//   dq[d] = scale * sum_j dS_j * k_j[d]  (each invocation owns DPT dims; j in order: deterministic)
// Key window as attention_train_fwd.wgsl: only the visible keys j (sinks, then the window) are
// walked, in the same slot order. Uses workgroupSum(v, lid) from the tree-reduction prelude.
{{PARAMS}}

const HD: u32 = {{HEAD_DIM}}u;
const WG: u32 = {{WG}}u;
const DPT: u32 = {{DIMS_PER_THREAD}}u; // ceil(HD / WG)

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;            // [T, nHeads, HD]
@group(0) @binding(2) var<storage, read> k: array<f32>;            // [T, nKvHeads, HD]
@group(0) @binding(3) var<storage, read> v: array<f32>;            // [T, nKvHeads, HD]
@group(0) @binding(4) var<storage, read> out: array<f32>;          // [T, nHeads, HD]
@group(0) @binding(5) var<storage, read> dout: array<f32>;         // [T, nHeads, HD]
@group(0) @binding(6) var<storage, read> lse: array<f32>;          // [T, nHeads]
@group(0) @binding(7) var<storage, read_write> dq: array<f32>;     // [T, nHeads, HD]
@group(0) @binding(8) var<storage, read_write> delta: array<f32>;  // [T, nHeads]

// Key position of slot `slot`: the sinks [0, sinkEnd), then recentStart onwards.
fn keyAt(slot: u32, sinkEnd: u32, recentStart: u32) -> u32 {
  return select(recentStart + (slot - sinkEnd), slot, slot < sinkEnd);
}

var<workgroup> qShared: array<f32, HD>;
var<workgroup> doShared: array<f32, HD>;
var<workgroup> dS: array<f32, WG>;  // dS_j of the current tile

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let item = wid.x + wid.y * nwg.x;
  if (item >= p.T * p.nHeads) { return; } // uniform: the whole workgroup leaves
  let i = item / p.nHeads;
  let head = item % p.nHeads;
  let kvHead = head / (p.nHeads / p.nKvHeads);
  let kvStride = p.nKvHeads * HD;
  let kvOff = kvHead * HD;
  let qBase = item * HD;
  var part = 0.0;
  for (var d = lid; d < HD; d = d + WG) {
    qShared[d] = q[qBase + d];
    let g = dout[qBase + d];
    doShared[d] = g;
    part = part + g * out[qBase + d];
  }
  let D = workgroupSum(part, lid); // its barriers also publish qShared / doShared
  if (lid == 0u) { delta[item] = D; }
  let rowLse = lse[item];

  let causal = i + 1u;
  let wnd = max(p.window, 1u);
  let sinkEnd = min(p.sinks, causal);
  let recentStart = max(select(0u, causal - wnd, causal > wnd), sinkEnd);
  let len = sinkEnd + (causal - recentStart); // visible keys
  var acc: array<f32, DPT>;
  for (var j0 = 0u; j0 < len; j0 = j0 + WG) {
    let j = j0 + lid;
    var g = 0.0;
    if (j < len) {
      let base = keyAt(j, sinkEnd, recentStart) * kvStride + kvOff;
      var s = 0.0;
      var dp = 0.0;
      for (var d = 0u; d < HD; d = d + 1u) {
        s = s + qShared[d] * k[base + d];
        dp = dp + doShared[d] * v[base + d];
      }
      g = exp(s * p.scale - rowLse) * (dp - D);
    }
    dS[lid] = g;
    workgroupBarrier();
    let n = min(WG, len - j0);
    for (var t = 0u; t < DPT; t = t + 1u) {
      let d = lid + t * WG;
      if (d < HD) {
        var a = acc[t];
        for (var jj = 0u; jj < n; jj = jj + 1u) { a = a + dS[jj] * k[keyAt(j0 + jj, sinkEnd, recentStart) * kvStride + kvOff + d]; }
        acc[t] = a;
      }
    }
    workgroupBarrier(); // the next tile overwrites dS
  }
  for (var t = 0u; t < DPT; t = t + 1u) {
    let d = lid + t * WG;
    if (d < HD) { dq[qBase + d] = acc[t] * p.scale; }
  }
}
