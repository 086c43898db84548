// Sample one token per row from its top-k candidates (sorted descending, from topk.wgsl), with
// per-row settings: temperature (<= 0: greedy), top-k (0: all k), top-p, min-p, and a uniform
// random number in [0, 1). Filters follow HF's order: top-k, then top-p (the smallest prefix whose
// probability mass is >= top_p, at least one token), then min-p (keep p >= min_p * p_max; as that
// test does not depend on normalisation it is a prefix cut too). One invocation per row: k is small.
{{PARAMS}}

struct RowSettings {
  temperature: f32,
  topP: f32,
  minP: f32,
  topK: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> candValues: array<f32>;      // [R, k] sorted descending
@group(0) @binding(2) var<storage, read> candIds: array<u32>;         // [R, k]
@group(0) @binding(3) var<storage, read> settings: array<RowSettings>; // [R]
@group(0) @binding(4) var<storage, read> random: array<f32>;          // [R] uniform in [0, 1)
@group(0) @binding(5) var<storage, read_write> ids: array<u32>;       // [R] chosen token ids

// exp((v - vmax) / T): the softmax numerator with the max subtracted (never overflows).
fn weight(base: u32, j: u32, vmax: f32, invT: f32) -> f32 {
  return exp((candValues[base + j] - vmax) * invT);
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (row >= p.R) { return; }
  let base = row * p.k;
  let st = settings[row];
  let vmax = candValues[base];
  // Greedy: temperature 0, or a row whose best logit is -inf or NaN (nothing to normalise).
  if (!(st.temperature > 0.0) || !(vmax > -3.4028234663852886e38)) {
    ids[row] = candIds[base];
    return;
  }
  let invT = 1.0 / st.temperature;
  var n = p.k;
  if (st.topK > 0u && st.topK < n) { n = st.topK; }
  var total = 0.0;
  for (var j = 0u; j < n; j = j + 1u) { total = total + weight(base, j, vmax, invT); }
  var keep = n;
  if (st.topP < 1.0) {
    var cum = 0.0;
    for (var j = 0u; j < n; j = j + 1u) {
      cum = cum + weight(base, j, vmax, invT);
      if (cum >= st.topP * total) { keep = j + 1u; break; }
    }
  }
  if (st.minP > 0.0) {
    // p_j / p_max = weight_j because weight_0 = 1.
    var m = 1u;
    while (m < keep && weight(base, m, vmax, invT) >= st.minP) { m = m + 1u; }
    keep = m;
  }
  var kept = 0.0;
  for (var j = 0u; j < keep; j = j + 1u) { kept = kept + weight(base, j, vmax, invT); }
  let goal = random[row] * kept;
  // If rounding leaves goal >= the last cumulative sum: the last candidate of nonzero weight (a
  // masked token, -inf, has weight 0 and is never chosen).
  var choice = 0u;
  var cum = 0.0;
  for (var j = 0u; j < keep; j = j + 1u) {
    let w = weight(base, j, vmax, invT);
    if (w > 0.0) { choice = j; }
    cum = cum + w;
    if (goal < cum) { break; }
  }
  ids[row] = candIds[base + choice];
}
