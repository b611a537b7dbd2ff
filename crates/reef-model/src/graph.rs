//! The graph IR: values (named, typed, shaped tensors), nodes in topological
//! order, initializers (weights and constants), and a builder that infers
//! shapes as nodes are added.

use crate::error::{ModelError, Result};
use crate::op::Op;
use crate::shape::infer_node;
use crate::tensor::{DType, Tensor};
use std::collections::HashMap;

/// Index of a value in [`Graph::values`].
pub type ValueId = usize;
/// Index of a node in [`Graph::nodes`].
pub type NodeId = usize;

/// A named tensor flowing through the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfo {
    /// Unique name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Concrete shape (reef specialises every graph to static shapes).
    pub shape: Vec<usize>,
}

/// One operator application.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Unique name (used in errors and kernel names).
    pub name: String,
    /// The operator.
    pub op: Op,
    /// Inputs; `None` marks an omitted optional input.
    pub inputs: Vec<Option<ValueId>>,
    /// Outputs.
    pub outputs: Vec<ValueId>,
}

impl Node {
    /// The i-th input, if present.
    pub fn input(&self, i: usize) -> Option<ValueId> {
        self.inputs.get(i).copied().flatten()
    }
}

/// A model: a DAG of nodes over values, with weights as initializers.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// Model name.
    pub name: String,
    /// All values.
    pub values: Vec<ValueInfo>,
    /// Nodes in topological order.
    pub nodes: Vec<Node>,
    /// Graph inputs (fed at run time).
    pub inputs: Vec<ValueId>,
    /// Graph outputs.
    pub outputs: Vec<ValueId>,
    /// Constant tensors: weights and folded constants.
    pub initializers: HashMap<ValueId, Tensor>,
}

impl Graph {
    /// Looks a value up by name.
    pub fn value_by_name(&self, name: &str) -> Option<ValueId> {
        self.values.iter().position(|v| v.name == name)
    }

    /// Shape of a value.
    pub fn shape(&self, v: ValueId) -> &[usize] {
        &self.values[v].shape
    }

    /// The constant behind a value, if it is one.
    pub fn constant(&self, v: ValueId) -> Option<&Tensor> {
        self.initializers.get(&v)
    }

    /// Number of weight parameters (elements of f32 initializers).
    pub fn parameter_count(&self) -> usize {
        self.initializers
            .values()
            .filter(|t| t.dtype() == DType::F32)
            .map(|t| t.len())
            .sum()
    }

    /// Checks structure: every node input is defined before use, outputs
    /// defined once, graph outputs produced; re-infers every shape.
    pub fn validate(&mut self) -> Result<()> {
        let mut defined = vec![false; self.values.len()];
        for &i in &self.inputs {
            defined[i] = true;
        }
        for &i in self.initializers.keys() {
            defined[i] = true;
        }
        for n in 0..self.nodes.len() {
            let node = &self.nodes[n];
            for inp in node.inputs.iter().flatten() {
                if *inp >= self.values.len() || !defined[*inp] {
                    return Err(ModelError::node(
                        &node.name,
                        node.op.name(),
                        format!(
                            "input '{}' is not defined before this node",
                            self.value_name(*inp)
                        ),
                    ));
                }
            }
            for &o in &node.outputs {
                if defined[o] {
                    return Err(ModelError::node(
                        &node.name,
                        node.op.name(),
                        format!("output '{}' is defined twice", self.values[o].name),
                    ));
                }
                defined[o] = true;
            }
            let infos = infer_node(self, &self.nodes[n])?;
            let node = &self.nodes[n];
            for (&o, (dt, sh)) in node.outputs.iter().zip(infos) {
                self.values[o].dtype = dt;
                self.values[o].shape = sh;
            }
        }
        for &o in &self.outputs {
            if !defined[o] {
                return Err(ModelError::Graph(format!(
                    "graph output '{}' is never produced",
                    self.values[o].name
                )));
            }
        }
        Ok(())
    }

    fn value_name(&self, v: ValueId) -> String {
        self.values
            .get(v)
            .map(|v| v.name.clone())
            .unwrap_or_else(|| format!("#{v}"))
    }

