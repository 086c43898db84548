// Paged causal attention, prefill chunks, serial variant (CPU-class devices, src/kernels/plan.ts):
// one invocation per (query token, query head), no workgroup memory and no barrier. Token t of the
// flat list belongs to block-table row tokenSeq[t] and sits at position q = tokenPos[t]; it walks
// the positions it sees with an online softmax in registers (running max m, denominator l, the
// output as HD/4 vec4 accumulators rescaled only when the max grows), exactly as the serial decode
// kernel does for its one query per sequence. Key window as in attention_prefill.wgsl: the query
// sees [0, sinkEnd) and [recentStart, q], walked as n slots; masked positions (and their blocks)
// are never touched. Needs HD % 4 == 0. GQA: query head h reads KV head h / (nHeads / nKvHeads).
// Unlike the tiled kernel, queries of one sequence do not share K/V loads: on a CPU-class device
// the loads come from cache, and each of the tiled kernel's barriers is a fiber switch.
{{PARAMS}}

const HD4: u32 = {{HD4}}u;     // head dim / 4
const BLOCK: u32 = {{BLOCK_SIZE}}u;
const NEG_BIG: f32 = -1.0e30;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4f>;              // [T, nHeads, HD]
@group(0) @binding(2) var<storage, read> kCache: array<vec4f>;         // [nBlocks, BLOCK, nKvHeads, HD]
@group(0) @binding(3) var<storage, read> vCache: array<vec4f>;         // [nBlocks, BLOCK, nKvHeads, HD]
@group(0) @binding(4) var<storage, read> blockTable: array<u32>;       // [nSeqs, maxBlocksPerSeq]
@group(0) @binding(5) var<storage, read> tokenSeq: array<u32>;         // [T] block-table row of each token
@group(0) @binding(6) var<storage, read> tokenPos: array<u32>;         // [T] position of each token
@group(0) @binding(7) var<storage, read_write> out: array<vec4f>;      // [T, nHeads, HD]
@group(0) @binding(8) var<storage, read> keyWindow: array<vec2u>;      // [nSeqs] (sinks, window); bound only in the windowed variant

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let item = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (item >= p.T * p.nHeads) { return; }
  let t = item / p.nHeads;
  let head = item % p.nHeads;
  let kvHead = head / (p.nHeads / p.nKvHeads);
  let seq = tokenSeq[t];
  let len = min(tokenPos[t] + 1u, p.maxBlocksPerSeq * BLOCK); // keys 0..q, clamped to the table
  let win = {{WINDOW_OF}};
  let wnd = max(win.y, 1u); // the query always sees itself
  let sinkEnd = min(win.x, len);
  let recentStart = max(select(0u, len - wnd, len > wnd), sinkEnd);
  let n = sinkEnd + (len - recentStart);
  let qBase = item * HD4;
  var qv: array<vec4f, HD4>;
  var acc: array<vec4f, HD4>;
  for (var i = 0u; i < HD4; i++) { qv[i] = q[qBase + i]; }
  var m = NEG_BIG;
  var l = 0.0;
  for (var slot = 0u; slot < n; slot++) {
    let pos = select(recentStart + (slot - sinkEnd), slot, slot < sinkEnd);
    let block = blockTable[seq * p.maxBlocksPerSeq + pos / BLOCK];
    let base = ((block * BLOCK + pos % BLOCK) * p.nKvHeads + kvHead) * HD4;
    var d4 = vec4f(0.0);
    for (var i = 0u; i < HD4; i++) { d4 += qv[i] * kCache[base + i]; }
    let s = (d4.x + d4.y + d4.z + d4.w) * p.scale;
    if (s > m) {
      let alpha = exp(m - s);
      l *= alpha;
      for (var i = 0u; i < HD4; i++) { acc[i] *= alpha; }
      m = s;
    }
    let e = exp(s - m);
    l += e;
    for (var i = 0u; i < HD4; i++) { acc[i] += e * vCache[base + i]; }
  }
  let inv = select(0.0, 1.0 / l, l > 0.0);
  for (var i = 0u; i < HD4; i++) { out[qBase + i] = acc[i] * inv; }
}
