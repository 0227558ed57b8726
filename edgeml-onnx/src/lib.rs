#![doc = include_str!("../README.md")]
#![doc(test(attr(deny(warnings))))]
#![deny(unsafe_code)]

mod attr_check;
pub mod buffers;
mod builder;
mod edit;
mod error;
mod external;
pub mod ir;
// Hidden, not private: the criterion benches (float_gemm, float_conv, int8_*),
// benches/bin/int8_bench.rs and tests/ops_plan.rs call the kernels directly. Not a
// stable API.
#[doc(hidden)]
pub mod kernels;
mod limits;
mod load;
pub mod op;
pub mod ops;
pub mod passes;
pub mod plan;
mod proto_scan;
mod save;
mod shapes;
mod topo;

pub use builder::ModelBuilder;
pub use edit::{DeadCode, GraphIndex};
pub use error::{Error, Result};
pub use ir::{Attribute, Dim, Graph, Model, Node, OpsetImport, SparseTensor, Tensor, ValueInfo};
pub use limits::{Limits, LoadOptions, RunLimits};
pub use op::{BuildContext, InputType, OpFactory, Operator, Registry};
pub use plan::{
    CancelToken, GraphOptLevel, Plan, PlanOptions, RunMeter, RunOptions, RunStop, SparseMode,
};

/// For the exported macros (`with_dtype!`, `with_num!`), which must not assume that
/// the calling crate depends on `edgeml-core` itself.
#[doc(hidden)]
pub use edgeml_core as __core;
