// Global gradient norm, pass 1, serial variant (CPU-class devices, src/kernels/plan.ts): one
// invocation per group sums the squares of its contiguous range [g*chunk, min((g+1)*chunk, n))
// in order, no workgroup memory and no barrier. Fixed ranges, fixed order: reproducible bits.
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grads: array<f32>;            // [n]
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;   // [groups]

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let g = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (g >= p.groups) { return; }
  let start = g * p.chunk;
  let end = min(start + p.chunk, p.n);
  var acc = 0.0;
  for (var i = start; i < end; i++) {
    let v = grads[i];
    acc += v * v;
  }
  partials[g] = acc;
}
