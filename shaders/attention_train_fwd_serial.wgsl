// Causal attention of one training sequence, forward, serial variant (CPU-class devices): one
// invocation per (query i, head h), keys 0..i with an online softmax in registers (no workgroup
// memory, no barrier); writes out and lse = m + log(l) for the backward. Needs HD % 4 == 0.
// Key window as attention_train_fwd.wgsl: only the visible keys (sinks, then the window) are walked.
{{PARAMS}}

const HD4: u32 = {{HD4}}u;
const NEG_BIG: f32 = -1.0e30;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4f>;          // [T, nHeads, HD]
@group(0) @binding(2) var<storage, read> k: array<vec4f>;          // [T, nKvHeads, HD]
@group(0) @binding(3) var<storage, read> v: array<vec4f>;          // [T, nKvHeads, HD]
@group(0) @binding(4) var<storage, read_write> out: array<vec4f>;  // [T, nHeads, HD]
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;    // [T, nHeads]

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let item = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (item >= p.T * p.nHeads) { return; }
  let i = item / p.nHeads;
  let head = item % p.nHeads;
  let kvHead = head / (p.nHeads / p.nKvHeads);
  let kvStride = p.nKvHeads * HD4;
  let kvOff = kvHead * HD4;
  let qBase = item * HD4;
  var qv: array<vec4f, HD4>;
  var acc: array<vec4f, HD4>;
  for (var d = 0u; d < HD4; d++) { qv[d] = q[qBase + d]; }
  let causal = i + 1u;
  let wnd = max(p.window, 1u);
  let sinkEnd = min(p.sinks, causal);
  let recentStart = max(select(0u, causal - wnd, causal > wnd), sinkEnd);
  let n = sinkEnd + (causal - recentStart);
  var m = NEG_BIG;
  var l = 0.0;
  for (var slot = 0u; slot < n; slot++) {
    let j = select(recentStart + (slot - sinkEnd), slot, slot < sinkEnd);
    let base = j * kvStride + kvOff;
    var d4 = vec4f(0.0);
    for (var d = 0u; d < HD4; d++) { d4 += qv[d] * k[base + d]; }
    let s = (d4.x + d4.y + d4.z + d4.w) * p.scale;
    if (s > m) {
      let alpha = exp(m - s);
      l *= alpha;
      for (var d = 0u; d < HD4; d++) { acc[d] *= alpha; }
      m = s;
    }
    let e = exp(s - m);
    l += e;
    for (var d = 0u; d < HD4; d++) { acc[d] += e * v[base + d]; }
  }
  let inv = 1.0 / l; // >= 1: the max key contributes exp(0)
  for (var d = 0u; d < HD4; d++) { out[qBase + d] = acc[d] * inv; }
  lse[item] = m + log(l);
}
