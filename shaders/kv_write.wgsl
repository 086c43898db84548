// KV-cache write: copies the K and V rows of T new tokens into the paged cache.
// One invocation per element of [T, nKvHeads * HEAD_DIM]; the destination row is found through
// the token's sequence block table: block = blockTable[seq, pos / BLOCK], slot = pos % BLOCK.
// Token sequences and positions come from storage so the same dispatch serves every iteration.
{{PARAMS}}

const BLOCK: u32 = {{BLOCK_SIZE}}u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> k: array<f32>;             // [T, nKvHeads, headDim]
@group(0) @binding(2) var<storage, read> v: array<f32>;             // [T, nKvHeads, headDim]
@group(0) @binding(3) var<storage, read> tokenSeq: array<u32>;      // [T]
@group(0) @binding(4) var<storage, read> tokenPos: array<u32>;      // [T]
@group(0) @binding(5) var<storage, read> blockTable: array<u32>;    // [nSeqs, maxBlocksPerSeq]
@group(0) @binding(6) var<storage, read_write> kCache: array<f32>;  // [nBlocks, BLOCK, nKvHeads, headDim]
@group(0) @binding(7) var<storage, read_write> vCache: array<f32>;  // [nBlocks, BLOCK, nKvHeads, headDim]

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  let rowLen = p.nKvHeads * p.headDim;
  if (i >= p.T * rowLen) { return; }
  let t = i / rowLen;
  let within = i % rowLen; // kvHead * headDim + d: the cache row of one slot has the same layout
  let pos = tokenPos[t];
  let block = blockTable[tokenSeq[t] * p.maxBlocksPerSeq + pos / BLOCK];
  let dst = (block * BLOCK + pos % BLOCK) * rowLen + within;
  kCache[dst] = k[i];
  vCache[dst] = v[i];
}
