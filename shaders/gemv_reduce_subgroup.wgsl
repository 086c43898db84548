// GEMV reduction with subgroups: the workgroup is no larger than the device's smallest subgroup,
// so subgroupAdd sums over the whole workgroup and no barrier or workgroup memory is needed.
var<private> sums: array<f32, M * ROWS>; // [ROWS, M] totals of this workgroup

fn stage(o: u32, v: f32, lid: u32) {
  sums[o] = subgroupAdd(v);
}

fn finish(lid: u32, row0: u32) {
  for (var o = lid; o < M * ROWS; o += WG) { store(o, row0, sums[o]); }
}
