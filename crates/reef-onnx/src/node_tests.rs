//! Runs ONNX's backend node tests (`onnx/backend/test/data/node/<case>/`:
//! `model.onnx` plus `test_data_set_N/{input,output}_K.pb`) through reef's
//! importer and a caller-supplied executor, and summarises the outcome per op.
//!
//! Only the cases of ops reef implements are selected (by the directory
//! name, see [`op_for_case`]); `_expanded` cases (function bodies written in
//! other ops) are left out. A case whose model or data reef cannot represent
//! (non-f32 compute, 1-D/3-D conv, training mode, opset out of range,
//! dynamic shapes...) is *unsupported*, not failed.

use crate::convert::{tensor_from_proto, tensor_to_proto};
use crate::proto::{type_proto, ModelProto, TensorProto};
use prost::Message;
use reef_model::{DType, Graph, ModelError, Tensor, TensorData};
use std::collections::BTreeMap;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// Relative tolerance of f32 comparisons (as ONNX's backend runner).
pub const RTOL: f64 = 1e-3;
/// Absolute tolerance of f32 comparisons (as ONNX's backend runner).
pub const ATOL: f64 = 1e-5;

/// Test-name prefixes (after `test_`) and the op they exercise. A case
/// matches a prefix if its name equals it or continues with `_`.
const PREFIXES: &[(&str, &str)] = &[
    ("conv", "Conv"),
    ("basic_conv_with_padding", "Conv"),
    ("basic_conv_without_padding", "Conv"),
    ("gemm", "Gemm"),
    ("matmul", "MatMul"),
    ("add", "Add"),
    ("sub", "Sub"),
    ("mul", "Mul"),
    ("div", "Div"),
    ("pow", "Pow"),
    ("relu", "Relu"),
    ("clip", "Clip"),
    ("sigmoid", "Sigmoid"),
    ("tanh", "Tanh"),
    ("erf", "Erf"),
    ("sqrt", "Sqrt"),
    ("exp", "Exp"),
    ("neg", "Neg"),
    ("batchnorm", "BatchNormalization"),
    ("maxpool", "MaxPool"),
    ("averagepool", "AveragePool"),
    ("globalaveragepool", "GlobalAveragePool"),
    ("globalmaxpool", "GlobalMaxPool"),
    ("concat", "Concat"),
    ("flatten", "Flatten"),
    ("reshape", "Reshape"),
    ("transpose", "Transpose"),
    ("squeeze", "Squeeze"),
    ("unsqueeze", "Unsqueeze"),
    ("gather", "Gather"),
    ("gather_elements", "GatherElements"),
    ("slice", "Slice"),
    ("shape", "Shape"),
    ("constant", "Constant"),
    ("constantofshape", "ConstantOfShape"),
    ("range", "Range"),
    ("cast", "Cast"),
    ("softmax", "Softmax"),
    ("layer_normalization", "LayerNormalization"),
    ("reduce_mean", "ReduceMean"),
    ("where", "Where"),
    ("expand", "Expand"),
    ("constant_pad", "Pad"),
    ("edge_pad", "Pad"),
    ("reflect_pad", "Pad"),
    ("wrap_pad", "Pad"),
    ("identity", "Identity"),
    ("dropout", "Dropout"),
    ("equal", "Equal"),
    ("less", "Less"),
    ("greater_equal", "GreaterOrEqual"),
    ("less_equal", "LessOrEqual"),
    ("greater", "Greater"),
    ("not", "Not"),
    ("and", "And"),
    ("or", "Or"),
    ("xor", "Xor"),
    ("leakyrelu", "LeakyRelu"),
    ("elu", "Elu"),
    ("selu", "Selu"),
    ("celu", "Celu"),
    ("hardsigmoid", "HardSigmoid"),
    ("hardswish", "HardSwish"),
    ("softplus", "Softplus"),
    ("softsign", "Softsign"),
    ("thresholdedrelu", "ThresholdedRelu"),
    ("mish", "Mish"),
    ("gelu", "Gelu"),
    ("abs", "Abs"),
    ("log", "Log"),
    ("reciprocal", "Reciprocal"),
    ("floor", "Floor"),
    ("ceil", "Ceil"),
    ("round", "Round"),
    ("sin", "Sin"),
    ("cos", "Cos"),
    ("sign", "Sign"),
    ("prelu", "PRelu"),
    ("min", "Min"),
    ("max", "Max"),
    ("sum", "Sum"),
    ("mean", "Mean"),
    ("split", "Split"),
    ("resize", "Resize"),
    ("upsample", "Upsample"),
    ("instancenorm", "InstanceNormalization"),
    ("convtranspose", "ConvTranspose"),
    ("einsum", "Einsum"),
    ("argmax", "ArgMax"),
    ("argmin", "ArgMin"),
    ("group_normalization", "GroupNormalization"),
    ("reduce_sum", "ReduceSum"),
    ("reduce_max", "ReduceMax"),
    ("reduce_min", "ReduceMin"),
    ("reduce_sum_square", "ReduceSumSquare"),
    ("reduce_l1", "ReduceL1"),
    ("reduce_l2", "ReduceL2"),
];

