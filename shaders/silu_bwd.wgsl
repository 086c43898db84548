// SwiGLU backward, elementwise over n = T * intermediate:
//   dup[i]   = dout[i] * silu(g)                       silu(g) = g * sigmoid(g)
//   dgate[i] = dout[i] * up[i] * sigmoid(g) * (1 + g * sigmoid(-g))
// Both sigmoids come from exp(-|g|), so exp never overflows and 1 - sigmoid(g) never cancels.
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gate: array<f32>;         // [n]
@group(0) @binding(2) var<storage, read> up: array<f32>;           // [n]
@group(0) @binding(3) var<storage, read> dout: array<f32>;         // [n]
@group(0) @binding(4) var<storage, read_write> dgate: array<f32>;  // [n]
@group(0) @binding(5) var<storage, read_write> dup: array<f32>;    // [n]

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (i >= p.n) { return; }
  let g = gate[i];
  let e = exp(-abs(g));
  let big = 1.0 / (1.0 + e);
  let small = e / (1.0 + e);
  let s = select(small, big, g >= 0.0);     // sigmoid(g)
  let sNeg = select(big, small, g >= 0.0);  // sigmoid(-g) = 1 - sigmoid(g)
  let d = dout[i];
  dup[i] = d * g * s;
  dgate[i] = d * up[i] * s * (1.0 + g * sNeg);
}
