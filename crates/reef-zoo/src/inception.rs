//! Inception v3 (torchvision `inception.py`, eval graph with
//! `transform_input=False` and no `AuxLogits`). Every conv is a
//! `BasicConv2d` (conv without bias, batch norm with eps 0.001, ReLU) named
//! `{block}.{branch}.conv` / `.bn`. Branch average pools are
//! `F.avg_pool2d(x, 3, stride=1, padding=1)` (padding counted, PyTorch's
//! default); the reduction blocks use `F.max_pool2d(x, 3, stride=2)`.
//!
//! `div` divides every channel count of the network (1 for the real model;
//! the tiny variant keeps the full topology at 1/8 width).

use crate::nn::{Conv, Net};
use reef_model::{DType, PoolKind, Result, ValueId};

const EPS: f32 = 1e-3;

/// An Inception v3 configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct InceptionConfig {
    /// Channel divisor (1 = torchvision).
    pub div: usize,
    /// Classes.
    pub classes: usize,
    /// Input height and width (torchvision: 299; at least 75).
    pub image: usize,
}

struct B<'a> {
    n: &'a mut Net,
    div: usize,
}

impl B<'_> {
    fn c(&self, ch: usize) -> usize {
        ch / self.div
    }

    /// `BasicConv2d(cin, cout, kernel, stride, padding)` with full-width
    /// channel counts (the arguments mirror torchvision's constructor calls).
    #[allow(clippy::too_many_arguments)]
    fn basic(
        &mut self,
        x: ValueId,
        p: &str,
        cin: usize,
        cout: usize,
        k: [usize; 2],
        stride: usize,
        pad: [usize; 2],
    ) -> Result<ValueId> {
        let conv = Conv {
            cin: self.c(cin),
            cout: self.c(cout),
            kernel: k,
            stride,
            pad,
            groups: 1,
            bias: false,
        };
        self.n.conv_bn_relu(x, p, [".conv", ".bn"], conv, EPS)
    }

    /// A square-kernel `BasicConv2d`.
    #[allow(clippy::too_many_arguments)]
    fn sq(
        &mut self,
        x: ValueId,
        p: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<ValueId> {
        self.basic(x, p, cin, cout, [k, k], stride, [pad, pad])
    }

    fn avg3(&mut self, x: ValueId, p: &str) -> Result<ValueId> {
        self.n
            .pool(x, &format!("{p}.avgpool"), PoolKind::Avg, 3, 1, 1, true)
    }

    fn max3(&mut self, x: ValueId, p: &str) -> Result<ValueId> {
        self.n.max_pool(x, &format!("{p}.maxpool"), 3, 2, 0)
    }

    fn cat(&mut self, xs: &[ValueId], name: &str) -> Result<ValueId> {
        self.n.concat(xs, name)
    }

    fn a(&mut self, x: ValueId, p: &str, cin: usize, pool: usize) -> Result<ValueId> {
        let b1 = self.sq(x, &format!("{p}.branch1x1"), cin, 64, 1, 1, 0)?;
        let b5 = self.sq(x, &format!("{p}.branch5x5_1"), cin, 48, 1, 1, 0)?;
        let b5 = self.sq(b5, &format!("{p}.branch5x5_2"), 48, 64, 5, 1, 2)?;
        let b3 = self.sq(x, &format!("{p}.branch3x3dbl_1"), cin, 64, 1, 1, 0)?;
        let b3 = self.sq(b3, &format!("{p}.branch3x3dbl_2"), 64, 96, 3, 1, 1)?;
        let b3 = self.sq(b3, &format!("{p}.branch3x3dbl_3"), 96, 96, 3, 1, 1)?;
        let bp = self.avg3(x, p)?;
        let bp = self.sq(bp, &format!("{p}.branch_pool"), cin, pool, 1, 1, 0)?;
        self.cat(&[b1, b5, b3, bp], p)
    }

    fn b(&mut self, x: ValueId, p: &str, cin: usize) -> Result<ValueId> {
        let b3 = self.sq(x, &format!("{p}.branch3x3"), cin, 384, 3, 2, 0)?;
        let bd = self.sq(x, &format!("{p}.branch3x3dbl_1"), cin, 64, 1, 1, 0)?;
        let bd = self.sq(bd, &format!("{p}.branch3x3dbl_2"), 64, 96, 3, 1, 1)?;
        let bd = self.sq(bd, &format!("{p}.branch3x3dbl_3"), 96, 96, 3, 2, 0)?;
        let bp = self.max3(x, p)?;
        self.cat(&[b3, bd, bp], p)
    }

    fn c7(&mut self, x: ValueId, p: &str, cin: usize, c7: usize) -> Result<ValueId> {
        let (k17, k71) = ([1, 7], [7, 1]);
        let (p17, p71) = ([0, 3], [3, 0]);
        let b1 = self.sq(x, &format!("{p}.branch1x1"), cin, 192, 1, 1, 0)?;
        let b7 = self.sq(x, &format!("{p}.branch7x7_1"), cin, c7, 1, 1, 0)?;
        let b7 = self.basic(b7, &format!("{p}.branch7x7_2"), c7, c7, k17, 1, p17)?;
        let b7 = self.basic(b7, &format!("{p}.branch7x7_3"), c7, 192, k71, 1, p71)?;
        let bd = self.sq(x, &format!("{p}.branch7x7dbl_1"), cin, c7, 1, 1, 0)?;
        let bd = self.basic(bd, &format!("{p}.branch7x7dbl_2"), c7, c7, k71, 1, p71)?;
        let bd = self.basic(bd, &format!("{p}.branch7x7dbl_3"), c7, c7, k17, 1, p17)?;
        let bd = self.basic(bd, &format!("{p}.branch7x7dbl_4"), c7, c7, k71, 1, p71)?;
        let bd = self.basic(bd, &format!("{p}.branch7x7dbl_5"), c7, 192, k17, 1, p17)?;
        let bp = self.avg3(x, p)?;
        let bp = self.sq(bp, &format!("{p}.branch_pool"), cin, 192, 1, 1, 0)?;
        self.cat(&[b1, b7, bd, bp], p)
    }

    fn d(&mut self, x: ValueId, p: &str, cin: usize) -> Result<ValueId> {
        let b3 = self.sq(x, &format!("{p}.branch3x3_1"), cin, 192, 1, 1, 0)?;
        let b3 = self.sq(b3, &format!("{p}.branch3x3_2"), 192, 320, 3, 2, 0)?;
        let b7 = self.sq(x, &format!("{p}.branch7x7x3_1"), cin, 192, 1, 1, 0)?;
        let b7 = self.basic(
            b7,
            &format!("{p}.branch7x7x3_2"),
            192,
            192,
            [1, 7],
            1,
            [0, 3],
        )?;
        let b7 = self.basic(
            b7,
            &format!("{p}.branch7x7x3_3"),
            192,
            192,
            [7, 1],
            1,
            [3, 0],
        )?;
        let b7 = self.sq(b7, &format!("{p}.branch7x7x3_4"), 192, 192, 3, 2, 0)?;
        let bp = self.max3(x, p)?;
        self.cat(&[b3, b7, bp], p)
    }

    fn e(&mut self, x: ValueId, p: &str, cin: usize) -> Result<ValueId> {
        let b1 = self.sq(x, &format!("{p}.branch1x1"), cin, 320, 1, 1, 0)?;
        let b3 = self.sq(x, &format!("{p}.branch3x3_1"), cin, 384, 1, 1, 0)?;
        let b3a = self.basic(
            b3,
            &format!("{p}.branch3x3_2a"),
            384,
            384,
            [1, 3],
            1,
            [0, 1],
        )?;
        let b3b = self.basic(
            b3,
            &format!("{p}.branch3x3_2b"),
            384,
            384,
            [3, 1],
            1,
            [1, 0],
        )?;
        let b3 = self.cat(&[b3a, b3b], &format!("{p}.branch3x3"))?;
        let bd = self.sq(x, &format!("{p}.branch3x3dbl_1"), cin, 448, 1, 1, 0)?;
        let bd = self.sq(bd, &format!("{p}.branch3x3dbl_2"), 448, 384, 3, 1, 1)?;
        let bda = self.basic(
            bd,
            &format!("{p}.branch3x3dbl_3a"),
            384,
            384,
            [1, 3],
            1,
            [0, 1],
        )?;
        let bdb = self.basic(
            bd,
            &format!("{p}.branch3x3dbl_3b"),
            384,
            384,
            [3, 1],
            1,
            [1, 0],
        )?;
        let bd = self.cat(&[bda, bdb], &format!("{p}.branch3x3dbl"))?;
        let bp = self.avg3(x, p)?;
        let bp = self.sq(bp, &format!("{p}.branch_pool"), cin, 192, 1, 1, 0)?;
        self.cat(&[b1, b3, bd, bp], p)
    }
}

