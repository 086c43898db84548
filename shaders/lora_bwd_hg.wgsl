// LoRA backward, step 1 (one adapter): per (m, j)
//   h[m, j] = x[m, :] · A[j, :]                     the shrink output, recomputed (r is small)
//   g[m, j] = scale * (dy[m, :] · B[:, j])          ∂loss/∂h, the gradient flowing into A's output
// One workgroup per (m, j), two fixed-order tree sums. hg holds h at [0, M*r) and g at [M*r, 2*M*r).
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;            // [M, inDim]
@group(0) @binding(2) var<storage, read> dy: array<f32>;           // [M, outDim]
@group(0) @binding(3) var<storage, read> A: array<f32>;            // [r, inDim] at element aOffset
@group(0) @binding(4) var<storage, read> B: array<f32>;            // [outDim, r] at element bOffset
@group(0) @binding(5) var<storage, read_write> hg: array<f32>;     // [2, M, r]

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let cell = wid.x + wid.y * nwg.x;
  if (cell >= p.M * p.r) { return; } // workgroup-uniform
  let m = cell / p.r;
  let j = cell % p.r;
  var hAcc = 0.0;
  for (var i = lid; i < p.inDim; i = i + {{WG}}u) {
    hAcc = hAcc + x[m * p.inDim + i] * A[p.aOffset + j * p.inDim + i];
  }
  var gAcc = 0.0;
  for (var o = lid; o < p.outDim; o = o + {{WG}}u) {
    gAcc = gAcc + dy[m * p.outDim + o] * B[p.bOffset + o * p.r + j];
  }
  let hSum = workgroupSum(hAcc, lid);
  let gSum = workgroupSum(gAcc, lid);
  if (lid == 0u) {
    hg[cell] = hSum;
    hg[p.M * p.r + cell] = p.scale * gSum;
  }
}
