// GEMV weights in 'f32': a chunk is one element; w is [rows, K] f32 (rowWords = K).
@group(0) @binding(3) var<storage, read> w: array<f32>; // [rows, K] f32, this shard

alias XChunk = f32;
alias WChunk = f32;

fn load_x(m: u32, c: u32) -> XChunk { return x[m * p.K + c]; }
fn load_w(row: u32, c: u32) -> WChunk { return w[row * p.rowWords + c]; }
fn dot_chunk(wc: WChunk, xc: XChunk) -> f32 { return wc * xc; }
