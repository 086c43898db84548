// LoRA backward, ∂loss/∂B accumulated: dB[o, j] += scale * Σ_m dy[m, o] * h[m, j].
// One invocation per (o, j), the sum over m in row order (deterministic). dB lives in the flat
// gradient buffer at element bOffset (same offsets as the parameters).
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;           // [M, outDim]
@group(0) @binding(2) var<storage, read> hg: array<f32>;           // [2, M, r]: h first
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;   // dB [outDim, r] at element bOffset

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let cell = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (cell >= p.outDim * p.r) { return; }
  let o = cell / p.r;
  let j = cell % p.r;
  var acc = 0.0;
  for (var m = 0u; m < p.M; m = m + 1u) {
    acc = acc + dy[m * p.outDim + o] * hg[m * p.r + j];
  }
  grad[p.bOffset + cell] = grad[p.bOffset + cell] + p.scale * acc;
}
