
// Log-sum-exp of one row of `logits` by ONE invocation (the serial variant of row_logsumexp.wgsl,
// for CPU-class devices: workgroups of one invocation per row, no barrier): an online (max, sum of
// exp) over every column, rescaled when the max grows. `lid` is 0 (one invocation per workgroup).
fn rowLogSumExp(base: u32, V: u32, lid: u32) -> f32 {
  var m = -1.0e30;
  var l = 0.0;
  for (var c = 0u; c < V; c = c + 1u) {
    let z = logits[base + c];
    if (z > m) {
      l = l * exp(m - z) + 1.0;
      m = z;
    } else {
      l = l + exp(z - m);
    }
  }
  return m + log(l);
}
