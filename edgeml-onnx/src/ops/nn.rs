//! Compute-heavy neural-network operators (Conv, MatMul, Gemm, pooling, normalization,
//! recurrent layers) on the SIMD float kernels.

use crate::Registry;

/// Registers the neural-network operators into `r`.
pub fn register(r: &mut Registry) {
    let _ = r;
}
