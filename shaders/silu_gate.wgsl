// SwiGLU gate: out[i] = silu(gate[i]) * up[i] for i < p.n, silu(x) = x * sigmoid(x).
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gate: array<f32>;       // [n]
@group(0) @binding(2) var<storage, read> up: array<f32>;         // [n]
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // [n]

// exp() only ever sees -|x|, so it never overflows: no inf/inf = NaN for large |x|
// (x / (1 + exp(-x)) would compute exp(88.8) = inf at x = -88.8 and below).
fn silu(x: f32) -> f32 {
  let e = exp(-abs(x));
  let sig = select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
  return x * sig;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (i >= p.n) { return; }
  out[i] = silu(gate[i]) * up[i];
}
