// Row softmax over [rows, cols]: y[r, c] = exp(x[r, c] / t_r - max) / sum, one workgroup per row.
// Pass 1: each invocation keeps a running (max, sum of exp) over its strided columns (online
// softmax), then the workgroup combines them: max first, then the sum of each partial rescaled to
// that max. Pass 2 writes the normalised values. Subtracting the row max keeps exp() <= 1.
// In place when {{SRC}} is `y` (x is then not statically used and not part of the layout).
{{PARAMS}}

const WG: u32 = {{WG}}u;
const NEG_BIG: f32 = -1.0e30;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;          // [rows, cols] output
@group(0) @binding(2) var<storage, read> temperature: array<f32>;      // [rows] (tempStride 1) or [1] (tempStride 0)
@group(0) @binding(3) var<storage, read> x: array<f32>;                // [rows, cols] input when out of place

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) { return; } // whole workgroup leaves together: the reductions stay uniform
  let invT = 1.0 / temperature[row * p.tempStride];
  let base = row * p.cols;

  var m = NEG_BIG;
  var l = 0.0;
  for (var c = lid; c < p.cols; c = c + WG) {
    let z = {{SRC}}[base + c] * invT;
    if (z > m) {
      l = l * exp(m - z) + 1.0;
      m = z;
    } else {
      l = l + exp(z - m);
    }
  }
  let rowMax = {{MAX_FN}}(m, lid);
  let rowSum = workgroupSum(l * exp(m - rowMax), lid);
  let inv = 1.0 / rowSum;
  for (var c = lid; c < p.cols; c = c + WG) {
    y[base + c] = exp({{SRC}}[base + c] * invT - rowMax) * inv;
  }
}
