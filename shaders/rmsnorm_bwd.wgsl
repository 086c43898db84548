// RMSNorm backward (frozen weight), one workgroup per row:
//   r = inverseSqrt(mean(x^2) + eps),  dx_i (+)= r * w_i * dy_i - x_i * (r^3 / dim) * sum_j dy_j w_j x_j
// ENABLE is `enable subgroups;` for the subgroup reduction, empty for the fallback.
{{ENABLE}}
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;         // [T, dim]
@group(0) @binding(2) var<storage, read> weight: array<f32>;    // [dim]
@group(0) @binding(3) var<storage, read> dy: array<f32>;        // [T, dim]
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;  // [T, dim]

{{REDUCE}}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, ids: ReduceIds) {
  let row = wid.x + wid.y * nwg.x;
  // Workgroup-uniform exit: the barriers in workgroupSum stay in uniform control flow.
  if (row >= p.T) { return; }
  let base = row * p.dim;
  var ss = 0.0;
  var dot = 0.0;
  for (var i = ids.lid; i < p.dim; i = i + {{WG}}u) {
    let v = x[base + i];
    ss = ss + v * v;
    dot = dot + dy[base + i] * weight[i] * v;
  }
  let sumSq = workgroupSum(ss, ids);
  let sumDot = workgroupSum(dot, ids);
  let r = inverseSqrt(sumSq / f32(p.dim) + p.eps);
  let c = r * r * r * sumDot / f32(p.dim);
  for (var i = ids.lid; i < p.dim; i = i + {{WG}}u) {
    let g = r * weight[i] * dy[base + i] - x[base + i] * c;
    if (p.accumulate != 0u) { dx[base + i] += g; } else { dx[base + i] = g; }
  }
}
