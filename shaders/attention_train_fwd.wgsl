// Causal attention of one training sequence, forward, contiguous q/k/v. One workgroup per
// (query i, head h); keys 0..i are walked in tiles of WG, one key per invocation, with an online
// softmax (as attention_decode.wgsl): tile max -> running max m, old state rescaled by exp(m - m'),
// p_j = exp(s_j - m') to workgroup memory, each invocation owns DPT output dims. At the end
// lse = m + log(l) is saved for the backward, which recomputes P_ij = exp(s_ij - lse_i).
// Key window (uniforms sinks, window >= 1, as the inference kernels'): query i sees keys j <= i
// with j < sinks or i - j < window, walked as n slots (sinks first, then the window): masked keys
// are never visited.
{{PARAMS}}

const HD: u32 = {{HEAD_DIM}}u;
const WG: u32 = {{WG}}u;
const DPT: u32 = {{DIMS_PER_THREAD}}u; // ceil(HD / WG)
const NEG_BIG: f32 = -1.0e30;          // "minus infinity" that stays finite in exp(a - b)

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;          // [T, nHeads, HD]
@group(0) @binding(2) var<storage, read> k: array<f32>;          // [T, nKvHeads, HD]
@group(0) @binding(3) var<storage, read> v: array<f32>;          // [T, nKvHeads, HD]
@group(0) @binding(4) var<storage, read_write> out: array<f32>;  // [T, nHeads, HD]
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;  // [T, nHeads]

// Key position of slot `slot`: the sinks [0, sinkEnd), then recentStart onwards.
fn keyAt(slot: u32, sinkEnd: u32, recentStart: u32) -> u32 {
  return select(recentStart + (slot - sinkEnd), slot, slot < sinkEnd);
}

var<workgroup> qShared: array<f32, HD>;
var<workgroup> probs: array<f32, WG>;  // p_j of the current tile

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
  for (var d = lid; d < HD; d = d + WG) { qShared[d] = q[qBase + d]; }
  workgroupBarrier();

  let causal = i + 1u;
  let wnd = max(p.window, 1u);
  let sinkEnd = min(p.sinks, causal);
  let recentStart = max(select(0u, causal - wnd, causal > wnd), sinkEnd);
  let len = sinkEnd + (causal - recentStart); // visible keys
  var m = NEG_BIG;
  var lPart = 0.0;
  var acc: array<f32, DPT>;
  for (var j0 = 0u; j0 < len; j0 = j0 + WG) {
    let j = j0 + lid;
    var s = NEG_BIG;
    if (j < len) {
      let base = keyAt(j, sinkEnd, recentStart) * kvStride + kvOff;
      var dot = 0.0;
      for (var d = 0u; d < HD; d = d + 1u) { dot = dot + qShared[d] * k[base + d]; }
      s = dot * p.scale;
    }
    let mNew = max(m, {{MAX_FN}}(s, lid));
    let alpha = exp(m - mNew);
    var prob = 0.0;
    if (j < len) { prob = exp(s - mNew); }
    probs[lid] = prob;
    lPart = lPart * alpha + prob;
    m = mNew;
    workgroupBarrier();

    let n = min(WG, len - j0);
    for (var t = 0u; t < DPT; t = t + 1u) {
      let d = lid + t * WG;
      if (d < HD) {
        var a = acc[t] * alpha;
        for (var jj = 0u; jj < n; jj = jj + 1u) { a = a + probs[jj] * v[keyAt(j0 + jj, sinkEnd, recentStart) * kvStride + kvOff + d]; }
        acc[t] = a;
      }
    }
    workgroupBarrier(); // the next tile overwrites probs
  }

  let l = workgroupSum(lPart, lid); // >= 1: the max key contributes exp(0)
  for (var t = 0u; t < DPT; t = t + 1u) {
    let d = lid + t * WG;
    if (d < HD) { out[qBase + d] = acc[t] / l; }
  }
  if (lid == 0u) { lse[item] = m + log(l); }
}
