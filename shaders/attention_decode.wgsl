// Paged attention, decode: one query per sequence (its newest token), many sequences per dispatch.
// One workgroup per (sequence, query head). The query at position q = len-1 sees key positions
// p <= q with p < sinks OR q - p < window (keyWindow[seq] = (sinks, window), window >= 1; without
// the binding every sequence is unbounded). Those are two runs, [0, sinkEnd) and
// [recentStart, len), walked as one list of n = sinkEnd + len - recentStart "slots", so a long
// sequence with a small window costs ~sinks + window and no masked position's block is ever read.
// The slots are walked in tiles of WG, one slot per invocation, with an online (streaming)
// softmax, so the context length is bounded by nothing but the block table:
//   1. invocation i scores slot t0+i: q·k * scale (K row found through the block table);
//   2. tile max over the workgroup -> new running max m'; old state rescaled by exp(m - m');
//   3. p_i = exp(s_i - m') goes to workgroup memory; each invocation then owns DPT output dims
//      and adds sum_i p_i * v_i[d] for the tile (V reads are coalesced across invocations);
//   4. each invocation keeps its own partial denominator; one workgroup sum at the end.
// GQA: query head h reads KV head h / (nHeads / nKvHeads).
{{PARAMS}}

const HD: u32 = {{HEAD_DIM}}u;
const WG: u32 = {{WG}}u;
const DPT: u32 = {{DIMS_PER_THREAD}}u; // ceil(HD / WG) output dims per invocation
const BLOCK: u32 = {{BLOCK_SIZE}}u;
const NEG_BIG: f32 = -1.0e30; // "minus infinity" that stays finite in exp(a - b)

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;                // [nSeqs, nHeads, HD]
@group(0) @binding(2) var<storage, read> kCache: array<f32>;           // [nBlocks, BLOCK, nKvHeads, HD]
@group(0) @binding(3) var<storage, read> vCache: array<f32>;           // [nBlocks, BLOCK, nKvHeads, HD]
@group(0) @binding(4) var<storage, read> blockTable: array<u32>;       // [nSeqs, maxBlocksPerSeq]
@group(0) @binding(5) var<storage, read> seqLens: array<u32>;          // [nSeqs], current token included
@group(0) @binding(6) var<storage, read_write> out: array<f32>;        // [nSeqs, nHeads, HD]
@group(0) @binding(7) var<storage, read> keyWindow: array<vec2u>;      // [nSeqs] (sinks, window); bound only in the windowed variant

var<workgroup> qShared: array<f32, HD>;
var<workgroup> probs: array<f32, WG>;     // p_i of the current tile
var<workgroup> rowBase: array<u32, WG>;   // cache offset of each tile position's K/V row

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let item = wid.x + wid.y * nwg.x;
  if (item >= p.nSeqs * p.nHeads) { return; } // uniform: the whole workgroup leaves
  let seq = item / p.nHeads;
  let head = item % p.nHeads;
  let kvHead = head / (p.nHeads / p.nKvHeads);
  // Positions past the table's capacity have no block: never read them.
  let len = min(seqLens[seq], p.maxBlocksPerSeq * BLOCK);
  let win = {{WINDOW_OF}};
  let wnd = max(win.y, 1u); // the query always sees itself
  let sinkEnd = min(win.x, len);
  let recentStart = max(select(0u, len - wnd, len > wnd), sinkEnd);
  let n = sinkEnd + (len - recentStart); // visible positions: slot i < sinkEnd is position i, then recentStart..len-1
  let qBase = (seq * p.nHeads + head) * HD;
  for (var d = lid; d < HD; d = d + WG) { qShared[d] = q[qBase + d]; }
  workgroupBarrier();

  var m = NEG_BIG;     // running max (same in every invocation)
  var lPart = 0.0;     // this invocation's share of the denominator, scaled to m
  var acc: array<f32, DPT>;
  for (var t0 = 0u; t0 < n; t0 = t0 + WG) {
    let slot = t0 + lid;
    var s = NEG_BIG;
    if (slot < n) {
      let pos = select(recentStart + (slot - sinkEnd), slot, slot < sinkEnd);
      let block = blockTable[seq * p.maxBlocksPerSeq + pos / BLOCK];
      let base = ((block * BLOCK + pos % BLOCK) * p.nKvHeads + kvHead) * HD;
      rowBase[lid] = base;
      var dot = 0.0;
      for (var d = 0u; d < HD; d = d + 1u) { dot = dot + qShared[d] * kCache[base + d]; }
      s = dot * p.scale;
    }
    let mNew = max(m, {{MAX_FN}}(s, lid));
    let alpha = exp(m - mNew);
    var prob = 0.0;
    if (slot < n) { prob = exp(s - mNew); }
    probs[lid] = prob;
    lPart = lPart * alpha + prob;
    m = mNew;
    workgroupBarrier();

    let tileN = min(WG, n - t0);
    for (var i = 0u; i < DPT; i = i + 1u) {
      let d = lid + i * WG;
      if (d < HD) {
        var a = acc[i] * alpha;
        for (var j = 0u; j < tileN; j = j + 1u) { a = a + probs[j] * vCache[rowBase[j] + d]; }
        acc[i] = a;
      }
    }
    workgroupBarrier(); // the next tile overwrites probs and rowBase
  }

  let l = workgroupSum(lPart, lid);
  let inv = select(0.0, 1.0 / l, l > 0.0); // len 0: output zeros rather than NaN
  for (var i = 0u; i < DPT; i = i + 1u) {
    let d = lid + i * WG;
    if (d < HD) { out[qBase + d] = acc[i] * inv; }
  }
}
