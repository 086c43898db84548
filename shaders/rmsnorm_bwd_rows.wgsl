// RMSNorm backward (frozen weight), serial variant (CPU-class devices): one invocation per row,
// both row sums in registers, no workgroup memory and no barrier.
//   r = inverseSqrt(mean(x^2) + eps),  dx_i (+)= r * w_i * dy_i - x_i * (r^3 / dim) * sum_j dy_j w_j x_j
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;         // [T, dim]
@group(0) @binding(2) var<storage, read> weight: array<f32>;    // [dim]
@group(0) @binding(3) var<storage, read> dy: array<f32>;        // [T, dim]
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;  // [T, dim]

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (row >= p.T) { return; }
  let base = row * p.dim;
  var ss = 0.0;
  var dot = 0.0;
  for (var i = 0u; i < p.dim; i++) {
    let v = x[base + i];
    ss += v * v;
    dot += dy[base + i] * weight[i] * v;
  }
  let r = inverseSqrt(ss / f32(p.dim) + p.eps);
  let c = r * r * r * dot / f32(p.dim);
  for (var i = 0u; i < p.dim; i++) {
    let g = r * weight[i] * dy[base + i] - x[base + i] * c;
    if (p.accumulate != 0u) { dx[base + i] += g; } else { dx[base + i] = g; }
  }
}
