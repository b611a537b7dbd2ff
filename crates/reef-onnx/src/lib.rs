//! ONNX import and export for reef's model IR.
//!
//! - [`import`] decodes an ONNX model (opsets 7 to 22 of ai.onnx) into a
//!   static-shape [`reef_model::Graph`];
//! - [`export`] writes a graph as an ONNX model (IR 8, opset 17);
//! - [`node_tests`] runs ONNX's backend node tests through a caller-supplied
//!   executor.
//!
//! The protobuf messages are declared by hand in [`proto`] (no build script).

mod attrs;
pub mod convert;
mod export;
mod import;
pub mod node_tests;
pub mod proto;

pub use export::{export, EXPORT_IR_VERSION, EXPORT_OPSET};
pub use import::{import, import_unguarded, import_with_dims, DimValues, MAX_OPSET, MIN_OPSET};
