//! reef's built-in model zoo: torchvision and Hugging Face transformers
//! architectures rebuilt in reef's IR with seeded random weights.
//!
//! Every model has exactly the upstream architecture (eval mode) and names
//! its parameters like the upstream `state_dict` (`conv1.weight`,
//! `layer1.0.downsample.0.weight`, `encoder.layer.0.attention.self.query.weight`,
//! ...), so weights move between reef and PyTorch by name through
//! safetensors (see `reef_model::weights` and `scripts/torch_zoo.py`).
//! `*_tiny` variants run the same builders at a few channels and small
//! inputs for fast tests.
//!
//! ```no_run
//! let g = reef_zoo::build("resnet18", 4, 0).unwrap();
//! assert_eq!(g.shape(g.outputs[0]), &[4, 1000]);
//! ```

mod bert;
mod densenet;
mod inception;
mod init;
mod mobilenet;
mod mobilenet_v3;
mod nn;
mod resnet;
mod vgg;

use bert::BertConfig;
use densenet::DenseNetConfig;
use inception::InceptionConfig;
use mobilenet::MobileNetConfig;
use mobilenet_v3::MobileNetV3Config;
use nn::Net;
use reef_model::{DType, Graph, ModelError, Result};
use resnet::{Block, ResNetConfig};
use std::fmt;
use vgg::{Layer, VggConfig};

/// What a model computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    /// Image in (`[batch, 3, H, W]` f32, normalised), class logits out.
    ImageClassification,
    /// Token ids and attention mask in, hidden states and pooled output out.
    TextEncoding,
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Task::ImageClassification => "image-classification",
            Task::TextEncoding => "text-encoding",
        })
    }
}

/// A model input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Name (the graph's value name).
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape at batch 1 (dim 0 is the batch).
    pub shape: Vec<usize>,
    /// For integer inputs, the valid values `lo..hi` (token ids below the
    /// vocabulary size, mask values 0 and 1); `None` for real-valued tensors.
    pub int_range: Option<(i64, i64)>,
}

/// Description of a zoo model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZooInfo {
    /// Zoo name.
    pub name: &'static str,
    /// One-line description.
    pub description: &'static str,
    /// Task.
    pub task: Task,
    /// Inputs in graph order, at batch 1.
    pub inputs: Vec<TensorSpec>,
    /// Outputs in graph order, at batch 1.
    pub outputs: Vec<TensorSpec>,
}

enum Arch {
    ResNet(ResNetConfig),
    Vgg(VggConfig),
    DenseNet(DenseNetConfig),
    Inception(InceptionConfig),
    MobileNet(MobileNetConfig),
    MobileNetV3(MobileNetV3Config),
    Bert(BertConfig),
}

const NAMES: &[&str] = &[
    "resnet18",
    "resnet50",
    "resnet152",
    "vgg19",
    "densenet201",
    "inception_v3",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "bert_base",
    "resnet_tiny",
    "vgg_tiny",
    "densenet_tiny",
    "inception_tiny",
    "mobilenet_tiny",
    "mobilenet_v3_tiny",
    "bert_tiny",
];

fn arch(name: &str) -> Option<(&'static str, Arch)> {
    use Layer::{Conv as C, Pool as M};
    Some(match name {
        "resnet18" => (
            "ResNet-18 (torchvision), 224x224",
            Arch::ResNet(ResNetConfig::torchvision(Block::Basic, [2, 2, 2, 2])),
        ),
        "resnet50" => (
            "ResNet-50 (torchvision), 224x224",
            Arch::ResNet(ResNetConfig::torchvision(Block::Bottleneck, [3, 4, 6, 3])),
        ),
        "resnet152" => (
            "ResNet-152 (torchvision), 224x224",
            Arch::ResNet(ResNetConfig::torchvision(Block::Bottleneck, [3, 8, 36, 3])),
        ),
        "vgg19" => (
            "VGG-19 without batch norm (torchvision), 224x224",
            Arch::Vgg(VggConfig::vgg19()),
        ),
        "densenet201" => (
            "DenseNet-201 (torchvision), 224x224",
            Arch::DenseNet(DenseNetConfig::densenet201()),
        ),
        "inception_v3" => (
            "Inception v3 (torchvision, eval, no aux logits), 299x299",
            Arch::Inception(InceptionConfig {
                div: 1,
                classes: 1000,
                image: 299,
            }),
        ),
        "mobilenet_v2" => (
            "MobileNet V2 (torchvision), 224x224",
            Arch::MobileNet(MobileNetConfig::mobilenet_v2()),
        ),
        "mobilenet_v3_large" => (
            "MobileNet V3 large (torchvision), 224x224",
            Arch::MobileNetV3(MobileNetV3Config::large()),
        ),
        "bert_base" => (
            "BERT-base encoder with pooler (transformers BertModel), seq 128",
            Arch::Bert(BertConfig::base()),
        ),
        "resnet_tiny" => (
            "tiny basic-block ResNet (widths 8-64), 32x32, 10 classes",
            Arch::ResNet(ResNetConfig {
                block: Block::Basic,
                layers: [2, 1, 1, 1],
                stem: 8,
                widths: [8, 16, 32, 64],
                classes: 10,
                image: 32,
            }),
        ),
        "vgg_tiny" => (
            "tiny VGG (3 stages, 2x2 adaptive pool, 64-wide classifier), 32x32, 10 classes",
            Arch::Vgg(VggConfig {
                features: vec![C(8), M, C(16), M, C(32), C(32), M],
                pool_out: 2,
                hidden: 64,
                classes: 10,
                image: 32,
            }),
        ),
        "densenet_tiny" => (
            "tiny DenseNet (growth 8, blocks 2-2-2), 32x32, 10 classes",
            Arch::DenseNet(DenseNetConfig {
                growth: 8,
                blocks: vec![2, 2, 2],
                init_features: 16,
                bn_size: 2,
                classes: 10,
                image: 32,
            }),
        ),
        "inception_tiny" => (
            "Inception v3 topology at 1/8 width, 75x75, 10 classes",
            Arch::Inception(InceptionConfig {
                div: 8,
                classes: 10,
                image: 75,
            }),
        ),
        "mobilenet_tiny" => (
            "tiny MobileNet V2 (3 stages), 32x32, 10 classes",
            Arch::MobileNet(MobileNetConfig {
                stem: 32,
                settings: vec![[1, 8, 1, 1], [6, 16, 2, 2], [6, 24, 2, 2]],
                last: 1280,
                classes: 10,
                image: 32,
            }),
        ),
        "mobilenet_v3_tiny" => (
            "tiny MobileNet V3 (5 blocks, SE, Hardswish), 32x32, 10 classes",
            Arch::MobileNetV3(MobileNetV3Config::tiny()),
        ),
        "bert_tiny" => (
            "tiny BERT (2 layers, hidden 64, 2 heads, vocab 1000), seq 16",
            Arch::Bert(BertConfig {
                vocab: 1000,
                hidden: 64,
                layers: 2,
                heads: 2,
                intermediate: 256,
                seq: 16,
                max_position: 64,
                type_vocab: 2,
                eps: 1e-12,
            }),
        ),
        _ => return None,
    })
}