/// Builds the Inception v3 graph: input `input` `[batch, 3, image, image]`,
/// output `logits` `[batch, classes]`.
pub fn build(n: &mut Net, cfg: &InceptionConfig, batch: usize) -> Result<()> {
    let x = n.input("input", DType::F32, vec![batch, 3, cfg.image, cfg.image])?;
    let mut b = B { n, div: cfg.div };
    // The image has 3 channels at every width: 3 * div divides back to 3.
    let y = b.sq(x, "Conv2d_1a_3x3", 3 * cfg.div, 32, 3, 2, 0)?;
    let y = b.sq(y, "Conv2d_2a_3x3", 32, 32, 3, 1, 0)?;
    let y = b.sq(y, "Conv2d_2b_3x3", 32, 64, 3, 1, 1)?;
    let y = b.n.max_pool(y, "maxpool1", 3, 2, 0)?;
    let y = b.sq(y, "Conv2d_3b_1x1", 64, 80, 1, 1, 0)?;
    let y = b.sq(y, "Conv2d_4a_3x3", 80, 192, 3, 1, 0)?;
    let y = b.n.max_pool(y, "maxpool2", 3, 2, 0)?;
    let y = b.a(y, "Mixed_5b", 192, 32)?;
    let y = b.a(y, "Mixed_5c", 256, 64)?;
    let y = b.a(y, "Mixed_5d", 288, 64)?;
    let y = b.b(y, "Mixed_6a", 288)?;
    let y = b.c7(y, "Mixed_6b", 768, 128)?;
    let y = b.c7(y, "Mixed_6c", 768, 160)?;
    let y = b.c7(y, "Mixed_6d", 768, 160)?;
    let y = b.c7(y, "Mixed_6e", 768, 192)?;
    let y = b.d(y, "Mixed_7a", 768)?;
    let y = b.e(y, "Mixed_7b", 1280)?;
    let y = b.e(y, "Mixed_7c", 2048)?;
    let y = n.adaptive_avg_pool(y, "avgpool", 1)?;
    let y = n.flatten(y, "flatten")?;
    let logits = n.linear(
        y,
        "fc",
        2048 / cfg.div,
        cfg.classes,
        crate::nn::Gain::Linear(1.0),
        Some("logits"),
    )?;
    n.output(logits);
    Ok(())
}
