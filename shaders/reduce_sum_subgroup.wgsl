// Workgroup sum, fast path: subgroupAdd, then one partial per subgroup in workgroup memory.
// Uses the subgroup_id / num_subgroups builtins (WGSL language feature 'subgroup_id') because
// nothing guarantees that subgroups are contiguous ranges of local_invocation_index.
struct ReduceIds {
  @builtin(local_invocation_index) lid: u32,
  @builtin(subgroup_invocation_id) lane: u32,
  @builtin(subgroup_id) sg: u32,
  @builtin(num_subgroups) nsg: u32,
}

var<workgroup> reduce_buf: array<f32, {{WG}}>; // one slot per subgroup (at most {{WG}})

// Every invocation returns the sum of `v` over the workgroup. Contains barriers: call it in
// uniform control flow. Partials are added in subgroup order, so the result is deterministic.
fn workgroupSum(v: f32, ids: ReduceIds) -> f32 {
  let s = subgroupAdd(v);
  if (ids.lane == 0u) { reduce_buf[ids.sg] = s; }
  workgroupBarrier();
  var total = 0.0;
  for (var i = 0u; i < ids.nsg; i = i + 1u) { total = total + reduce_buf[i]; }
  workgroupBarrier();
  return total;
}
