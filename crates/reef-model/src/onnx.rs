//! ONNX import and export (to be written).
