//! Errors of the model layer: every one names what is wrong (node, op, tensor).

use thiserror::Error;

/// Result alias for the model layer.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// What can go wrong while building, importing or checking a model.
#[derive(Debug, Error)]
pub enum ModelError {
    /// A node is inconsistent (bad attribute, bad input shape, missing input).
    #[error("node '{node}' ({op}): {reason}")]
    Node {
        /// Node name.
        node: String,
        /// Op type as ONNX names it.
        op: String,
        /// What is wrong.
        reason: String,
    },
    /// An op (or a variant of it) reef does not implement.
    #[error("node '{node}': unsupported op {op}: {reason}")]
    Unsupported {
        /// Node name.
        node: String,
        /// Op type.
        op: String,
        /// Why it is unsupported.
        reason: String,
    },
    /// The model file could not be decoded.
    #[error("malformed model file: {0}")]
    Malformed(String),
    /// A graph-level problem (dangling value, cycle, bad input/output).
    #[error("invalid graph: {0}")]
    Graph(String),
    /// Weights (safetensors) problem.
    #[error("weights: {0}")]
    Weights(String),
    /// Unknown zoo model name.
    #[error("unknown zoo model '{0}' (see `reef models`)")]
    UnknownModel(String),
    /// I/O error with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// File involved.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
}

impl ModelError {
    /// Shorthand for a [`ModelError::Node`].
    pub fn node(node: &str, op: &str, reason: impl Into<String>) -> Self {
        ModelError::Node {
            node: node.to_string(),
            op: op.to_string(),
            reason: reason.into(),
        }
    }
}
