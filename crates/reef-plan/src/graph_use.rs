//! Who reads and who writes each value of a graph: the facts the lowering's
//! fusion passes (`softmax_fusion`, `qkv_fusion`, `concat_inplace`) match
//! patterns on, computed once per compile.

use reef_model::{DType, Graph, NodeId, ValueId};
use std::collections::HashMap;

/// The graph with its consumers, producers and outputs.
pub struct GraphUse<'a> {
    /// The graph.
    pub g: &'a Graph,
    /// Consumers of each value.
    pub consumers: Vec<Vec<NodeId>>,
    /// Whether each value is a graph output.
    pub is_output: Vec<bool>,
    /// The node that writes each computed value.
    pub producer: HashMap<ValueId, NodeId>,
}

impl<'a> GraphUse<'a> {
    /// Computes the uses of `g`.
    pub fn new(g: &'a Graph) -> Self {
        let mut consumers = vec![vec![]; g.values.len()];
        let mut producer = HashMap::new();
        for (i, n) in g.nodes.iter().enumerate() {
            for v in n.inputs.iter().flatten() {
                if !consumers[*v].contains(&i) {
                    consumers[*v].push(i);
                }
            }
            for &o in &n.outputs {
                producer.insert(o, i);
            }
        }
        let mut is_output = vec![false; g.values.len()];
        for &o in &g.outputs {
            is_output[o] = true;
        }
        GraphUse {
            g,
            consumers,
            is_output,
            producer,
        }
    }

    /// Whether `v` is read by node `n` alone (once) and is not a graph output.
    pub fn only_feeds(&self, v: ValueId, n: NodeId) -> bool {
        !self.is_output[v]
            && self.consumers[v] == [n]
            && self.g.nodes[n]
                .inputs
                .iter()
                .flatten()
                .filter(|&&i| i == v)
                .count()
                == 1
    }

    /// The value of a one-element f32 constant.
    pub fn scalar(&self, v: ValueId) -> Option<f32> {
        let t = self.g.constant(v)?;
        (t.len() == 1 && t.dtype() == DType::F32).then(|| t.to_f64_vec()[0] as f32)
    }
}
