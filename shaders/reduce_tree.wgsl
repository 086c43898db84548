// Workgroup reductions through workgroup memory (tree of {{WG}} lanes; {{WG}} is a power of two).
// Spliced in front of the kernels that need them (attention_decode, softmax). Every invocation of
// the workgroup must call them in uniform control flow; each returns the same value everywhere.
// The sum is always this tree, also when subgroups exist: its fixed order keeps results
// bit-reproducible from run to run (sampling and tests depend on that).

var<workgroup> treeScratch: array<f32, {{WG}}>;

fn workgroupSum(v: f32, lid: u32) -> f32 {
  treeScratch[lid] = v;
  workgroupBarrier();
  for (var stride = {{WG}}u / 2u; stride > 0u; stride = stride / 2u) {
    if (lid < stride) { treeScratch[lid] = treeScratch[lid] + treeScratch[lid + stride]; }
    workgroupBarrier();
  }
  let total = treeScratch[0];
  workgroupBarrier(); // everyone has read slot 0 before a later reduction overwrites it
  return total;
}

// Fallback maximum when the device has no subgroups.
fn workgroupMaxTree(v: f32, lid: u32) -> f32 {
  treeScratch[lid] = v;
  workgroupBarrier();
  for (var stride = {{WG}}u / 2u; stride > 0u; stride = stride / 2u) {
    if (lid < stride) { treeScratch[lid] = max(treeScratch[lid], treeScratch[lid + stride]); }
    workgroupBarrier();
  }
  let best = treeScratch[0];
  workgroupBarrier();
  return best;
}
