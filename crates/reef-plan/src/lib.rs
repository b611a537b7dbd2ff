//! reef's compiler. A [`Graph`](reef_model::Graph) goes through passes
//! (BatchNorm folding, epilogue fusion, alias elimination), is lowered to an
//! ordered list of [`Kernel`]s, REEF's "schedule", and its activations are
//! placed in one arena by the memory planner. Backends execute a [`Plan`].

pub mod attention_fusion;
pub mod concat_inplace;
pub mod error;
pub mod graph_use;
pub mod kernel;
pub mod lower;
pub mod memory;
pub mod plan;
pub mod qkv_fusion;
pub mod softmax_fusion;

pub use error::{PlanError, Result};
pub use kernel::*;
pub use lower::compile;
pub use plan::{Buffer, BufferId, IoBinding, Loc, Plan, ALIGN};
