//! VGG without batch norm (torchvision `vgg.py`): `features.N` are the
//! convs (each followed by an in-place ReLU at N+1) and max pools in
//! `nn.Sequential` order, then `AdaptiveAvgPool2d((7, 7))`, flatten and the
//! `classifier.{0,3,6}` linears (ReLU and Dropout between them; Dropout is
//! the identity in eval). At 224×224 input the features end at 7×7, so the
//! adaptive pool is a no-op and no node is emitted for it.

use crate::nn::{Conv, Gain, Net};
use reef_model::{DType, Result};

/// One entry of a VGG feature configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// 3×3 conv (padding 1, with bias) to this many channels, then ReLU.
    Conv(usize),
    /// 2×2 max pool, stride 2.
    Pool,
}

/// A VGG configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct VggConfig {
    /// Feature layers.
    pub features: Vec<Layer>,
    /// Output size of the adaptive average pool (torchvision: 7).
    pub pool_out: usize,
    /// Hidden width of the classifier (torchvision: 4096).
    pub hidden: usize,
    /// Classes.
    pub classes: usize,
    /// Input height and width.
    pub image: usize,
}

impl VggConfig {
    /// torchvision's VGG-19 (configuration "E").
    pub fn vgg19() -> Self {
        use Layer::{Conv as C, Pool as M};
        let features = vec![
            C(64),
            C(64),
            M,
            C(128),
            C(128),
            M,
            C(256),
            C(256),
            C(256),
            C(256),
            M,
            C(512),
            C(512),
            C(512),
            C(512),
            M,
            C(512),
            C(512),
            C(512),
            C(512),
            M,
        ];
        VggConfig {
            features,
            pool_out: 7,
            hidden: 4096,
            classes: 1000,
            image: 224,
        }
    }
}

/// Builds the VGG graph: input `input` `[batch, 3, image, image]`, output
/// `logits` `[batch, classes]`.
pub fn build(n: &mut Net, cfg: &VggConfig, batch: usize) -> Result<()> {
    let mut y = n.input("input", DType::F32, vec![batch, 3, cfg.image, cfg.image])?;
    let mut c = 3;
    let mut idx = 0;
    for layer in &cfg.features {
        match *layer {
            Layer::Conv(out) => {
                let conv = Conv {
                    bias: true,
                    ..Conv::square(c, out, 3, 1, 1)
                };
                y = n.conv(y, &format!("features.{idx}"), conv, Gain::Relu)?;
                y = n.relu(y, &format!("features.{}", idx + 1))?;
                c = out;
                idx += 2;
            }
            Layer::Pool => {
                y = n.max_pool(y, &format!("features.{idx}"), 2, 2, 0)?;
                idx += 1;
            }
        }
    }
    let y = n.adaptive_avg_pool(y, "avgpool", cfg.pool_out)?;
    let y = n.flatten(y, "flatten")?;
    let flat = c * cfg.pool_out * cfg.pool_out;
    let y = n.linear(y, "classifier.0", flat, cfg.hidden, Gain::Relu, None)?;
    let y = n.relu(y, "classifier.1")?;
    let y = n.linear(y, "classifier.3", cfg.hidden, cfg.hidden, Gain::Relu, None)?;
    let y = n.relu(y, "classifier.4")?;
    let logits = n.linear(
        y,
        "classifier.6",
        cfg.hidden,
        cfg.classes,
        Gain::Linear(1.0),
        Some("logits"),
    )?;
    n.output(logits);
    Ok(())
}
