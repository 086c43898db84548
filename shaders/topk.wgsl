// Top-k of each row, one workgroup per (row, chunk of the row). k rounds; round r selects the
// best pair strictly after the pair of round r-1 in the order "value descending, then index
// ascending", so the output is sorted, ties go to the lowest index, and results are deterministic.
// NaN counts as -inf. Pass 1 reads logits (ids are positions); pass 2 (PAIRS) merges the
// candidates of all chunks of a row. argmax is k = 1.
{{PARAMS}}

const PAIRS: bool = {{PAIRS}};
const NONE: u32 = 0xffffffffu; // "no candidate": sorts after every real pair

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inValues: array<f32>;           // [R, rowLen] logits, or candidate values
@group(0) @binding(2) var<storage, read> inIds: array<u32>;              // [R, rowLen] candidate ids (PAIRS); pass 1 binds the logits again, never read
@group(0) @binding(3) var<storage, read_write> outValues: array<f32>;    // [R, nChunks, k]
@group(0) @binding(4) var<storage, read_write> outIds: array<u32>;       // [R, nChunks, k]

var<workgroup> redV: array<f32, {{WG}}>;
var<workgroup> redI: array<u32, {{WG}}>;

// Whether pair a comes before pair b.
fn before(av: f32, ai: u32, bv: f32, bi: u32) -> bool {
  if (ai == NONE) { return false; }
  if (bi == NONE) { return true; }
  return av > bv || (av == bv && ai < bi);
}

// NaN -> -inf, by bits (a `v != v` test may be optimised away). `| (bits & 0u)` keeps the -inf
// out of constant evaluation, where WGSL does not allow non-finite values.
fn sanitize(v: f32) -> f32 {
  let bits = bitcast<u32>(v);
  return select(v, bitcast<f32>(0xff800000u | (bits & 0u)), (bits & 0x7fffffffu) > 0x7f800000u);
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let lin = wid.x + wid.y * nwg.x;
  // Workgroup-uniform exit: the barriers below stay in uniform control flow.
  if (lin >= p.R * p.nChunks) { return; }
  let row = lin / p.nChunks;
  let start = (lin % p.nChunks) * p.chunk;
  let end = min(start + p.chunk, p.rowLen);
  let rowBase = row * p.rowLen;
  var tv = 0.0;   // the pair selected last round (the threshold)
  var ti = NONE;
  for (var r = 0u; r < p.k; r = r + 1u) {
    var bv = 0.0;
    var bi = NONE;
    for (var j = start + lid; j < end; j = j + {{WG}}u) {
      let v = sanitize(inValues[rowBase + j]);
      var id = j;
      if (PAIRS) { id = inIds[rowBase + j]; }
      let eligible = r == 0u || before(tv, ti, v, id);
      if (eligible && before(v, id, bv, bi)) { bv = v; bi = id; }
    }
    redV[lid] = bv;
    redI[lid] = bi;
    workgroupBarrier();
    for (var s = {{WG}}u / 2u; s > 0u; s = s / 2u) {
      if (lid < s && before(redV[lid + s], redI[lid + s], redV[lid], redI[lid])) {
        redV[lid] = redV[lid + s];
        redI[lid] = redI[lid + s];
      }
      workgroupBarrier();
    }
    tv = redV[0];
    ti = redI[0];
    if (lid == 0u) {
      outValues[lin * p.k + r] = tv;
      outIds[lin * p.k + r] = ti;
    }
    // Nobody may overwrite redV/redI for the next round before all have read the winner.
    workgroupBarrier();
  }
}
