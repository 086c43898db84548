// Raw 16-bit floats from a checkpoint (F16 or BF16, two per u32 word, element 2i in the low half,
// as safetensors stores them little-endian) -> f32 bit patterns, exactly: pure integer arithmetic,
// so f16 subnormals, infinities and NaN payloads survive (no float op may flush or canonicalise
// them). The destination is declared u32 for the same reason; consumers bind it as f32.
// Each invocation converts PER elements strided by the workgroup size (neighbours touch
// neighbouring words; SwiftShader pays its per-invocation overhead once per PER elements).
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;        // [ceil(n / 2)] packed halves
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;  // [n] f32 bits

/** f32 bits of the IEEE half with bits h (exact; subnormals normalised, inf/NaN kept). */
fn f16_to_f32_bits(h: u32) -> u32 {
  let sign = (h & 0x8000u) << 16u;
  let exp = (h >> 10u) & 0x1fu;
  let mant = h & 0x3ffu;
  if (exp == 0x1fu) { return sign | 0x7f800000u | (mant << 13u); } // inf / NaN (payload kept)
  if (exp != 0u) { return sign | ((exp + 112u) << 23u) | (mant << 13u); } // rebias 15 -> 127
  if (mant == 0u) { return sign; } // signed zero
  // Subnormal: value mant * 2^-24. Shift the leading 1 up to bit 10 (the implicit bit).
  let shift = countLeadingZeros(mant) - 21u; // mant < 2^10: 22..31 leading zeros -> 1..10
  return sign | ((113u - shift) << 23u) | (((mant << shift) & 0x3ffu) << 13u);
}

fn convert(h: u32) -> u32 {
  return {{CONVERT}};
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let base = (wid.x + wid.y * nwg.x) * ({{PER}}u * {{WG}}u) + lid;
  for (var j = 0u; j < {{PER}}u; j++) {
    let i = base + j * {{WG}}u;
    if (i >= p.n) { return; } // i grows with j: nothing further is in range either
    let h = (src[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu;
    dst[i] = convert(h);
  }
}