/// Ops reef's backends compute in f32 only: cases of them with other
/// run-time input or output types are unsupported.
const F32_COMPUTE: &[&str] = &[
    "Conv",
    "Gemm",
    "MatMul",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Relu",
    "Clip",
    "Sigmoid",
    "Tanh",
    "Erf",
    "Sqrt",
    "Exp",
    "Neg",
    "BatchNormalization",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Softmax",
    "LayerNormalization",
    "ReduceMean",
    "LeakyRelu",
    "Elu",
    "Selu",
    "Celu",
    "HardSigmoid",
    "HardSwish",
    "Softplus",
    "Softsign",
    "ThresholdedRelu",
    "Mish",
    "Gelu",
    "Abs",
    "Log",
    "Reciprocal",
    "Floor",
    "Ceil",
    "Round",
    "Sin",
    "Cos",
    "Sign",
    "PRelu",
    "Min",
    "Max",
    "Sum",
    "Mean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceSumSquare",
    "ReduceL1",
    "ReduceL2",
    "Resize",
    "Upsample",
    "InstanceNormalization",
    "GroupNormalization",
    "ConvTranspose",
    "Einsum",
    "ArgMax",
    "ArgMin",
];

/// Names that a prefix above would catch but that test another op.
const OTHER_OPS: &[&str] = &["softmax_cross_entropy", "split_to_sequence"];

/// The op a node-test directory exercises, if reef supports it.
pub fn op_for_case(dir_name: &str) -> Option<&'static str> {
    let name = dir_name.strip_prefix("test_")?;
    if name.ends_with("_expanded") || name.contains("_expanded_") {
        return None;
    }
    // A prefix ends at '_' or at a digit ("test_and2d", "test_or_bcast3v1d").
    let matches = |p: &str| {
        name == p
            || name
                .strip_prefix(p)
                .is_some_and(|r| r.starts_with(|c: char| c == '_' || c.is_ascii_digit()))
    };
    // The longest matching prefix wins ("constant_pad" over "constant").
    let best = PREFIXES
        .iter()
        .filter(|(p, _)| matches(p))
        .max_by_key(|(p, _)| p.len())?;
    if OTHER_OPS
        .iter()
        .any(|o| matches(o) && o.len() > best.0.len())
    {
        return None;
    }
    Some(best.1)
}

/// One node-test case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTestCase {
    /// Directory name (`test_conv_with_strides_padding`).
    pub name: String,
    /// The op it exercises.
    pub op: &'static str,
    /// The case directory.
    pub dir: PathBuf,
}

/// Outcome of one case.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every output of every data set matched.
    Passed,
    /// Import, execution or comparison failed (with why).
    Failed(String),
    /// reef cannot represent the case (with why).
    Unsupported(String),
}

/// Result of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    /// The case.
    pub case: NodeTestCase,
    /// What happened.
    pub outcome: Outcome,
}

