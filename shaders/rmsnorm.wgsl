// RMSNorm as HF Llama: y = x * inverseSqrt(mean(x^2) + eps) * weight, one workgroup per row.
// The ENABLE placeholder is `enable subgroups;` for the subgroup reduction, empty for the fallback.
{{ENABLE}}
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;        // [T, dim]
@group(0) @binding(2) var<storage, read> weight: array<f32>;   // [dim]
@group(0) @binding(3) var<storage, read_write> y: array<f32>;  // [T, dim]

{{REDUCE}}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, ids: ReduceIds) {
  let row = wid.x + wid.y * nwg.x;
  // Workgroup-uniform exit: the barriers in workgroupSum stay in uniform control flow.
  if (row >= p.T) { return; }
  let base = row * p.dim;
  var ss = 0.0;
  for (var i = ids.lid; i < p.dim; i = i + {{WG}}u) {
    let v = x[base + i];
    ss = ss + v * v;
  }
  let total = workgroupSum(ss, ids);
  let inv = inverseSqrt(total / f32(p.dim) + p.eps);
  for (var i = ids.lid; i < p.dim; i = i + {{WG}}u) {
    // HF order: (x * inv) first, then the weight.
    y[base + i] = (x[base + i] * inv) * weight[i];
  }
}
