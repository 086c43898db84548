// Bias add, in place: y[t, n] += bias[n] for t < p.T, n < p.N (Qwen2's q/k/v projection bias).
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;     // [T, N]
@group(0) @binding(2) var<storage, read> bias: array<f32>;        // [N]

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (i >= p.T * p.N) { return; }
  y[i] = y[i] + bias[i % p.N];
}
