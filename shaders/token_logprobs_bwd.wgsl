// Gradient of logp[t] = logits[t, target[t]] - lse_t w.r.t. the logits, one workgroup per row:
//   dlogits[t, c] = dlogp[t] * ((c == target[t]) - exp(logits[t, c] - lse_t))
// lse is recomputed as in token_logprobs.wgsl.
{{PARAMS}}

const WG: u32 = {{WG}}u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;         // [T, V]
@group(0) @binding(2) var<storage, read> targets: array<u32>;        // [T]
@group(0) @binding(3) var<storage, read> dlogp: array<f32>;          // [T]
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;  // [T, V]

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.T) { return; } // whole workgroup leaves together: the reductions stay uniform
  let base = row * p.V;
  let lse = rowLogSumExp(base, p.V, lid);
  let g = dlogp[row];
  let tgt = min(targets[row], p.V - 1u);
  for (var c = lid; c < p.V; c = c + WG) {
    dlogits[base + c] = g * (select(0.0, 1.0, c == tgt) - exp(logits[base + c] - lse));
  }
}
