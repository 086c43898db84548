// LoRA backward, the input-gradient contribution added into an existing dx (the base layer's
// x-gradient): dx[m, i] += Σ_j g[m, j] * A[j, i]. One invocation per (m, i).
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> hg: array<f32>;           // [2, M, r]: g second
@group(0) @binding(2) var<storage, read> A: array<f32>;            // [r, inDim] at element aOffset
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;     // [M, inDim], updated in place

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let cell = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (cell >= p.M * p.inDim) { return; }
  let m = cell / p.inDim;
  let i = cell % p.inDim;
  let gBase = p.M * p.r + m * p.r;
  var acc = 0.0;
  for (var j = 0u; j < p.r; j = j + 1u) {
    acc = acc + hg[gBase + j] * A[p.aOffset + j * p.inDim + i];
  }
  dx[cell] = dx[cell] + acc;
}
