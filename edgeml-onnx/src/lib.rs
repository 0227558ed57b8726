#![doc = include_str!("../README.md")]
#![doc(test(attr(deny(warnings))))]

mod error;
pub mod ir;
pub mod op;
pub mod ops;
pub mod plan;

pub use error::{Error, Result};
pub use ir::{Attribute, Dim, Graph, Model, Node, OpsetImport, Tensor, ValueInfo};
pub use op::{BuildContext, OpFactory, Operator, Registry};
pub use plan::{Plan, PlanOptions};
