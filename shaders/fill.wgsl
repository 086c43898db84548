// Uniform random fill: out[i] = lo + (hi - lo) * u(seed, p.first + i) for i < p.n, where u is a
// stateless hash of (seed, global index) mapped to [0, 1). Stateless, so any sub-range (a shard,
// a row block) gets the same values as a fill of the whole tensor, and no RNG state lives anywhere.
// fillRef in src/kernels/fill.ts computes the same bits on the CPU.
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;  // [n] f32

// PCG-RXS-M-XS hash (Jarzynski & Olano, "Hash Functions for GPU Rendering", 2020). u32 arithmetic
// wraps, exactly like Math.imul and >>> 0 in the reference.
fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  if (i >= p.n) { return; }
  let h = pcg(pcg(p.first + i) ^ pcg(p.seed));
  // Top 24 bits: an integer every f32 holds exactly, so u = k * 2^-24 is exact and < 1.
  let u = f32(h >> 8u) * 5.9604644775390625e-8;
  let t = p.span * u;
  out[i] = p.lo + t;
}
