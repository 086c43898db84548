// Row gather: out[i, :] = x[rows[i], :] for i < p.R. Picks each sequence's last token before the
// LM head, so logits are computed for nSeqs rows instead of every prefill token.
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;           // [T, D]
@group(0) @binding(2) var<storage, read> rows: array<u32>;        // [R], each < T
@group(0) @binding(3) var<storage, read_write> out: array<f32>;   // [R, D]

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (i >= p.R * p.D) { return; }
  let r = i / p.D;
  let src = min(rows[r], p.T - 1u); // a bad index reads the last row rather than out of bounds
  out[i] = x[src * p.D + i % p.D];
}
