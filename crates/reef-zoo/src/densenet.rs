//! DenseNet (torchvision `densenet.py`): stem `features.conv0/norm0/pool0`,
//! dense blocks `features.denseblockX.denselayerY` (pre-activation
//! BN-ReLU-conv1×1-BN-ReLU-conv3×3, output concatenated to the block's
//! features), transitions `features.transitionX` (BN-ReLU-conv1×1-avgpool2),
//! final `features.norm5`, ReLU, global average pool and `classifier`.

use crate::nn::{Conv, Gain, Net};
use reef_model::{DType, PoolKind, Result, ValueId};

const EPS: f32 = 1e-5;

/// A DenseNet configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseNetConfig {
    /// Channels each dense layer adds.
    pub growth: usize,
    /// Dense layers per block.
    pub blocks: Vec<usize>,
    /// Stem output channels.
    pub init_features: usize,
    /// Bottleneck width factor (1×1 conv outputs `bn_size * growth`).
    pub bn_size: usize,
    /// Classes.
    pub classes: usize,
    /// Input height and width.
    pub image: usize,
}

impl DenseNetConfig {
    /// torchvision's DenseNet-201.
    pub fn densenet201() -> Self {
        DenseNetConfig {
            growth: 32,
            blocks: vec![6, 12, 48, 32],
            init_features: 64,
            bn_size: 4,
            classes: 1000,
            image: 224,
        }
    }
}

fn dense_layer(
    n: &mut Net,
    x: ValueId,
    p: &str,
    cin: usize,
    cfg: &DenseNetConfig,
) -> Result<ValueId> {
    let mid = cfg.bn_size * cfg.growth;
    let y = n.bn(x, &format!("{p}.norm1"), EPS)?;
    let y = n.relu(y, &format!("{p}.relu1"))?;
    let y = n.conv(
        y,
        &format!("{p}.conv1"),
        Conv::square(cin, mid, 1, 1, 0),
        Gain::Relu,
    )?;
    let y = n.bn(y, &format!("{p}.norm2"), EPS)?;
    let y = n.relu(y, &format!("{p}.relu2"))?;
    n.conv(
        y,
        &format!("{p}.conv2"),
        Conv::square(mid, cfg.growth, 3, 1, 1),
        Gain::Relu,
    )
}

/// Builds the DenseNet graph: input `input` `[batch, 3, image, image]`,
/// output `logits` `[batch, classes]`.
pub fn build(n: &mut Net, cfg: &DenseNetConfig, batch: usize) -> Result<()> {
    let x = n.input("input", DType::F32, vec![batch, 3, cfg.image, cfg.image])?;
    let y = n.conv(
        x,
        "features.conv0",
        Conv::square(3, cfg.init_features, 7, 2, 3),
        Gain::Relu,
    )?;
    let y = n.bn(y, "features.norm0", EPS)?;
    let y = n.relu(y, "features.relu0")?;
    let mut y = n.max_pool(y, "features.pool0", 3, 2, 1)?;
    let mut c = cfg.init_features;
    for (bi, &layers) in cfg.blocks.iter().enumerate() {
        let block = format!("features.denseblock{}", bi + 1);
        for li in 0..layers {
            let p = format!("{block}.denselayer{}", li + 1);
            let new = dense_layer(n, y, &p, c, cfg)?;
            y = n.concat(&[y, new], &format!("{p}.concat"))?;
            c += cfg.growth;
        }
        if bi + 1 < cfg.blocks.len() {
            let p = format!("features.transition{}", bi + 1);
            let t = n.bn(y, &format!("{p}.norm"), EPS)?;
            let t = n.relu(t, &format!("{p}.relu"))?;
            let t = n.conv(
                t,
                &format!("{p}.conv"),
                Conv::square(c, c / 2, 1, 1, 0),
                Gain::Relu,
            )?;
            y = n.pool(t, &format!("{p}.pool"), PoolKind::Avg, 2, 2, 0, true)?;
            c /= 2;
        }
    }
    let y = n.bn(y, "features.norm5", EPS)?;
    let y = n.relu(y, "relu")?;
    let y = n.adaptive_avg_pool(y, "avgpool", 1)?;
    let y = n.flatten(y, "flatten")?;
    let logits = n.linear(
        y,
        "classifier",
        c,
        cfg.classes,
        Gain::Linear(1.0),
        Some("logits"),
    )?;
    n.output(logits);
    Ok(())
}
