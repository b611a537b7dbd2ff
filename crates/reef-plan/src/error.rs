//! Errors raised while compiling a graph into a plan.

use thiserror::Error;

/// Result alias for the compiler.
pub type Result<T, E = PlanError> = std::result::Result<T, E>;

/// A graph reef cannot compile, with the node and reason.
#[derive(Debug, Error)]
pub enum PlanError {
    /// Error from the model layer.
    #[error(transparent)]
    Model(#[from] reef_model::ModelError),
    /// A node the lowering cannot express as kernels.
    #[error("node '{node}' ({op}): {reason}")]
    Lower {
        /// Node name.
        node: String,
        /// Op type.
        op: String,
        /// Why.
        reason: String,
    },
}
