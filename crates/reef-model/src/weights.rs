//! safetensors weights (to be written).
