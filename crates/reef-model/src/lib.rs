//! reef's model layer: the tensor and graph IR every other crate consumes, shape
//! inference, a small reference evaluator (used for constant folding), ONNX
//! import/export, safetensors weights and the built-in model zoo.

pub mod error;
pub mod eval;
pub mod graph;
pub mod op;
pub mod resize;
pub mod shape;
pub mod tensor;
pub mod weights;

pub use error::{ModelError, Result};
pub use graph::{Graph, GraphBuilder, Node, NodeId, ValueId, ValueInfo};
pub use op::{Act, Op, PadMode, PoolKind, Reduction, UnaryFn};
pub use tensor::{DType, Tensor, TensorData};