/// Names of all zoo models (full-size first, then the `*_tiny` variants).
pub fn names() -> &'static [&'static str] {
    NAMES
}

fn spec(name: &str, dtype: DType, shape: Vec<usize>, int_range: Option<(i64, i64)>) -> TensorSpec {
    TensorSpec {
        name: name.to_string(),
        dtype,
        shape,
        int_range,
    }
}

/// Describes a zoo model without building it; `None` for unknown names.
pub fn info(name: &str) -> Option<ZooInfo> {
    let (description, a) = arch(name)?;
    let name = *NAMES.iter().find(|&&n| n == name)?;
    let image = |size: usize, classes: usize| ZooInfo {
        name,
        description,
        task: Task::ImageClassification,
        inputs: vec![spec("input", DType::F32, vec![1, 3, size, size], None)],
        outputs: vec![spec("logits", DType::F32, vec![1, classes], None)],
    };
    Some(match a {
        Arch::ResNet(c) => image(c.image, c.classes),
        Arch::Vgg(c) => image(c.image, c.classes),
        Arch::DenseNet(c) => image(c.image, c.classes),
        Arch::Inception(c) => image(c.image, c.classes),
        Arch::MobileNet(c) => image(c.image, c.classes),
        Arch::MobileNetV3(c) => image(c.image, c.classes),
        Arch::Bert(c) => ZooInfo {
            name,
            description,
            task: Task::TextEncoding,
            inputs: vec![
                spec(
                    "input_ids",
                    DType::I64,
                    vec![1, c.seq],
                    Some((0, c.vocab as i64)),
                ),
                spec("attention_mask", DType::I64, vec![1, c.seq], Some((0, 2))),
            ],
            outputs: vec![
                spec(
                    "last_hidden_state",
                    DType::F32,
                    vec![1, c.seq, c.hidden],
                    None,
                ),
                spec("pooler_output", DType::F32, vec![1, c.hidden], None),
            ],
        },
    })
}

/// Builds zoo model `name` for `batch` with parameters drawn from `seed`
/// (each parameter depends only on the seed and its name, so graphs built at
/// different batch sizes share their weights). Unknown names give
/// [`ModelError::UnknownModel`].
pub fn build(name: &str, batch: usize, seed: u64) -> Result<Graph> {
    let (_, a) = arch(name).ok_or_else(|| ModelError::UnknownModel(name.to_string()))?;
    if batch == 0 {
        return Err(ModelError::Graph(format!(
            "zoo model '{name}': batch must be at least 1"
        )));
    }
    let mut n = Net::new(name, seed);
    match &a {
        Arch::ResNet(c) => resnet::build(&mut n, c, batch)?,
        Arch::Vgg(c) => vgg::build(&mut n, c, batch)?,
        Arch::DenseNet(c) => densenet::build(&mut n, c, batch)?,
        Arch::Inception(c) => inception::build(&mut n, c, batch)?,
        Arch::MobileNet(c) => mobilenet::build(&mut n, c, batch)?,
        Arch::MobileNetV3(c) => mobilenet_v3::build(&mut n, c, batch)?,
        Arch::Bert(c) => bert::build(&mut n, c, batch)?,
    }
    n.b.finish()
}
