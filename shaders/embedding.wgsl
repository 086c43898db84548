// Embedding gather from one row shard of the table: out[t, :] = table[tokens[t], :] for the tokens
// whose id lies in this shard's rows [rowStart, rowStart + rows). The shard with ownsOutOfRange = 1
// (the last one) also writes zeros for ids >= vocab, so a bad id never reads out of bounds.
// The table is a Linear weight in any storage format (src/kernels/weights.ts): with tied
// embeddings it is also the LM head.
{{PARAMS}}

const FORMAT: u32 = {{FORMAT}}u; // 0 = f32, 1 = packed f16, 2 = q4

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;      // [T]
@group(0) @binding(2) var<storage, read> table: array<u32>;       // [rows, rowWords] (f32 bits for 'f32')
@group(0) @binding(3) var<storage, read> scales: array<u32>;      // [rows, scaleWords] packed f16, q4 only; other formats bind the table again (never read)
@group(0) @binding(4) var<storage, read_write> out: array<f32>;   // [T, hidden]

fn loadElem(r: u32, k: u32) -> f32 {
  let row = r * p.rowWords;
  if (FORMAT == 0u) { return bitcast<f32>(table[row + k]); }
  if (FORMAT == 1u) { return unpack2x16float(table[row + k / 2u])[k & 1u]; }
  let g = k / 32u;
  let e = k % 32u;
  let q = (table[row + g * 4u + e / 8u] >> ((e & 7u) * 4u)) & 0xfu;
  let s = unpack2x16float(scales[r * p.scaleWords + g / 2u])[g & 1u];
  return (f32(q) - 7.0) * s;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (i >= p.T * p.hidden) { return; }
  let t = i / p.hidden;
  let k = i % p.hidden;
  let id = tokens[t];
  if (id < p.rowStart) { return; }
  let r = id - p.rowStart;
  if (r < p.rows) {
    out[i] = loadElem(r, k);
  } else if (p.ownsOutOfRange == 1u && id >= p.vocab) {
    out[i] = 0.0;
  }
}