/// The node-test data directory: `$REEF_ONNX_NODE_TESTS`, else the one
/// shipped with the `onnx` Python package (`python3` must import `onnx`).
pub fn locate() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("REEF_ONNX_NODE_TESTS") {
        let p = PathBuf::from(p);
        return p.is_dir().then_some(p);
    }
    let out = std::process::Command::new("python3")
        .args(["-c", "import onnx,os;print(os.path.dirname(onnx.__file__))"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let root = String::from_utf8(out.stdout).ok()?;
    let p = Path::new(root.trim()).join("backend/test/data/node");
    p.is_dir().then_some(p)
}

fn io_err(path: &Path, source: std::io::Error) -> ModelError {
    ModelError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The cases under `dir` whose op reef supports, sorted by name.
pub fn list_cases(dir: &Path) -> Result<Vec<NodeTestCase>, ModelError> {
    let mut cases = vec![];
    for e in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let e = e.map_err(|e| io_err(dir, e))?;
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Some(op) = op_for_case(&name) else {
            continue;
        };
        if e.path().join("model.onnx").is_file() {
            cases.push(NodeTestCase {
                name,
                op,
                dir: e.path(),
            });
        }
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}

/// Reads a serialised `TensorProto` file into a reef tensor.
pub fn read_tensor_pb(path: &Path) -> Result<Tensor, ModelError> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let tp = TensorProto::decode(bytes.as_slice())
        .map_err(|e| ModelError::Malformed(format!("{}: {e}", path.display())))?;
    tensor_from_proto(&tp)
}

/// One data set of a case: inputs and expected outputs.
#[derive(Debug, Clone)]
pub struct DataSet {
    /// Inputs, in graph-input order.
    pub inputs: Vec<Tensor>,
    /// Expected outputs, in graph-output order.
    pub outputs: Vec<Tensor>,
}

fn numbered(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, ModelError> {
    let mut files = vec![];
    for e in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let e = e.map_err(|e| io_err(dir, e))?;
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(i) = name
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(".pb"))
            .and_then(|n| n.parse::<usize>().ok())
        {
            files.push((i, e.path()));
        }
    }
    files.sort();
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

/// The data sets (`test_data_set_*`) of a case, sorted.
pub fn load_data_sets(case: &NodeTestCase) -> Result<Vec<DataSet>, ModelError> {
    let mut dirs = vec![];
    for e in std::fs::read_dir(&case.dir).map_err(|e| io_err(&case.dir, e))? {
        let e = e.map_err(|e| io_err(&case.dir, e))?;
        if e.file_name()
            .to_string_lossy()
            .starts_with("test_data_set_")
            && e.path().is_dir()
        {
            dirs.push(e.path());
        }
    }
    dirs.sort();
    dirs.iter()
        .map(|d| {
            let read = |p: &PathBuf| read_tensor_pb(p);
            Ok(DataSet {
                inputs: numbered(d, "input_")?
                    .iter()
                    .map(read)
                    .collect::<Result<_, _>>()?,
                outputs: numbered(d, "output_")?
                    .iter()
                    .map(read)
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect()
}

/// Input positions of each op that reef needs constant (shapes, axes,
/// pads, bounds). Node tests feed them as graph inputs; [`prepare`] freezes
/// them into initializers with the data set's values.
fn operand_positions(op: &str) -> &'static [usize] {
    match op {
        "Reshape" | "Expand" | "Squeeze" | "Unsqueeze" | "Split" | "Upsample" => &[1],
        "Resize" => &[1, 2, 3],
        op if op.starts_with("Reduce") => &[1],
        "Slice" => &[1, 2, 3, 4],
        "Pad" => &[1, 2, 3],
        "Clip" | "Dropout" => &[1, 2],
        "ConstantOfShape" => &[0],
        "Range" => &[0, 1, 2],
        "BatchNormalization" => &[1, 2, 3, 4],
        "InstanceNormalization" | "GroupNormalization" => &[1, 2],
        "ConvTranspose" => &[1],
        _ => &[],
    }
}

/// Optional node outputs reef does not compute: (op, output position, name).
/// A node test that asks for one of them as a graph output runs without it,
/// and the skip is reported (see [`Prepared::skipped`]); every other output
/// is still compared.
const UNCOMPUTED_OUTPUTS: &[(&str, usize, &str)] =
    &[("Dropout", 1, "mask"), ("MaxPool", 1, "Indices")];

/// Reads and decodes the case's `model.onnx`; inputs or outputs that are
/// not tensors (sequences, optionals) make the case unsupported.
pub fn read_model(case: &NodeTestCase) -> Result<ModelProto, ModelError> {
    let path = case.dir.join("model.onnx");
    let bytes = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
    let model =
        ModelProto::decode(bytes.as_slice()).map_err(|e| ModelError::Malformed(e.to_string()))?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| ModelError::Malformed("model has no graph".into()))?;
    for vi in graph.input.iter().chain(&graph.output) {
        if !matches!(
            vi.r#type.as_ref().and_then(|t| t.value.as_ref()),
            Some(type_proto::Value::TensorType(_))
        ) {
            return Err(ModelError::Unsupported {
                node: vi.name.clone(),
                op: "graph input/output".into(),
                reason: "not a tensor (sequence, map or optional)".into(),
            });
        }
    }
    Ok(model)
}

/// A case ready to run: the imported graph, its run-time inputs and the
/// expected outputs of one data set.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Imported graph (operand inputs frozen to constants).
    pub graph: Graph,
    /// Run-time inputs, in `graph.inputs` order.
    pub inputs: Vec<Tensor>,
    /// Expected outputs, in `graph.outputs` order.
    pub outputs: Vec<Tensor>,
    /// Graph outputs of the test model left out of the run and the
    /// comparison because reef does not compute them, each with why.
    pub skipped: Vec<String>,
}

/// Freezes the operand inputs (see [`operand_positions`]) of `model` to the
/// data set's values, imports it (batch from the first run-time input) and
/// returns the graph with the remaining inputs.
pub fn prepare(model: &ModelProto, set: &DataSet) -> Result<Prepared, ModelError> {
    let mut model = model.clone();
    let Some(graph) = model.graph.as_mut() else {
        return Err(ModelError::Malformed("model has no graph".into()));
    };
    let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let runtime: Vec<String> = graph
        .input
        .iter()
        .map(|i| i.name.clone())
        .filter(|n| !inits.contains(n.as_str()))
        .collect();
    if runtime.len() != set.inputs.len() {
        return Err(ModelError::Graph(format!(
            "data set has {} inputs, the model {}",
            set.inputs.len(),
            runtime.len()
        )));
    }
    let mut frozen = HashSet::new();
    for n in &graph.node {
        for &i in operand_positions(&n.op_type) {
            if let Some(name) = n.input.get(i).filter(|s| !s.is_empty()) {
                frozen.insert(name.clone());
            }
        }
    }
    let mut inputs = vec![];
    for (name, t) in runtime.iter().zip(&set.inputs) {
        if frozen.contains(name) {
            graph.initializer.push(tensor_to_proto(name, t));
        } else {
            inputs.push(t.clone());
        }
    }
    graph.input.retain(|i| !frozen.contains(&i.name));
    // Drop graph outputs reef does not compute (optional node outputs).
    if graph.output.len() != set.outputs.len() {
        return Err(ModelError::Graph(format!(
            "data set has {} outputs, the model {}",
            set.outputs.len(),
            graph.output.len()
        )));
    }
    let mut skipped = vec![];
    let mut outputs = vec![];
    let mut kept = vec![];
    for (vi, t) in graph.output.iter().zip(&set.outputs) {
        let producer = graph.node.iter().find_map(|n| {
            let pos = n.output.iter().position(|o| *o == vi.name)?;
            UNCOMPUTED_OUTPUTS
                .iter()
                .find(|(op, p, _)| *op == n.op_type && *p == pos)
        });
        match producer {
            Some((op, pos, what)) => skipped.push(format!(
                "output '{}' ({op} output #{pos}, {what}) is not computed by reef; not compared",
                vi.name
            )),
            None => {
                kept.push(vi.clone());
                outputs.push(t.clone());
            }
        }
    }
    graph.output = kept;
    let batch = inputs
        .first()
        .and_then(|t| t.shape.first().copied())
        .filter(|&b| b > 0);
    let graph = crate::import(&model.encode_to_vec(), batch)?;
    Ok(Prepared {
        graph,
        inputs,
        outputs,
        skipped,
    })
}

fn classify(e: ModelError) -> Outcome {
    match e {
        ModelError::Unsupported { .. } => Outcome::Unsupported(e.to_string()),
        e => Outcome::Failed(e.to_string()),
    }
}

/// Compares one output: same type and shape; f32 within
/// `|a - e| <= ATOL + RTOL * |e|` (NaN matches NaN), others exact.
pub fn compare(actual: &Tensor, expected: &Tensor) -> Result<(), String> {
    if actual.dtype() != expected.dtype() {
        return Err(format!(
            "type {} differs from the expected {}",
            actual.dtype(),
            expected.dtype()
        ));
    }
    if actual.shape != expected.shape {
        return Err(format!(
            "shape {:?} differs from the expected {:?}",
            actual.shape, expected.shape
        ));
    }
    match (&actual.data, &expected.data) {
        (TensorData::F32(a), TensorData::F32(e)) => {
            for (i, (&x, &y)) in a.iter().zip(e.iter()).enumerate() {
                let ok = if y.is_nan() || x.is_nan() {
                    x.is_nan() && y.is_nan()
                } else if y.is_infinite() {
                    x == y
                } else {
                    ((x as f64) - (y as f64)).abs() <= ATOL + RTOL * (y as f64).abs()
                };
                if !ok {
                    return Err(format!("element {i}: got {x}, expected {y}"));
                }
            }
            Ok(())
        }
        _ => {
            if actual.data == expected.data {
                Ok(())
            } else {
                let (a, e) = (actual.to_i64_vec(), expected.to_i64_vec());
                let i = a.iter().zip(&e).position(|(x, y)| x != y).unwrap_or(0);
                Err(format!(
                    "element {i}: got {:?}, expected {:?}",
                    a.get(i),
                    e.get(i)
                ))
            }
        }
    }
}

/// Runs one case: loads its data, imports the model, runs every data set
/// through `exec` and compares the outputs.
pub fn run_case<F>(case: &NodeTestCase, exec: &F) -> Outcome
where
    F: Fn(&Graph, &[Tensor]) -> Result<Vec<Tensor>, String>,
{
    let model = match read_model(case) {
        Ok(m) => m,
        Err(e) => return classify(e),
    };
    let sets = match load_data_sets(case) {
        Ok(s) => s,
        Err(e) => return classify(e),
    };
    for (k, set) in sets.iter().enumerate() {
        let Prepared {
            graph,
            inputs,
            outputs,
            skipped,
        } = match prepare(&model, set) {
            Ok(p) => p,
            Err(e) => return classify(e),
        };
        for why in &skipped {
            println!("note: {} data set {k}: {why}", case.name);
        }
        for (t, &v) in inputs.iter().zip(&graph.inputs) {
            let info = &graph.values[v];
            if t.shape != info.shape || t.dtype() != info.dtype {
                return Outcome::Unsupported(format!(
                    "data set {k}: input '{}' is {:?}{:?}, the imported graph fixed {:?}{:?}",
                    info.name,
                    t.dtype(),
                    t.shape,
                    info.dtype,
                    info.shape
                ));
            }
        }
        if F32_COMPUTE.contains(&case.op) {
            // ArgMax / ArgMin answer indices: only their input is f32.
            let index_output = matches!(case.op, "ArgMax" | "ArgMin");
            let outs = if index_output { &[][..] } else { &outputs[..] };
            if let Some(t) = inputs.iter().chain(outs).find(|t| t.dtype() != DType::F32) {
                return Outcome::Unsupported(format!(
                    "{} computes in f32 only; this case uses {}",
                    case.op,
                    t.dtype()
                ));
            }
        }
        let got = match exec(&graph, &inputs) {
            Ok(o) => o,
            Err(e) => return Outcome::Failed(format!("data set {k}: execution failed: {e}")),
        };
        if got.len() != outputs.len() {
            return Outcome::Failed(format!(
                "data set {k}: {} outputs, expected {}",
                got.len(),
                outputs.len()
            ));
        }
        for (i, (a, e)) in got.iter().zip(&outputs).enumerate() {
            if let Err(r) = compare(a, e) {
                return Outcome::Failed(format!("data set {k}, output {i}: {r}"));
            }
        }
    }
    Outcome::Passed
}

/// Runs every supported case under `dir` (see [`run_case`]).
pub fn run_all<F>(dir: &Path, exec: &F) -> Result<Vec<CaseResult>, ModelError>
where
    F: Fn(&Graph, &[Tensor]) -> Result<Vec<Tensor>, String>,
{
    Ok(list_cases(dir)?
        .into_iter()
        .map(|case| {
            let outcome = run_case(&case, exec);
            tracing::debug!(case = %case.name, ?outcome, "node test");
            CaseResult { case, outcome }
        })
        .collect())
}

/// Counts of one op's cases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpSummary {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
    /// Cases reef cannot represent.
    pub unsupported: usize,
}

/// Per-op counts, keyed by op name.
pub fn summarize(results: &[CaseResult]) -> BTreeMap<&'static str, OpSummary> {
    let mut m: BTreeMap<&'static str, OpSummary> = BTreeMap::new();
    for r in results {
        let s = m.entry(r.case.op).or_default();
        match r.outcome {
            Outcome::Passed => s.passed += 1,
            Outcome::Failed(_) => s.failed += 1,
            Outcome::Unsupported(_) => s.unsupported += 1,
        }
    }
    m
}

