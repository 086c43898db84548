// GEMV weights in 'f16' with shader-f16: the same packed buffer as gemv_f16.wgsl read as
// vec2<f16> (element 2c is .x), widened to f32 so the sums accumulate in f32.
@group(0) @binding(3) var<storage, read> w: array<vec2<f16>>; // [rows, ceil(K/2)] vec2<f16>

alias XChunk = vec2<f32>;
alias WChunk = vec2<f32>;

fn load_x(m: u32, c: u32) -> XChunk { return vec2<f32>(x_at(m, 2u * c), x_at(m, 2u * c + 1u)); }
fn load_w(row: u32, c: u32) -> WChunk { return vec2<f32>(w[row * p.rowWords + c]); }
fn dot_chunk(wc: WChunk, xc: XChunk) -> f32 { return dot(wc, xc); }
