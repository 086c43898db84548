// Repetition / presence / frequency penalties on logits [R, V], in place, before top-k.
// One workgroup per row; its invocations stride over the row's seen tokens (distinct ids, so no
// two invocations touch the same logit). Row r reads its settings from rows[r]; its seen list is
// the `slot`-th row of `seen`, [nSlots, seenCap] pairs (id, count of the id among generated tokens).
//   repetition (HF): x > 0 ? x / rep : x * rep, for every seen id (prompt or generated)
//   presence, frequency (OpenAI): x -= presence * (count > 0) + frequency * count
{{PARAMS}}

struct RowPenalty {
  repetition: f32,
  presence: f32,
  frequency: f32,
  slot: u32,
  nSeen: u32, // 0: the row is left untouched
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> logits: array<f32>;  // [R, V]
@group(0) @binding(2) var<storage, read> rows: array<RowPenalty>;   // [R]
@group(0) @binding(3) var<storage, read> seen: array<u32>;          // [nSlots, seenCap, 2]

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.R) { return; }
  let st = rows[row];
  let n = min(st.nSeen, p.seenCap);
  let base = st.slot * p.seenCap * 2u;
  for (var j = lid; j < n; j = j + {{WG}}u) {
    let id = seen[base + 2u * j];
    if (id >= p.V) { continue; }
    let count = seen[base + 2u * j + 1u];
    let at = row * p.V + id;
    var x = logits[at];
    x = select(x * st.repetition, x / st.repetition, x > 0.0);
    x = x - st.presence * select(0.0, 1.0, count > 0u) - st.frequency * f32(count);
    logits[at] = x;
  }
}
