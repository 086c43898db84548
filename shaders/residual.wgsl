// Residual add, in place: h[i] += delta[i] for i < p.n.
// In place because WebGPU forbids binding one buffer both read and read_write in a dispatch,
// and the decoder only ever accumulates into its hidden state.
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> h: array<f32>;     // [n]
@group(0) @binding(2) var<storage, read> delta: array<f32>;       // [n]

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (i >= p.n) { return; }
  h[i] = h[i] + delta[i];
}