/// The per-op summary as text, one line per op
/// ("op: N passed, M failed, K unsupported") plus a total line.
pub struct Summary<'a>(pub &'a [CaseResult]);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut total = OpSummary::default();
        for (op, s) in summarize(self.0) {
            writeln!(
                f,
                "{op}: {} passed, {} failed, {} unsupported",
                s.passed, s.failed, s.unsupported
            )?;
            total.passed += s.passed;
            total.failed += s.failed;
            total.unsupported += s.unsupported;
        }
        write!(
            f,
            "total: {} passed, {} failed, {} unsupported",
            total.passed, total.failed, total.unsupported
        )
    }
}

/// Prints the per-op summary, then each failed case with its reason.
pub fn print_summary(results: &[CaseResult]) {
    println!("{}", Summary(results));
    for r in results {
        if let Outcome::Failed(why) = &r.outcome {
            println!("FAILED {}: {why}", r.case.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names_map_to_ops() {
        assert_eq!(op_for_case("test_conv_with_strides_padding"), Some("Conv"));
        assert_eq!(op_for_case("test_convtranspose"), Some("ConvTranspose"));
        assert_eq!(op_for_case("test_convinteger_with_padding"), None);
        assert_eq!(op_for_case("test_exp"), Some("Exp"));
        assert_eq!(op_for_case("test_expand_dim_changed"), Some("Expand"));
        assert_eq!(op_for_case("test_less_equal"), Some("LessOrEqual"));
        assert_eq!(
            op_for_case("test_greater_equal_bcast"),
            Some("GreaterOrEqual")
        );
        assert_eq!(op_for_case("test_less_equal_expanded"), None);
        assert_eq!(op_for_case("test_less_bcast"), Some("Less"));
        assert_eq!(op_for_case("test_constant_pad"), Some("Pad"));
        assert_eq!(op_for_case("test_constant"), Some("Constant"));
        assert_eq!(
            op_for_case("test_constantofshape_int_zeros"),
            Some("ConstantOfShape")
        );
        assert_eq!(op_for_case("test_softmax_axis_0"), Some("Softmax"));
        assert_eq!(op_for_case("test_softmax_axis_0_expanded"), None);
        assert_eq!(
            op_for_case("test_gather_elements_0"),
            Some("GatherElements")
        );
        assert_eq!(op_for_case("test_gather_0"), Some("Gather"));
        assert_eq!(op_for_case("test_matmulinteger"), None);
    }

    #[test]
    fn compare_uses_tolerances() {
        let e = Tensor::f32(vec![2], vec![1.0, 100.0]).unwrap();
        assert!(compare(&Tensor::f32(vec![2], vec![1.000005, 100.05]).unwrap(), &e).is_ok());
        assert!(compare(&Tensor::f32(vec![2], vec![1.01, 100.0]).unwrap(), &e).is_err());
        assert!(compare(&Tensor::f32(vec![1, 2], vec![1.0, 100.0]).unwrap(), &e).is_err());
        let i = Tensor::i64_vec(&[1, 2]);
        assert!(compare(&i, &i).is_ok());
        assert!(compare(&Tensor::i64_vec(&[1, 3]), &i).is_err());
    }
}
