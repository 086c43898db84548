// Global gradient norm, pass 1: partial sums of squares. Workgroup g owns the contiguous range
// [g*chunk, min((g+1)*chunk, n)) of the flat gradient; its lanes stride through it and a fixed
// tree adds them up. Fixed ranges and a fixed tree: the same gradients give the same bits every run.
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grads: array<f32>;            // [n]
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;   // [groups]

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let g = wid.x + wid.y * nwg.x;
  if (g >= p.groups) { return; } // workgroup-uniform
  let start = g * p.chunk;
  let end = min(start + p.chunk, p.n);
  var acc = 0.0;
  for (var i = start + lid; i < end; i = i + {{WG}}u) {
    let v = grads[i];
    acc = acc + v * v;
  }
  let total = workgroupSum(acc, lid);
  if (lid == 0u) { partials[g] = total; }
}
