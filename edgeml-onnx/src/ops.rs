//! Built-in operators and the default registry.
//!
//! Operator semantics follow the ONNX operator specification for opsets 7–21,
//! including the attribute→input migrations (`Clip` 11, `Squeeze`/`Unsqueeze`/`Split`/
//! `ReduceSum` 13, the other `Reduce*` 18, `Pad` 11, `Resize` 11).

pub mod activation;
pub mod attr;
pub mod elementwise;
pub(crate) mod half;
pub mod nn;
pub mod num;
pub mod reduce;
pub mod resize;
pub mod shape;
pub mod tensor;
// Hidden, not private: the INT8 operators that edgeml-quant registers into the
// interpreter are to share these helpers (one way to write an operator), so they stay
// reachable from other crates; they are not a stable API.
#[doc(hidden)]
pub mod util;

use crate::Registry;

/// The registry with every built-in operator of `edgeml-onnx`.
pub fn default_registry() -> Registry {
    let mut r = Registry::empty();
    elementwise::register(&mut r);
    activation::register(&mut r);
    shape::register(&mut r);
    tensor::register(&mut r);
    reduce::register(&mut r);
    resize::register(&mut r);
    nn::register(&mut r);
    half::compute_in_f32(&mut r);
    r
}
