// Logit bias and grammar masks on logits [R, V], in place, after the penalties and before top-k.
// One workgroup per row. A masked row sets every token whose bit is clear in its mask row to -inf;
// a row's bias entries add to their tokens' logits, but only to tokens the mask allows. The two
// parts write disjoint logits (masked-out tokens vs allowed ones), so they need no barrier.
// -inf comes from a uniform (p.negInfBits = 0xff800000): WGSL refuses a constant that is not finite.
//   mask:  [R, W] u32, W = ceil(V / 32); bit (t & 31) of word t >> 5: token t allowed
//   rows:  [R] RowMask {masked (0/1), nBias}
//   bias:  [R, maxBias, 2] u32 (token id, f32 bits of the bias); ids distinct within a row
{{PARAMS}}

struct RowMask {
  masked: u32,
  nBias: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> logits: array<f32>; // [R, V]
@group(0) @binding(2) var<storage, read> mask: array<u32>;         // [R, W]
@group(0) @binding(3) var<storage, read> rows: array<RowMask>;     // [R]
@group(0) @binding(4) var<storage, read> bias: array<u32>;         // [R, maxBias, 2]

fn allowed(row: u32, t: u32) -> bool {
  return (mask[row * p.W + (t >> 5u)] & (1u << (t & 31u))) != 0u;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.R) { return; }
  let st = rows[row];
  let masked = st.masked != 0u;
  if (masked) {
    for (var t = lid; t < p.V; t = t + {{WG}}u) {
      if (!allowed(row, t)) { logits[row * p.V + t] = bitcast<f32>(p.negInfBits); }
    }
  }
  let n = min(st.nBias, p.maxBias);
  for (var j = lid; j < n; j = j + {{WG}}u) {
    let at = (row * p.maxBias + j) * 2u;
    let id = bias[at];
    if (id >= p.V || (masked && !allowed(row, id))) { continue; }
    logits[row * p.V + id] = logits[row * p.V + id] + bitcast<f32>(bias[at + 1u]);
  }
}
