enable subgroups;

// Workgroup maximum, subgroup fast path: 2 barriers instead of log2({{WG}}) for the tree.
// WGSL promises nothing about how subgroups map onto local_invocation_index, so each subgroup's
// elected lane appends its maximum to a list (slot from an atomic counter) instead of writing
// at lid / subgroup_size. Max is exact in any order, so the result does not depend on the order
// of the appends. The counter is never reset: `maxSlotsBase` (same in every invocation) remembers
// where this call's entries start. A call appends at most {{WG}} entries and the previous call's
// readers are past the closing barrier, so slot index modulo {{WG}} never collides.

var<workgroup> maxSlots: array<f32, {{WG}}>;
var<workgroup> maxSlotCount: atomic<u32>;
var<private> maxSlotsBase: u32;

fn workgroupMaxSubgroups(v: f32, lid: u32) -> f32 {
  let mine = subgroupMax(v);
  if (subgroupElect()) {
    maxSlots[atomicAdd(&maxSlotCount, 1u) % {{WG}}u] = mine;
  }
  workgroupBarrier();
  let end = atomicLoad(&maxSlotCount);
  var best = maxSlots[maxSlotsBase % {{WG}}u];
  for (var i = maxSlotsBase + 1u; i < end; i = i + 1u) { best = max(best, maxSlots[i % {{WG}}u]); }
  maxSlotsBase = end;
  workgroupBarrier(); // everyone has read the count and slots before the next call appends
  return best;
}
