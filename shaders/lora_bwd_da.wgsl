// LoRA backward, ∂loss/∂A accumulated: dA[j, i] += Σ_m g[m, j] * x[m, i] (g already carries the
// scale). One invocation per (j, i), the sum over m in row order (deterministic). dA lives in the
// flat gradient buffer at element aOffset.
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;            // [M, inDim]
@group(0) @binding(2) var<storage, read> hg: array<f32>;           // [2, M, r]: g second
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;   // dA [r, inDim] at element aOffset

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let cell = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (cell >= p.r * p.inDim) { return; }
  let j = cell / p.inDim;
  let i = cell % p.inDim;
  let gBase = p.M * p.r;
  var acc = 0.0;
  for (var m = 0u; m < p.M; m = m + 1u) {
    acc = acc + hg[gBase + m * p.r + j] * x[m * p.inDim + i];
  }
  grad[p.aOffset + cell] = grad[p.aOffset + cell] + acc;
}
