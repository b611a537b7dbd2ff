//! Typed access to a node's ONNX attributes, with errors that name the node,
//! the op and the attribute.

use crate::proto::{AttributeProto, AttributeType, NodeProto, TensorProto};
use reef_model::ModelError;

/// Context of the node being imported: its (possibly synthesised) name, its
/// op type and its attributes.
pub struct NodeCtx<'a> {
    /// Unique node name.
    pub name: String,
    /// ONNX op type.
    pub op: &'a str,
    /// The node.
    pub proto: &'a NodeProto,
}

impl NodeCtx<'_> {
    /// A `ModelError::Node` naming this node.
    pub fn err(&self, reason: impl Into<String>) -> ModelError {
        ModelError::node(&self.name, self.op, reason)
    }

    /// A `ModelError::Unsupported` naming this node.
    pub fn unsupported(&self, reason: impl Into<String>) -> ModelError {
        ModelError::Unsupported {
            node: self.name.clone(),
            op: self.op.to_string(),
            reason: reason.into(),
        }
    }

    fn attr(&self, name: &str, want: AttributeType) -> Result<Option<&AttributeProto>, ModelError> {
        let Some(a) = self.proto.attribute.iter().find(|a| a.name == name) else {
            return Ok(None);
        };
        if !a.ref_attr_name.is_empty() {
            return Err(
                self.unsupported(format!("attribute '{name}' refers to a function attribute"))
            );
        }
        let ty = AttributeType::try_from(a.r#type).unwrap_or(AttributeType::Undefined);
        if ty != AttributeType::Undefined && ty != want {
            return Err(self.err(format!(
                "attribute '{name}' has type {ty:?}, expected {want:?}"
            )));
        }
        Ok(Some(a))
    }

    /// An integer attribute.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ModelError> {
        Ok(self.attr(name, AttributeType::Int)?.map(|a| a.i))
    }

    /// An integer attribute with a default.
    pub fn int_or(&self, name: &str, default: i64) -> Result<i64, ModelError> {
        Ok(self.int(name)?.unwrap_or(default))
    }

    /// A 0/1 flag attribute with a default.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ModelError> {
        match self.int(name)? {
            None => Ok(default),
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            Some(v) => Err(self.err(format!("attribute '{name}' must be 0 or 1, got {v}"))),
        }
    }

    /// A float attribute.
    pub fn float(&self, name: &str) -> Result<Option<f32>, ModelError> {
        Ok(self.attr(name, AttributeType::Float)?.map(|a| a.f))
    }

    /// A float attribute with a default.
    pub fn float_or(&self, name: &str, default: f32) -> Result<f32, ModelError> {
        Ok(self.float(name)?.unwrap_or(default))
    }

    /// An integer-list attribute.
    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, ModelError> {
        Ok(self
            .attr(name, AttributeType::Ints)?
            .map(|a| a.ints.clone()))
    }

    /// A float-list attribute.
    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>, ModelError> {
        Ok(self
            .attr(name, AttributeType::Floats)?
            .map(|a| a.floats.clone()))
    }

    /// A string attribute (must be UTF-8).
    pub fn string(&self, name: &str) -> Result<Option<String>, ModelError> {
        match self.attr(name, AttributeType::String)? {
            None => Ok(None),
            Some(a) => String::from_utf8(a.s.clone())
                .map(Some)
                .map_err(|_| self.err(format!("attribute '{name}' is not UTF-8"))),
        }
    }

    /// A tensor attribute.
    pub fn tensor(&self, name: &str) -> Result<Option<&TensorProto>, ModelError> {
        match self.attr(name, AttributeType::Tensor)? {
            None => Ok(None),
            Some(a) => {
                a.t.as_ref()
                    .map(Some)
                    .ok_or_else(|| self.err(format!("attribute '{name}' holds no tensor")))
            }
        }
    }

    /// True if the attribute is present.
    pub fn has(&self, name: &str) -> bool {
        self.proto.attribute.iter().any(|a| a.name == name)
    }

    /// An integer-list attribute of exactly `n` values in `lo..=hi`,
    /// converted to usize.
    pub fn usizes(
        &self,
        name: &str,
        n: usize,
        lo: i64,
        hi: i64,
    ) -> Result<Option<Vec<usize>>, ModelError> {
        let Some(v) = self.ints(name)? else {
            return Ok(None);
        };
        if v.len() != n {
            return Err(self.err(format!(
                "attribute '{name}' has {} values, expected {n}",
                v.len()
            )));
        }
        if let Some(bad) = v.iter().find(|&&x| x < lo || x > hi) {
            return Err(self.err(format!(
                "attribute '{name}' value {bad} is outside {lo}..={hi}"
            )));
        }
        Ok(Some(v.iter().map(|&x| x as usize).collect()))
    }
}
