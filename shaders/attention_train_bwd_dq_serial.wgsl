// Causal attention backward, part 1, serial variant (CPU-class devices): one invocation per
// (query i, head h), no workgroup memory and no barrier:
//   D = dout_i . out_i (written to delta[i, h]);  for j <= i: P = exp(scale q.k_j - lse),
//   dS = P (dout_i . v_j - D);  dq = scale * sum_j dS k_j  (j in order: deterministic)
// Key window as attention_train_fwd.wgsl: only the visible keys (sinks, then the window).
{{PARAMS}}

const HD4: u32 = {{HD4}}u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4f>;            // [T, nHeads, HD]
@group(0) @binding(2) var<storage, read> k: array<vec4f>;            // [T, nKvHeads, HD]
@group(0) @binding(3) var<storage, read> v: array<vec4f>;            // [T, nKvHeads, HD]
@group(0) @binding(4) var<storage, read> out: array<vec4f>;          // [T, nHeads, HD]
@group(0) @binding(5) var<storage, read> dout: array<vec4f>;         // [T, nHeads, HD]
@group(0) @binding(6) var<storage, read> lse: array<f32>;            // [T, nHeads]
@group(0) @binding(7) var<storage, read_write> dq: array<vec4f>;     // [T, nHeads, HD]
@group(0) @binding(8) var<storage, read_write> delta: array<f32>;    // [T, nHeads]

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
  var gv: array<vec4f, HD4>;
  var acc: array<vec4f, HD4>;
  var D4 = vec4f(0.0);
  for (var d = 0u; d < HD4; d++) {
    qv[d] = q[qBase + d];
    gv[d] = dout[qBase + d];
    D4 += gv[d] * out[qBase + d];
  }
  let D = D4.x + D4.y + D4.z + D4.w;
  delta[item] = D;
  let rowLse = lse[item];
  let causal = i + 1u;
  let wnd = max(p.window, 1u);
  let sinkEnd = min(p.sinks, causal);
  let recentStart = max(select(0u, causal - wnd, causal > wnd), sinkEnd);
  let n = sinkEnd + (causal - recentStart);
  for (var slot = 0u; slot < n; slot++) {
    let j = select(recentStart + (slot - sinkEnd), slot, slot < sinkEnd);
    let base = j * kvStride + kvOff;
    var s4 = vec4f(0.0);
    var p4 = vec4f(0.0);
    for (var d = 0u; d < HD4; d++) {
      s4 += qv[d] * k[base + d];
      p4 += gv[d] * v[base + d];
    }
    let s = s4.x + s4.y + s4.z + s4.w;
    let dp = p4.x + p4.y + p4.z + p4.w;
    let g = exp(s * p.scale - rowLse) * (dp - D);
    for (var d = 0u; d < HD4; d++) { acc[d] += g * k[base + d]; }
  }
  for (var d = 0u; d < HD4; d++) { dq[qBase + d] = acc[d] * p.scale; }
}
