// Rotary position embedding, HF rotate_half convention, in place on q and k. In a head vector of
// size headDim = 2 * half, element j pairs with j + half and both rotate by pos * invFreq[j]:
//   x[j]        = x[j] * cos - x[j + half] * sin
//   x[j + half] = x[j + half] * cos + x[j] * sin
// One invocation per (token, head, j); q heads first, then k heads.
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> q: array<f32>;     // [T, nHeads, headDim]
@group(0) @binding(2) var<storage, read_write> k: array<f32>;     // [T, nKvHeads, headDim]
@group(0) @binding(3) var<storage, read> positions: array<u32>;   // [T] absolute position of each token
@group(0) @binding(4) var<storage, read> invFreq: array<f32>;     // [half]

// sin and cos of the f32 angle, computed here rather than with the builtins: WGSL promises
// sin/cos accuracy only on [-pi, pi] and only to ~2^-11 there (SwiftShader is that coarse), and
// GPUs differ. Reduce by the nearest multiple of pi/2 with pi/2 split in four (each of the first
// three has <= 7 significant bits, so n * P_i is exact for n < 2^17: angles up to ~2e5), then
// minimax polynomials on [-pi/4, pi/4] accurate to about 1 ulp.
const PIO2_1 = 1.5625;
const PIO2_2 = 0.0081787109375;
const PIO2_3 = 0.00011730194091796875;
const PIO2_4 = 3.1391647326017846e-07;
const TWO_OVER_PI = 0.6366197466850281;

// (sin a, cos a)
fn sinCos(a: f32) -> vec2f {
  let n = round(a * TWO_OVER_PI);
  let x = (((a - n * PIO2_1) - n * PIO2_2) - n * PIO2_3) - n * PIO2_4;
  let z = x * x;
  let s = x + x * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4));
  let c = 1.0 - 0.5 * z + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3 + z * 2.443315711809948e-5));
  // Quadrant n mod 4 (two's complement & 3 is right for negative n too).
  switch (i32(n) & 3) {
    case 0: { return vec2f(s, c); }
    case 1: { return vec2f(c, -s); }
    case 2: { return vec2f(-s, -c); }
    default: { return vec2f(-c, s); }
  }
}

fn rotate(v: ptr<storage, array<f32>, read_write>, base: u32, j: u32, c: f32, s: f32) {
  let a = (*v)[base + j];
  let b = (*v)[base + j + p.half];
  (*v)[base + j] = a * c - b * s;
  (*v)[base + j + p.half] = b * c + a * s;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * {{WG}}u + lid;
  let heads = p.nHeads + p.nKvHeads;
  if (i >= p.T * heads * p.half) { return; }
  let j = i % p.half;
  let h = (i / p.half) % heads;
  let t = i / (p.half * heads);
  // The angle is rounded to f32 here; the CPU reference rounds it the same way.
  let sc = sinCos(f32(positions[t]) * invFreq[j]);
  let s = sc.x;
  let c = sc.y;
  let headDim = 2u * p.half;
  if (h < p.nHeads) {
    rotate(&q, (t * p.nHeads + h) * headDim, j, c, s);
  } else {
    rotate(&k, (t * p.nKvHeads + (h - p.nHeads)) * headDim, j, c, s);
  }
}
