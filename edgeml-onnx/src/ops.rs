//! Built-in operators and the default registry.

pub mod attr;
pub mod nn;
pub mod util;

use crate::Registry;

/// The registry with every built-in operator of `edgeml-onnx`.
pub fn default_registry() -> Registry {
    let mut r = Registry::empty();
    nn::register(&mut r);
    r
}
