// Convert f32 weight rows to the packed 'f16' layout (src/kernels/weights.ts): one invocation per
// output word, element 2j in the low half, 2j+1 in the high half, 0 past K. The source is read as
// raw bits so no float path can flush or round it. f16_bits comes from f16_bits.wgsl.
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;        // [rows, K] f32 bits
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;  // [shard rows, words] packed f16

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (i >= p.rows * p.words) { return; }
  let row = i / p.words;
  let k = 2u * (i % p.words);
  let lo = f16_bits(src[row * p.K + k]);
  let hi = select(0u, f16_bits(src[row * p.K + k + 1u]), k + 1u < p.K);
  dst[p.dstRow * p.words + i] = lo | (hi << 16u);
}
