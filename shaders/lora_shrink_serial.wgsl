// LoRA shrink, serial variant (CPU-class devices): h[m, j] = x[m, :] · A_s[j, :] with s = ids[m],
// one invocation per (m, j) looping over inDim in registers (no workgroup reduction, no barrier).
// Rows without a valid slot are skipped (lora_expand skips them too).
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;            // [M, inDim]
@group(0) @binding(2) var<storage, read> A: array<f32>;            // bank: [aOffset + nSlots * r * inDim]
@group(0) @binding(3) var<storage, read> ids: array<u32>;          // [M] slot per row
@group(0) @binding(4) var<storage, read_write> h: array<f32>;      // [M, r] scratch

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let cell = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (cell >= p.M * p.r) { return; }
  let m = cell / p.r;
  let j = cell % p.r;
  let slot = ids[m];
  if (slot >= p.nSlots) { return; }
  let xBase = m * p.inDim;
  let aBase = p.aOffset + (slot * p.r + j) * p.inDim;
  var acc = 0.0;
  for (var i = 0u; i < p.inDim; i++) { acc += x[xBase + i] * A[aBase + i]; }
  h[cell] = acc;
}
