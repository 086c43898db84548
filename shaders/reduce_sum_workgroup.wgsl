// Workgroup sum without subgroups (the fallback): a tree in workgroup memory. {{WG}} is a power
// of two. Spliced into kernels through their REDUCE placeholder; the kernel's entry point takes
// `ids: ReduceIds` so both variants of this snippet can ask for the builtins they need.
struct ReduceIds {
  @builtin(local_invocation_index) lid: u32,
}

var<workgroup> reduce_buf: array<f32, {{WG}}>;

// Every invocation returns the sum of `v` over the workgroup. Contains barriers: call it in
// uniform control flow.
fn workgroupSum(v: f32, ids: ReduceIds) -> f32 {
  reduce_buf[ids.lid] = v;
  workgroupBarrier();
  for (var s = {{WG}}u / 2u; s > 0u; s = s / 2u) {
    if (ids.lid < s) { reduce_buf[ids.lid] = reduce_buf[ids.lid] + reduce_buf[ids.lid + s]; }
    workgroupBarrier();
  }
  let total = reduce_buf[0];
  // A second call must not overwrite reduce_buf[0] before everyone has read it.
  workgroupBarrier();
  return total;
}
