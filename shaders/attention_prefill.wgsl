// Paged causal attention, prefill chunks (design notes in src/kernels/attention.ts).
// One workgroup per (tile of QT consecutive query tokens, query head). The tile is cut into
// segments: maximal runs of tokens of the same sequence (usually one, two where a sequence's chunk
// ends and the next begins). A query at position q sees key p iff p <= q and (p < sinks or
// q - p < window), keyWindow[seq] = (sinks, window) (unbounded without the binding). For each
// segment, the keys its queries can see are streamed in tiles of KT positions through workgroup
// memory, so all QT queries share every K/V load: the sinks [0, sinkEnd), then
// [recentStart, maxPos] where recentStart is the earliest position any query's window reaches.
// The gap between the two is never visited, a tile no query sees is skipped, and in a visited
// tile a position no query sees is not loaded (its block may be freed: NO_BLOCK in the table):
//   0. keyLive[kj]: does some query of the segment see position k0 + kj;
//   1. load K and V rows of the live positions (through the block table);
//   2. scores S[qi, kj] = q·k * scale, masked where the query does not see the key or is not in
//      the segment;
//   3. one invocation per query row: online softmax update (running max m, sum l, rescale alpha),
//      S becomes the probabilities P;
//   4. each invocation owns ACC output elements of [QT, HD]: acc = acc * alpha + P · V.
// Every query sees itself (window >= 1), so its denominator ends > 0; masked scores are NEG_BIG
// (finite) and give probability exactly 0, so a fully masked tile leaves a row's state unchanged.
{{PARAMS}}

const HD: u32 = {{HEAD_DIM}}u;
const WG: u32 = {{WG}}u;
const QT: u32 = {{QUERY_TILE}}u;
const KT: u32 = {{KEY_TILE}}u;
const ACC: u32 = {{ACC_PER_THREAD}}u; // ceil(QT * HD / WG)
const BLOCK: u32 = {{BLOCK_SIZE}}u;
const NEG_BIG: f32 = -1.0e30;         // masked score; exp(NEG_BIG - m) == 0
const MASKED: f32 = -0.5e30;          // scores below this are masked, never real

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;                // [T, nHeads, HD]
@group(0) @binding(2) var<storage, read> kCache: array<f32>;           // [nBlocks, BLOCK, nKvHeads, HD]
@group(0) @binding(3) var<storage, read> vCache: array<f32>;           // [nBlocks, BLOCK, nKvHeads, HD]
@group(0) @binding(4) var<storage, read> blockTable: array<u32>;       // [nSeqs, maxBlocksPerSeq]
@group(0) @binding(5) var<storage, read> tokenSeq: array<u32>;         // [T] block-table row per token
@group(0) @binding(6) var<storage, read> tokenPos: array<u32>;         // [T] position per token
@group(0) @binding(7) var<storage, read_write> out: array<f32>;        // [T, nHeads, HD]
@group(0) @binding(8) var<storage, read> keyWindow: array<vec2u>;      // [nSeqs] (sinks, window); bound only in the windowed variant

var<workgroup> qTile: array<f32, QT * HD>;
var<workgroup> kTile: array<f32, KT * HD>;
var<workgroup> vTile: array<f32, KT * HD>;
var<workgroup> sTile: array<f32, QT * KT>;  // scores, then probabilities
var<workgroup> rowM: array<f32, QT>;        // running max per query
var<workgroup> rowL: array<f32, QT>;        // running denominator per query
var<workgroup> rowAlpha: array<f32, QT>;    // rescale of this key tile per query
var<workgroup> keyLive: array<u32, KT>;     // 1 where some query of the segment sees the tile's key

// Does a query at position qp see key position pos? (wnd >= 1; qp - pos cannot wrap when pos <= qp)
fn keyVisible(pos: u32, qp: u32, sinks: u32, wnd: u32) -> bool {
  return pos <= qp && (pos < sinks || qp - pos < wnd);
}

// First key position a query at qp sees through its window (the sinks aside).
fn windowStart(qp: u32, wnd: u32) -> u32 {
  return select(0u, qp + 1u - wnd, qp + 1u > wnd);
}

// Does some query of tokens [segStart, segEnd) see a key in [k0, kEnd)? Uniform (read-only
// storage at uniform indices), so a tile it rejects is skipped by the whole workgroup.
fn tileSeen(segStart: u32, segEnd: u32, k0: u32, kEnd: u32, sinks: u32, wnd: u32) -> bool {
  for (var t = segStart; t < segEnd; t = t + 1u) {
    let qp = tokenPos[t];
    let hi = min(kEnd, qp + 1u); // keys past the query are never seen
    if (k0 < min(sinks, hi) || max(k0, windowStart(qp, wnd)) < hi) { return true; }
  }
  return false;
}

