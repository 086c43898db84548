// Causal attention backward, part 2, serial variant (CPU-class devices): one invocation per
// (key j, KV head g), no workgroup memory and no barrier. For every query i >= j and query head
// h of group g (in order: deterministic):
//   P = exp(scale q_ih . k_j - lse[i, h]);  dS = P (dout_ih . v_j - delta[i, h])
//   dv += P dout_ih;  dk += dS q_ih;  dk scaled once at the end. delta comes from part 1.
// Key window as attention_train_bwd_dkdv.wgsl: only the queries i in [j, qEnd) that see key j.
{{PARAMS}}

const HD4: u32 = {{HD4}}u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4f>;          // [T, nHeads, HD]
@group(0) @binding(2) var<storage, read> k: array<vec4f>;          // [T, nKvHeads, HD]
@group(0) @binding(3) var<storage, read> v: array<vec4f>;          // [T, nKvHeads, HD]
@group(0) @binding(4) var<storage, read> dout: array<vec4f>;       // [T, nHeads, HD]
@group(0) @binding(5) var<storage, read> lse: array<f32>;          // [T, nHeads]
@group(0) @binding(6) var<storage, read> delta: array<f32>;        // [T, nHeads]
@group(0) @binding(7) var<storage, read_write> dk: array<vec4f>;   // [T, nKvHeads, HD]
@group(0) @binding(8) var<storage, read_write> dv: array<vec4f>;   // [T, nKvHeads, HD]

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let item = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (item >= p.T * p.nKvHeads) { return; }
  let j = item / p.nKvHeads;
  let kvHead = item % p.nKvHeads;
  let G = p.nHeads / p.nKvHeads;
  let kvBase = item * HD4;
  var kv: array<vec4f, HD4>;
  var vv: array<vec4f, HD4>;
  var accK: array<vec4f, HD4>;
  var accV: array<vec4f, HD4>;
  for (var d = 0u; d < HD4; d++) {
    kv[d] = k[kvBase + d];
    vv[d] = v[kvBase + d];
  }
  let wnd = max(p.window, 1u);
  let qEnd = select(j + wnd, p.T, j < p.sinks || wnd >= p.T - j); // no j + wnd overflow
  for (var i = j; i < qEnd; i++) {
    for (var t = 0u; t < G; t++) {
      let r = i * p.nHeads + kvHead * G + t;
      let row = r * HD4;
      var s4 = vec4f(0.0);
      var p4 = vec4f(0.0);
      for (var d = 0u; d < HD4; d++) {
        s4 += q[row + d] * kv[d];
        p4 += dout[row + d] * vv[d];
      }
      let prob = exp((s4.x + s4.y + s4.z + s4.w) * p.scale - lse[r]);
      let g = prob * ((p4.x + p4.y + p4.z + p4.w) - delta[r]);
      for (var d = 0u; d < HD4; d++) {
        accK[d] += g * q[row + d];
        accV[d] += prob * dout[row + d];
      }
    }
  }
  for (var d = 0u; d < HD4; d++) {
    dk[kvBase + d] = accK[d] * p.scale;
    dv[kvBase + d] = accV[d];
  }
}
