// GEMV weights in 'f16', packed two per u32 (element 2c in the low half): a chunk is one word.
// Works without shader-f16; gemv_f16_native.wgsl is the same thing reading vec2<f16>.
@group(0) @binding(3) var<storage, read> w: array<u32>; // [rows, ceil(K/2)] u32 of 2 x f16

alias XChunk = vec2<f32>;
alias WChunk = vec2<f32>;

fn load_x(m: u32, c: u32) -> XChunk { return vec2<f32>(x_at(m, 2u * c), x_at(m, 2u * c + 1u)); }
fn load_w(row: u32, c: u32) -> WChunk { return unpack2x16float(w[row * p.rowWords + c]); }
fn dot_chunk(wc: WChunk, xc: XChunk) -> f32 { return dot(wc, xc); }
