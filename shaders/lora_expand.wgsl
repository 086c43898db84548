// LoRA expand, the second half of the serving delta, added in place into the base output:
// y[m, o] += scales[s] * (h[m, :] · B_s[o, :]) with s = ids[m], over a bank B [nSlots, outDim, r]
// starting at element bOffset. One invocation per (m, o); rows without a valid slot are untouched.
// PEFT order: (x·Aᵀ)·Bᵀ first, the scale last.
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> h: array<f32>;            // [M, r] from lora_shrink
@group(0) @binding(2) var<storage, read> B: array<f32>;            // bank: [bOffset + nSlots * outDim * r]
@group(0) @binding(3) var<storage, read> ids: array<u32>;          // [M] slot per row
@group(0) @binding(4) var<storage, read> scales: array<f32>;       // [nSlots] lora_alpha / r (or / sqrt(r))
@group(0) @binding(5) var<storage, read_write> y: array<f32>;      // [M, outDim], updated in place

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let cell = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (cell >= p.M * p.outDim) { return; }
  let m = cell / p.outDim;
  let o = cell % p.outDim;
  let slot = ids[m];
  if (slot >= p.nSlots) { return; }
  let bBase = p.bOffset + (slot * p.outDim + o) * p.r;
  let hBase = m * p.r;
  var acc = 0.0;
  for (var j = 0u; j < p.r; j = j + 1u) {
    acc = acc + h[hBase + j] * B[bBase + j];
  }
  y[cell] = y[cell] + scales[slot] * acc;
}
