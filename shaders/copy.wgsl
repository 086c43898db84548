// Bandwidth copy: dst[offset + i] = src[offset + i] for i < p.count, in units of {{ELEM}}.
// The bulk of a buffer is copied as vec4<f32> (16-byte loads and stores, what saturates memory
// bandwidth); the same source specialised with ELEM = f32 copies the last n % 4 floats, whose
// offset is counted in floats. src and dst must be different buffers (read vs read_write).
// Each invocation copies PER elements strided by the workgroup size: neighbouring invocations
// touch neighbouring elements (coalesced on GPUs), and the per-invocation overhead of CPU
// implementations such as SwiftShader is paid once per PER elements, not once per element.
{{PARAMS}}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<{{ELEM}}>;        // [n] f32 (as {{ELEM}})
@group(0) @binding(2) var<storage, read_write> dst: array<{{ELEM}}>;  // [n] f32 (as {{ELEM}})

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let base = (wid.x + wid.y * nwg.x) * ({{PER}}u * {{WG}}u) + lid;
  for (var j = 0u; j < {{PER}}u; j++) {
    let i = base + j * {{WG}}u;
    if (i >= p.count) { return; } // i grows with j: nothing further is in range either
    dst[p.offset + i] = src[p.offset + i];
  }
}
