// LoRA shrink, the first half of the serving delta: h[m, j] = x[m, :] · A_s[j, :] for the adapter
// s = ids[m] of row m, over an adapter bank A [nSlots, r, inDim] starting at element aOffset.
// One workgroup per (m, j): its {{WG}} lanes split inDim, then a fixed-order tree sum (deterministic).
// Rows whose id is not a slot (0xffffffff = no adapter, or out of range) are skipped: their h is
// never read, because lora_expand skips them too.
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;            // [M, inDim]
@group(0) @binding(2) var<storage, read> A: array<f32>;            // bank: [aOffset + nSlots * r * inDim]
@group(0) @binding(3) var<storage, read> ids: array<u32>;          // [M] slot per row
@group(0) @binding(4) var<storage, read_write> h: array<f32>;      // [M, r] scratch

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let cell = wid.x + wid.y * nwg.x;
  if (cell >= p.M * p.r) { return; } // workgroup-uniform: the tree sum below stays in uniform control flow
  let m = cell / p.r;
  let j = cell % p.r;
  let slot = ids[m];
  if (slot >= p.nSlots) { return; }
  let xBase = m * p.inDim;
  let aBase = p.aOffset + (slot * p.r + j) * p.inDim;
  var acc = 0.0;
  for (var i = lid; i < p.inDim; i = i + {{WG}}u) {
    acc = acc + x[xBase + i] * A[aBase + i];
  }
  let total = workgroupSum(acc, lid);
  if (lid == 0u) { h[cell] = total; }
}
