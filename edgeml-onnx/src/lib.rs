#![doc = include_str!("../README.md")]
#![doc(test(attr(deny(warnings))))]
#![deny(unsafe_code)]

mod buffers;
mod error;
mod external;
pub mod ir;
pub mod kernels;
mod limits;
mod load;
pub mod op;
pub mod ops;
pub mod plan;
mod proto_scan;
mod save;
mod shapes;
mod topo;

pub use error::{Error, Result};
pub use ir::{Attribute, Dim, Graph, Model, Node, OpsetImport, SparseTensor, Tensor, ValueInfo};
pub use limits::{Limits, LoadOptions};
pub use op::{BuildContext, InputType, OpFactory, Operator, Registry};
pub use plan::{GraphOptLevel, Plan, PlanOptions};
