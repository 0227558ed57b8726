#![doc = include_str!("../README.md")]
#![doc(test(attr(deny(warnings))))]
#![deny(unsafe_code)]

mod error;
pub mod ir;
pub mod kernels;
pub mod op;
pub mod ops;

pub use error::{Error, Result};
pub use ir::{Attribute, Dim, Graph, Model, Node, OpsetImport, Tensor, ValueInfo};
pub use op::{BuildContext, OpFactory, Operator, Registry};
