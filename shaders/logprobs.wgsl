// Log-probabilities for the tokens a batch sampled, one workgroup per row: logsumexp of the row's
// logits (online max/sum per invocation, then a workgroup max and a rescaled tree sum, as in
// softmax.wgsl), then only a few numbers leave the row:
//   out[row, 0]          = logits[row, chosen[row]] - lse              (f32 bits)
//   out[row, 1 + 2j]     = candIds[row, j]                             for j < L (the top candidates)
//   out[row, 2 + 2j]     = candValues[row, j] - lse                    (f32 bits)
// so the host reads back (1 + 2L) words per row instead of V. The buffer is u32 so ids are moved
// as integers (an id bit pattern stored as f32 would be a subnormal some GPUs flush to zero).
{{PARAMS}}

const WG: u32 = {{WG}}u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;      // [R, V]
@group(0) @binding(2) var<storage, read> candValues: array<f32>;  // [R, k] sorted descending
@group(0) @binding(3) var<storage, read> candIds: array<u32>;     // [R, k]
@group(0) @binding(4) var<storage, read> chosen: array<u32>;      // [R]
@group(0) @binding(5) var<storage, read_write> out: array<u32>;   // [R, 1 + 2L]

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.R) { return; } // whole workgroup leaves together: the reductions stay uniform
  let base = row * p.V;
  let lse = rowLogSumExp(base, p.V, lid);
  let stride = 1u + 2u * p.L;
  let o = row * stride;
  if (lid == 0u) {
    out[o] = bitcast<u32>(logits[base + min(chosen[row], p.V - 1u)] - lse);
  }
  for (var j = lid; j < p.L; j = j + WG) {
    out[o + 1u + 2u * j] = candIds[row * p.k + j];
    out[o + 2u + 2u * j] = bitcast<u32>(candValues[row * p.k + j] - lse);
  }
}
