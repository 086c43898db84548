// Log-probability of each row's target token: logp[t] = logits[t, target[t]] - lse_t, one
// workgroup per row. lse: online (max, sum of exp) per invocation over strided columns, then a
// workgroup max and the tree sum of the partials rescaled to it (as softmax.wgsl).
{{PARAMS}}

const WG: u32 = {{WG}}u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;     // [T, V]
@group(0) @binding(2) var<storage, read> targets: array<u32>;    // [T]
@group(0) @binding(3) var<storage, read_write> logp: array<f32>; // [T]

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.T) { return; } // whole workgroup leaves together: the reductions stay uniform
  let base = row * p.V;
  let lse = rowLogSumExp(base, p.V, lid);
  if (lid == 0u) { logp[row] = logits[base + min(targets[row], p.V - 1u)] - lse; }
}
