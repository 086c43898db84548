// GEMV reduction without subgroups: partial sums go through workgroup memory, one barrier, then
// invocation i adds up outputs i, i + WG, ... serially (WG is small, so one pass beats a tree of
// barriers).
var<workgroup> partial: array<f32, M * ROWS * WG>; // [ROWS * M, WG] per-invocation partial sums

fn stage(o: u32, v: f32, lid: u32) {
  partial[o * WG + lid] = v;
}

fn finish(lid: u32, row0: u32) {
  workgroupBarrier();
  for (var o = lid; o < M * ROWS; o += WG) {
    var s = 0.0;
    for (var i = 0u; i < WG; i++) { s += partial[o * WG + i]; }
    store(o, row0, s);
  }
}
