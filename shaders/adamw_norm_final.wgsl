// Global gradient norm, pass 2 (one workgroup): sum the partials in a fixed order, then decide the
// step. A non-finite norm (NaN/Inf anywhere in the gradients) SKIPS the step: counted in
// state.skipped, and the apply pass leaves parameters and moments alone. A finite one advances the
// step counter t, which the apply pass uses for the bias corrections (torch increments first).
//   stats [4] f32: sum of squares, norm, clip coefficient min(1, maxNorm / (norm + 1e-6)), lr used
//   state [4] u32: t (applied steps), skipped (total), last step skipped (0/1), steps attempted
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partials: array<f32>;         // [groups]
@group(0) @binding(2) var<storage, read> hyper: array<f32>;            // [4]: lr, then unused
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;      // [4]
@group(0) @binding(4) var<storage, read_write> state: array<u32>;      // [4]

// Exponent bits all ones: Inf or NaN. Bit test, because WGSL compilers may assume finite floats
// and fold `v != v` away.
fn isFiniteF32(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = lid; i < p.groups; i = i + {{WG}}u) {
    acc = acc + partials[i];
  }
  let sumsq = workgroupSum(acc, lid);
  if (lid != 0u) { return; }
  let norm = sqrt(sumsq);
  let finite = isFiniteF32(sumsq) && isFiniteF32(norm);
  var coef = 1.0;
  if (p.clip != 0u && finite) { coef = min(1.0, p.maxNorm / (norm + 1e-6)); }
  stats[0] = sumsq;
  stats[1] = norm;
  stats[2] = coef;
  stats[3] = hyper[0];
  state[3] = state[3] + 1u;
  if (finite) {
    state[0] = state[0] + 1u;
    state[2] = 0u;
  } else {
    state[1] = state[1] + 1u;
    state[2] = 1u;
  }
}
