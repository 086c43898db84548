// Quantize f32 weight rows to 'q4' (src/kernels/weights.ts, the spec is quantizeQ4Ref): one
// invocation per scale word, i.e. per pair of groups of 32, so no two invocations share a word.
// WGSL division is not correctly rounded, so both roundings (the f16 scale of max|w|/7 and
// round-half-even of w/scale) take the quotient as a first guess and fix it with exact
// comparisons against the midpoints: every product there has at most 16 significant bits, which
// f32 holds exactly. f16_bits / f16_value come from f16_bits.wgsl.
{{PARAMS}}

const GROUP = 32u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;           // [rows, K] f32
@group(0) @binding(2) var<storage, read_write> data: array<u32>;    // [shard rows, groups*4] nibbles
@group(0) @binding(3) var<storage, read_write> scales: array<u32>;  // [shard rows, ceil(groups/2)] packed f16

/** Correctly rounded f16 bits of a / 7 for a >= 0, ties to even. */
fn scale_bits(a: f32) -> u32 {
  var h = f16_bits(bitcast<u32>(a / 7.0)); // within one f16 step of the answer
  if (h < 0x7bffu && (a > 7.0 * mid(h, h + 1u) || (a == 7.0 * mid(h, h + 1u) && (h & 1u) == 1u))) { h += 1u; }
  else if (h > 0u && (a < 7.0 * mid(h - 1u, h) || (a == 7.0 * mid(h - 1u, h) && (h & 1u) == 1u))) { h -= 1u; }
  return h;
}

/** Midpoint of two neighbouring f16 values (exact in f32). */
fn mid(a: u32, b: u32) -> f32 { return 0.5 * (f16_value(a) + f16_value(b)); }

/** roundHalfEven(v / s) for s > 0, exactly. */
fn round_div(v: f32, s: f32) -> f32 {
  var q = round(v / s);
  let odd = (i32(q) & 1) == 1;
  if (v > (q + 0.5) * s || (v == (q + 0.5) * s && odd)) { q += 1.0; }
  else if (v < (q - 0.5) * s || (v == (q - 0.5) * s && odd)) { q -= 1.0; }
  return q;
}

/** Quantize group g of row `row`; returns its f16 scale bits and writes its 4 data words. */
fn quantize_group(row: u32, g: u32) -> u32 {
  let base = row * p.K + g * GROUP;
  let n = min(GROUP, p.K - g * GROUP); // elements of this group inside K
  var a = 0.0;
  for (var e = 0u; e < n; e++) { a = max(a, abs(src[base + e])); }
  let sb = scale_bits(a);
  let s = f16_value(sb);
  for (var j = 0u; j < 4u; j++) {
    var word = 0u;
    for (var t = 0u; t < 8u; t++) {
      let e = 8u * j + t;
      var q = 7u;
      if (e < n && s > 0.0) { q = u32(clamp(round_div(src[base + e], s) + 7.0, 0.0, 14.0)); }
      word |= q << (4u * t);
    }
    data[(p.dstRow + row) * p.words + g * 4u + j] = word;
  }
  return sb;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (i >= p.rows * p.scaleWords) { return; }
  let row = i / p.scaleWords;
  let g = 2u * (i % p.scaleWords);
  let groups = (p.K + GROUP - 1u) / GROUP;
  var word = quantize_group(row, g);
  if (g + 1u < groups) { word |= quantize_group(row, g + 1u) << 16u; }
  scales[(p.dstRow + row) * p.scaleWords + i % p.scaleWords] = word;
}
