
// Log-sum-exp of one row of `logits` (a module-scope array<f32> of the including shader), computed
// by the whole workgroup: each invocation keeps an online (max, sum of exp) over strided columns,
// then a workgroup max ({{MAX_FN}}) and the tree sum of the partials rescaled to it. Every
// invocation of the workgroup must call it (it holds barriers). Shared by logprobs.wgsl,
// token_logprobs.wgsl and token_logprobs_bwd.wgsl.
fn rowLogSumExp(base: u32, V: u32, lid: u32) -> f32 {
  var m = -1.0e30;
  var l = 0.0;
  for (var c = lid; c < V; c = c + {{WG}}u) {
    let z = logits[base + c];
    if (z > m) {
      l = l * exp(m - z) + 1.0;
      m = z;
    } else {
      l = l + exp(z - m);
    }
  }
  let rowMax = {{MAX_FN}}(m, lid);
  return rowMax + log(workgroupSum(l * exp(m - rowMax), lid));
}
