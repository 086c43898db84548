// AdamW update as torch.optim.AdamW (single-tensor path, amsgrad off), one invocation per element,
// after the gradient is clipped by the global norm (torch.nn.utils.clip_grad_norm_):
//   g = grad * coef
//   p = p * (1 - lr * wd)                                   decoupled weight decay, first
//   m = m + (1 - beta1) * (g - m)                           torch: exp_avg.lerp_(grad, 1 - beta1)
//   v = beta2 * v + (1 - beta2) * g * g
//   p = p - (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)    bc_k = 1 - beta_k^t
// 1 - beta comes from the host (computed in f64: f32(1 - 0.999) is closer than 1 - f32(0.999)).
// When the norm pass marked the step skipped, p, m and v are left as they are. Either way the
// gradient is consumed (zeroed when p.zeroGrads is 1) so the next accumulation starts from zero.
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> params: array<f32>;     // [n]
@group(0) @binding(2) var<storage, read_write> grads: array<f32>;      // [n]
@group(0) @binding(3) var<storage, read_write> m: array<f32>;          // [n] first moment
@group(0) @binding(4) var<storage, read_write> v: array<f32>;          // [n] second moment
@group(0) @binding(5) var<storage, read> stats: array<f32>;            // [4] from adamw_norm_final
@group(0) @binding(6) var<storage, read> state: array<u32>;            // [4] from adamw_norm_final

// 1 - beta^t = -expm1(t * ln(beta)) without the cancellation of 1 - pow(beta, t) near beta^t = 1
// (beta2 = 0.999: 1 - 0.999^1 loses 4 of f32's 7 digits). Taylor series for small |y| (terms up
// to y^6, truncation < 2e-10 relative at |y| = 0.1), exp elsewhere (result >= 0.095 there).
fn oneMinusPow(lnBeta: f32, t: f32) -> f32 {
  let y = t * lnBeta;
  if (abs(y) < 0.1) {
    let e = y * (1.0 + y * (0.5 + y * (1.0 / 6.0 + y * (1.0 / 24.0 + y * (1.0 / 120.0 + y * (1.0 / 720.0))))));
    return -e;
  }
  return 1.0 - exp(y);
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (i >= p.n) { return; }
  let g = grads[i] * stats[2];
  if (p.zeroGrads != 0u) { grads[i] = 0.0; }
  if (state[2] != 0u) { return; } // skipped step: nothing moves
  let lr = stats[3];
  let t = f32(state[0]);
  let w = params[i] * (1.0 - lr * p.weightDecay);
  let mNew = m[i] + p.oneMinusBeta1 * (g - m[i]);
  let vNew = p.beta2 * v[i] + p.oneMinusBeta2 * g * g;
  m[i] = mNew;
  v[i] = vNew;
  let stepSize = lr / oneMinusPow(p.lnBeta1, t);
  let denom = sqrt(vNew) / sqrt(oneMinusPow(p.lnBeta2, t)) + p.eps;
  params[i] = w - stepSize * (mNew / denom);
}