    /// A copy of the graph with the batch dimension (dim 0) of every graph
    /// input set to `batch`, shapes re-inferred.
    pub fn with_batch(&self, batch: usize) -> Result<Graph> {
        let mut g = self.clone();
        for &i in &g.inputs {
            if let Some(d) = g.values[i].shape.first_mut() {
                *d = batch;
            }
        }
        g.validate()?;
        Ok(g)
    }
}

/// Builds a graph node by node, inferring shapes as it goes. Used by the zoo
/// and the ONNX importer.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    g: Graph,
    names: HashMap<String, ValueId>,
}

impl GraphBuilder {
    /// An empty graph called `name`.
    pub fn new(name: &str) -> Self {
        GraphBuilder {
            g: Graph {
                name: name.to_string(),
                ..Default::default()
            },
            names: HashMap::new(),
        }
    }

    fn new_value(&mut self, name: &str, dtype: DType, shape: Vec<usize>) -> Result<ValueId> {
        if self.names.contains_key(name) {
            return Err(ModelError::Graph(format!(
                "value '{name}' is defined twice"
            )));
        }
        let id = self.g.values.len();
        self.g.values.push(ValueInfo {
            name: name.to_string(),
            dtype,
            shape,
        });
        self.names.insert(name.to_string(), id);
        Ok(id)
    }

    /// Looks a value up by name.
    pub fn value(&self, name: &str) -> Option<ValueId> {
        self.names.get(name).copied()
    }

    /// Shape of a value.
    pub fn shape(&self, v: ValueId) -> &[usize] {
        &self.g.values[v].shape
    }

    /// Element type of a value.
    pub fn dtype(&self, v: ValueId) -> DType {
        self.g.values[v].dtype
    }

    /// The constant behind a value, if any.
    pub fn constant(&self, v: ValueId) -> Option<&Tensor> {
        self.g.initializers.get(&v)
    }

    /// Declares a graph input.
    pub fn input(&mut self, name: &str, dtype: DType, shape: Vec<usize>) -> Result<ValueId> {
        let id = self.new_value(name, dtype, shape)?;
        self.g.inputs.push(id);
        Ok(id)
    }

    /// Adds an initializer (weight or constant).
    pub fn initializer(&mut self, name: &str, t: Tensor) -> Result<ValueId> {
        let id = self.new_value(name, t.dtype(), t.shape.clone())?;
        self.g.initializers.insert(id, t);
        Ok(id)
    }

    /// Adds a node with named outputs; infers their types and shapes.
    pub fn node_named(
        &mut self,
        name: &str,
        op: Op,
        inputs: Vec<Option<ValueId>>,
        outputs: &[&str],
    ) -> Result<Vec<ValueId>> {
        let mut node = Node {
            name: name.to_string(),
            op,
            inputs,
            outputs: vec![],
        };
        for i in node.inputs.iter().flatten() {
            if *i >= self.g.values.len() {
                return Err(ModelError::node(
                    name,
                    node.op.name(),
                    format!("input #{i} does not exist"),
                ));
            }
        }
        if crate::eval::foldable(&node.op) && outputs.len() == 1 {
            if let Some(mut vals) = crate::eval::eval_node(&self.g, &node)? {
                let t = vals.remove(0);
                return Ok(vec![self.initializer(outputs[0], t)?]);
            }
        }
        let infos = infer_node(&self.g, &node)?;
        if infos.len() < outputs.len() {
            return Err(ModelError::node(
                name,
                node.op.name(),
                format!("has {} outputs, {} requested", infos.len(), outputs.len()),
            ));
        }
        for (o, (dt, sh)) in outputs.iter().zip(infos) {
            let id = self.new_value(o, dt, sh)?;
            node.outputs.push(id);
        }
        let outs = node.outputs.clone();
        self.g.nodes.push(node);
        Ok(outs)
    }

    /// Adds a single-output node whose output is named after the node.
    pub fn node(&mut self, name: &str, op: Op, inputs: &[ValueId]) -> Result<ValueId> {
        let out = format!("{name}_out");
        let ins = inputs.iter().map(|&i| Some(i)).collect();
        Ok(self.node_named(name, op, ins, &[&out])?[0])
    }

    /// Marks a graph output.
    pub fn output(&mut self, v: ValueId) {
        self.g.outputs.push(v);
    }

    /// Finishes the graph (validated).
    pub fn finish(self) -> Result<Graph> {
        let mut g = self.g;
        g.validate()?;
        Ok(g)
    }
}
