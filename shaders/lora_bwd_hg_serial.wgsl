// LoRA backward step 1, serial variant (CPU-class devices): per (m, j), one invocation,
//   h[m, j] = x[m, :] · A[j, :],   g[m, j] = scale * (dy[m, :] · B[:, j])
// as register loops (no workgroup reduction, no barrier). hg: h at [0, M*r), g at [M*r, 2*M*r).
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;            // [M, inDim]
@group(0) @binding(2) var<storage, read> dy: array<f32>;           // [M, outDim]
@group(0) @binding(3) var<storage, read> A: array<f32>;            // [r, inDim] at element aOffset
@group(0) @binding(4) var<storage, read> B: array<f32>;            // [outDim, r] at element bOffset
@group(0) @binding(5) var<storage, read_write> hg: array<f32>;     // [2, M, r]

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let cell = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (cell >= p.M * p.r) { return; }
  let m = cell / p.r;
  let j = cell % p.r;
  var hAcc = 0.0;
  let xBase = m * p.inDim;
  let aBase = p.aOffset + j * p.inDim;
  for (var i = 0u; i < p.inDim; i++) { hAcc += x[xBase + i] * A[aBase + i]; }
  var gAcc = 0.0;
  let dyBase = m * p.outDim;
  for (var o = 0u; o < p.outDim; o++) { gAcc += dy[dyBase + o] * B[p.bOffset + o * p.r + j]; }
  hg[cell] = hAcc;
  hg[p.M * p.r + cell] = p.scale * gAcc;
}
