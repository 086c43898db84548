// Paged attention, serial variant (CPU-class devices, src/kernels/plan.ts), for decode and prefill:
// one invocation per (query row, query head), no workgroup memory and no barrier. A query row is a
// sequence's newest token (decode: row s is block-table row s, its length seqLens[s]) or a token of
// the flat prefill list (row t belongs to block-table row tokenSeq[t] at position tokenPos[t], and
// sees keys 0..tokenPos[t]); the QUERY_BINDINGS and QUERY_OF markers say which. The invocation walks
// the positions it sees with an online softmax in registers (running max m, denominator l, the
// output as HD/4 vec4 accumulators rescaled only when the max grows). Needs HD % 4 == 0.
// Key window as in the workgroup kernels: a query at q = len-1 sees [0, sinkEnd) and
// [recentStart, len), walked as n slots; masked positions (and their blocks) are never touched.
// GQA: query head h reads KV head h / (nHeads / nKvHeads). Unlike the tiled prefill kernel, queries
// of one sequence do not share K/V loads: on a CPU-class device they come from cache, and each of
// the tiled kernel's barriers is a fiber switch.
{{PARAMS}}

const HD4: u32 = {{HD4}}u;     // head dim / 4
const BLOCK: u32 = {{BLOCK_SIZE}}u;
const NEG_BIG: f32 = -1.0e30;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4f>;              // [rows, nHeads, HD]
@group(0) @binding(2) var<storage, read> kCache: array<vec4f>;         // [nBlocks, BLOCK, nKvHeads, HD]
@group(0) @binding(3) var<storage, read> vCache: array<vec4f>;         // [nBlocks, BLOCK, nKvHeads, HD]
@group(0) @binding(4) var<storage, read> blockTable: array<u32>;       // [nSeqs, maxBlocksPerSeq]
{{QUERY_BINDINGS}}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let item = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (item >= {{ROWS}} * p.nHeads) { return; }
  let row = item / p.nHeads;
  let head = item % p.nHeads;
  let kvHead = head / (p.nHeads / p.nKvHeads);
  let cap = p.maxBlocksPerSeq * BLOCK; // keys past the table are clamped
  {{QUERY_OF}}
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
  let inv = select(0.0, 1.0 / l, l > 0.0); // len 0: zeros rather than NaN
  for (var i = 0u; i < HD4; i++) { out[qBase + i] = acc[i] * inv; }
}
