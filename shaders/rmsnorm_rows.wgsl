// RMSNorm, serial variant (CPU-class devices, src/kernels/plan.ts): one invocation per row, no
// workgroup memory and no barrier; the row's sum of squares is a plain loop in registers.
// y = (x * inverseSqrt(mean(x^2) + eps)) * weight, HF order.
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;        // [T, dim]
@group(0) @binding(2) var<storage, read> weight: array<f32>;   // [dim]
@group(0) @binding(3) var<storage, read_write> y: array<f32>;  // [T, dim]

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (row >= p.T) { return; }
  let base = row * p.dim;
  var ss = 0.0;
  for (var i = 0u; i < p.dim; i++) {
    let v = x[base + i];
    ss += v * v;
  }
  let inv = inverseSqrt(ss / f32(p.dim) + p.eps);
  for (var i = 0u; i < p.dim; i++) { y[base + i] = (x[base + i] * inv) * weight[i]; }
}
