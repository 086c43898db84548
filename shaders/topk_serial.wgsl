// Top-k, serial variant (CPU-class devices, src/kernels/plan.ts): one invocation per (row, chunk
// of the row), no workgroup memory and no barrier. The same k rounds as topk.wgsl: round r selects
// the best pair strictly after round r-1's in the order "value descending, then index ascending",
// so the output is sorted, ties go to the lowest index, and results equal the workgroup variant's.
// NaN counts as -inf. Pass 1 reads logits (ids are positions); pass 2 (PAIRS) merges the
// candidates of all chunks of a row.
{{PARAMS}}

const PAIRS: bool = {{PAIRS}};
const NONE: u32 = 0xffffffffu; // "no candidate": sorts after every real pair

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inValues: array<f32>;           // [R, rowLen] logits, or candidate values
@group(0) @binding(2) var<storage, read> inIds: array<u32>;              // [R, rowLen] candidate ids (PAIRS); pass 1 binds the logits again, never read
@group(0) @binding(3) var<storage, read_write> outValues: array<f32>;    // [R, nChunks, k]
@group(0) @binding(4) var<storage, read_write> outIds: array<u32>;       // [R, nChunks, k]

fn before(av: f32, ai: u32, bv: f32, bi: u32) -> bool {
  if (ai == NONE) { return false; }
  if (bi == NONE) { return true; }
  return av > bv || (av == bv && ai < bi);
}

fn sanitize(v: f32) -> f32 {
  let bits = bitcast<u32>(v);
  return select(v, bitcast<f32>(0xff800000u | (bits & 0u)), (bits & 0x7fffffffu) > 0x7f800000u);
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let lin = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (lin >= p.R * p.nChunks) { return; }
  let row = lin / p.nChunks;
  let start = (lin % p.nChunks) * p.chunk;
  let end = min(start + p.chunk, p.rowLen);
  let rowBase = row * p.rowLen;
  var tv = 0.0;
  var ti = NONE;
  for (var r = 0u; r < p.k; r = r + 1u) {
    var bv = 0.0;
    var bi = NONE;
    for (var j = start; j < end; j = j + 1u) {
      let v = sanitize(inValues[rowBase + j]);
      var id = j;
      if (PAIRS) { id = inIds[rowBase + j]; }
      let eligible = r == 0u || before(tv, ti, v, id);
      if (eligible && before(v, id, bv, bi)) { bv = v; bi = id; }
    }
    tv = bv;
    ti = bi;
    outValues[lin * p.k + r] = tv;
    outIds[lin * p.k + r] = ti;
  }
}