// Is query row qi of the tile (token t) part of the segment [segStart, segEnd)?
fn inSegment(t: u32, segStart: u32, segEnd: u32) -> bool {
  return t >= segStart && t < segEnd;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let item = wid.x + wid.y * nwg.x;
  let nTiles = (p.T + QT - 1u) / QT;
  if (item >= nTiles * p.nHeads) { return; } // uniform: the whole workgroup leaves
  // Heads of one token tile are neighbours in the grid: GQA heads that share a KV head run close
  // together and find its K/V in cache.
  let tile = item / p.nHeads;
  let head = item % p.nHeads;
  let kvHead = head / (p.nHeads / p.nKvHeads);
  let t0 = tile * QT;
  let tEnd = min(t0 + QT, p.T);

  for (var e = lid; e < QT * HD; e = e + WG) {
    let t = t0 + e / HD;
    var value = 0.0;
    if (t < tEnd) { value = q[(t * p.nHeads + head) * HD + e % HD]; }
    qTile[e] = value;
  }
  for (var r = lid; r < QT; r = r + WG) {
    rowM[r] = NEG_BIG;
    rowL[r] = 0.0;
  }
  var acc: array<f32, ACC>;

  var segStart = t0;
  while (segStart < tEnd) {
    let seq = tokenSeq[segStart];
    let win = {{WINDOW_OF}};
    let sinks = win.x;
    let wnd = max(win.y, 1u); // the query always sees itself
    var segEnd = segStart + 1u;
    var maxPos = tokenPos[segStart];
    var minStart = windowStart(maxPos, wnd);
    while (segEnd < tEnd && tokenSeq[segEnd] == seq) {
      maxPos = max(maxPos, tokenPos[segEnd]);
      minStart = min(minStart, windowStart(tokenPos[segEnd], wnd));
      segEnd = segEnd + 1u;
    }
    let nKeys = min(maxPos + 1u, p.maxBlocksPerSeq * BLOCK); // never past the table's capacity
    let sinkEnd = min(sinks, nKeys);
    let recentStart = max(minStart, sinkEnd);
    // Runs [0, sinkEnd) and [recentStart, nKeys); one run when they touch. A tile never spans the gap.
    let gap = sinkEnd < recentStart;

    var next = 0u;
    loop {
      if (gap && next >= sinkEnd && next < recentStart) { next = recentStart; }
      if (next >= nKeys) { break; }
      let k0 = next;
      let kEnd = min(k0 + KT, select(nKeys, sinkEnd, gap && k0 < sinkEnd));
      next = kEnd;
      if (!tileSeen(segStart, segEnd, k0, kEnd, sinks, wnd)) { continue; }

      // keyLive is last read by the previous tile's load, which every invocation finished before
      // that tile's score barrier: safe to rewrite before this tile's first barrier.
      for (var kj = lid; kj < KT; kj = kj + WG) {
        let pos = k0 + kj;
        var live = 0u;
        if (pos < kEnd) {
          for (var t = segStart; t < segEnd; t = t + 1u) {
            if (keyVisible(pos, tokenPos[t], sinks, wnd)) { live = 1u; break; }
          }
        }
        keyLive[kj] = live;
      }
      workgroupBarrier(); // previous users of kTile/vTile/sTile (and the q/row init) are done; keyLive is written
      for (var e = lid; e < KT * HD; e = e + WG) {
        let pos = k0 + e / HD;
        var kv = vec2f(0.0);
        if (keyLive[e / HD] != 0u) {
          let block = blockTable[seq * p.maxBlocksPerSeq + pos / BLOCK];
          let src = ((block * BLOCK + pos % BLOCK) * p.nKvHeads + kvHead) * HD + e % HD;
          kv = vec2f(kCache[src], vCache[src]);
        }
        kTile[e] = kv.x;
        vTile[e] = kv.y;
      }
      workgroupBarrier();

      for (var e = lid; e < QT * KT; e = e + WG) {
        let qi = e / KT;
        let kj = e % KT;
        let t = t0 + qi;
        let pos = k0 + kj;
        var s = NEG_BIG;
        if (inSegment(t, segStart, segEnd) && pos < kEnd && keyVisible(pos, tokenPos[t], sinks, wnd)) {
          var dot = 0.0;
          for (var d = 0u; d < HD; d = d + 1u) { dot = dot + qTile[qi * HD + d] * kTile[kj * HD + d]; }
          s = dot * p.scale;
        }
        sTile[e] = s;
      }
      workgroupBarrier();

      for (var qi = lid; qi < QT; qi = qi + WG) {
        var alpha = 1.0;
        if (inSegment(t0 + qi, segStart, segEnd)) {
          var tileMax = NEG_BIG;
          for (var j = 0u; j < KT; j = j + 1u) { tileMax = max(tileMax, sTile[qi * KT + j]); }
          let mOld = rowM[qi];
          let mNew = max(mOld, tileMax);
          alpha = exp(mOld - mNew);
          var sum = 0.0;
          for (var j = 0u; j < KT; j = j + 1u) {
            let s = sTile[qi * KT + j];
            var prob = 0.0;
            if (s > MASKED) { prob = exp(s - mNew); }
            sTile[qi * KT + j] = prob;
            sum = sum + prob;
          }
          rowM[qi] = mNew;
          rowL[qi] = rowL[qi] * alpha + sum;
        } else {
          for (var j = 0u; j < KT; j = j + 1u) { sTile[qi * KT + j] = 0.0; }
        }
        rowAlpha[qi] = alpha;
      }
      workgroupBarrier();

      for (var i = 0u; i < ACC; i = i + 1u) {
        let e = lid + i * WG;
        if (e < QT * HD) {
          let qi = e / HD;
          let d = e % HD;
          var a = acc[i] * rowAlpha[qi];
          for (var j = 0u; j < KT; j = j + 1u) { a = a + sTile[qi * KT + j] * vTile[j * HD + d]; }
          acc[i] = a;
        }
      }
    }
    segStart = segEnd;
  }

  workgroupBarrier(); // rowL is final
  for (var i = 0u; i < ACC; i = i + 1u) {
    let e = lid + i * WG;
    let t = t0 + e / HD;
    if (e < QT * HD && t < tEnd) {
      let l = rowL[e / HD];
      out[(t * p.nHeads + head) * HD + e % HD] = select(0.0, acc[i] / l, l > 0.0);
    }
  }
}
