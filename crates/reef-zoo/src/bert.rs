//! BERT encoder (Hugging Face transformers `BertModel` with pooler, eager
//! attention, eval). Parameter names match its `state_dict`; linear weights
//! keep PyTorch's `[out, in]` layout and run as `Gemm(trans_b=1)` on the
//! hidden states flattened to `[batch·seq, hidden]`.
//!
//! Inputs are `input_ids` and `attention_mask` (`[batch, seq]`, i64). Token
//! type ids are all 0 and position ids are `0..seq`, as `BertModel` uses when
//! they are not given. Both lookups read constant rows, which the builder
//! would fold into a new constant detached from the parameter; they are
//! written as constant-mode `Pad`s with negative pads (crops) of the
//! embedding tables instead, so the tables stay live parameters.
//!
//! The extended attention mask is `(1 - mask) · f32::MIN` (transformers uses
//! `torch.finfo(float32).min`), added to the scaled scores before the
//! softmax: masked scores are finite, so a fully masked row gives a uniform
//! softmax, never NaN. GELU is the exact erf form, written as the nodes
//! PyTorch exports for it: `x · 0.5 · (1 + erf(x / √2))`.

use crate::init::Init;
use crate::nn::{Gain, Net};
use reef_model::{DType, ModelError, Op, Result, Tensor, ValueId};

/// A BERT configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Encoder layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Feed-forward width.
    pub intermediate: usize,
    /// Sequence length of the inputs.
    pub seq: usize,
    /// Rows of the position embedding table.
    pub max_position: usize,
    /// Rows of the token type embedding table.
    pub type_vocab: usize,
    /// LayerNorm epsilon.
    pub eps: f32,
}

impl BertConfig {
    /// bert-base-uncased's shape at sequence length 128.
    pub fn base() -> Self {
        BertConfig {
            vocab: 30522,
            hidden: 768,
            layers: 12,
            heads: 12,
            intermediate: 3072,
            seq: 128,
            max_position: 512,
            type_vocab: 2,
            eps: 1e-12,
        }
    }
}

const EMB_STD: f32 = 0.02;

fn layer_norm(n: &mut Net, x: ValueId, p: &str, h: usize, eps: f32) -> Result<ValueId> {
    let g = n.param(&format!("{p}.weight"), vec![h], Init::Uniform(0.9, 1.1))?;
    let b = n.param(&format!("{p}.bias"), vec![h], Init::Uniform(-0.05, 0.05))?;
    n.b.node(
        p,
        Op::LayerNorm {
            axis: -1,
            epsilon: eps,
        },
        &[x, g, b],
    )
}

fn gelu(n: &mut Net, x: ValueId, p: &str) -> Result<ValueId> {
    let sqrt2 = n.scalar("gelu.sqrt2", std::f32::consts::SQRT_2)?;
    let one = n.scalar("gelu.one", 1.0)?;
    let half = n.scalar("gelu.half", 0.5)?;
    let y = n.b.node(&format!("{p}.div"), Op::Div, &[x, sqrt2])?;
    let y = n.b.node(&format!("{p}.erf"), Op::Erf, &[y])?;
    let y = n.b.node(&format!("{p}.add"), Op::Add, &[y, one])?;
    let y = n.b.node(&format!("{p}.mul"), Op::Mul, &[x, y])?;
    n.b.node(&format!("{p}.mul_half"), Op::Mul, &[y, half])
}

/// Self-attention of one layer on `h` `[B·S, H]`; `mask` is `[B, 1, 1, S]`.
fn attention(n: &mut Net, h: ValueId, mask: ValueId, p: &str, cfg: &BertConfig) -> Result<ValueId> {
    let (hid, s, nh) = (cfg.hidden as i64, cfg.seq as i64, cfg.heads as i64);
    let d = hid / nh;
    let mut heads = Vec::new();
    for (which, perm) in [
        ("query", [0, 2, 1, 3]),
        ("key", [0, 2, 3, 1]),
        ("value", [0, 2, 1, 3]),
    ] {
        let q = format!("{p}.self.{which}");
        let y = n.linear(h, &q, cfg.hidden, cfg.hidden, Gain::Linear(1.0), None)?;
        let y = n.reshape(y, &format!("{q}.split"), &[-1, s, nh, d])?;
        heads.push(n.transpose(y, &format!("{q}.heads"), &perm)?);
    }
    let scores = n.b.node(
        &format!("{p}.self.scores"),
        Op::MatMul,
        &[heads[0], heads[1]],
    )?;
    let scale = n.scalar(&format!("{p}.self.scaling"), (d as f32).powf(-0.5))?;
    let scores =
        n.b.node(&format!("{p}.self.scale"), Op::Mul, &[scores, scale])?;
    let scores =
        n.b.node(&format!("{p}.self.mask"), Op::Add, &[scores, mask])?;
    let probs = n.b.node(
        &format!("{p}.self.softmax"),
        Op::Softmax { axis: -1 },
        &[scores],
    )?;
    let ctx =
        n.b.node(&format!("{p}.self.context"), Op::MatMul, &[probs, heads[2]])?;
    let ctx = n.transpose(ctx, &format!("{p}.self.merge"), &[0, 2, 1, 3])?;
    let ctx = n.reshape(ctx, &format!("{p}.self.flat"), &[-1, hid])?;
    let o = n.linear(
        ctx,
        &format!("{p}.output.dense"),
        cfg.hidden,
        cfg.hidden,
        Gain::Linear(1.0),
        None,
    )?;
    let o = n.add(o, h, &format!("{p}.output.residual"))?;
    layer_norm(n, o, &format!("{p}.output.LayerNorm"), cfg.hidden, cfg.eps)
}

fn encoder_layer(
    n: &mut Net,
    h: ValueId,
    mask: ValueId,
    p: &str,
    cfg: &BertConfig,
) -> Result<ValueId> {
    let a = attention(n, h, mask, &format!("{p}.attention"), cfg)?;
    let i = n.linear(
        a,
        &format!("{p}.intermediate.dense"),
        cfg.hidden,
        cfg.intermediate,
        Gain::Relu,
        None,
    )?;
    let i = gelu(n, i, &format!("{p}.intermediate.gelu"))?;
    let o = n.linear(
        i,
        &format!("{p}.output.dense"),
        cfg.intermediate,
        cfg.hidden,
        Gain::Linear(1.0),
        None,
    )?;
    let o = n.add(o, a, &format!("{p}.output.residual"))?;
    layer_norm(n, o, &format!("{p}.output.LayerNorm"), cfg.hidden, cfg.eps)
}

/// Builds the BERT graph: inputs `input_ids`, `attention_mask`
/// `[batch, seq]` i64; outputs `last_hidden_state` `[batch, seq, hidden]`
/// and `pooler_output` `[batch, hidden]`.
pub fn build(n: &mut Net, cfg: &BertConfig, batch: usize) -> Result<()> {
    if !cfg.hidden.is_multiple_of(cfg.heads)
        || cfg.seq > cfg.max_position
        || cfg.seq == 0
        || cfg.type_vocab == 0
    {
        return Err(ModelError::Graph(format!(
            "inconsistent BERT configuration {cfg:?}"
        )));
    }
    let (h, s) = (cfg.hidden, cfg.seq);
    let ids = n.input("input_ids", DType::I64, vec![batch, s])?;
    let mask = n.input("attention_mask", DType::I64, vec![batch, s])?;

    let word = n.param(
        "embeddings.word_embeddings.weight",
        vec![cfg.vocab, h],
        Init::Normal(EMB_STD),
    )?;
    let pos = n.param(
        "embeddings.position_embeddings.weight",
        vec![cfg.max_position, h],
        Init::Normal(EMB_STD),
    )?;
    let tt = n.param(
        "embeddings.token_type_embeddings.weight",
        vec![cfg.type_vocab, h],
        Init::Normal(EMB_STD),
    )?;
    let e = n.b.node(
        "embeddings.word_lookup",
        Op::Gather { axis: 0 },
        &[word, ids],
    )?;
    let tt0 = n.pad(
        tt,
        "embeddings.token_type_lookup",
        &[0, 0, 1 - cfg.type_vocab as i64, 0],
    )?;
    let pos_s = n.pad(
        pos,
        "embeddings.position_lookup",
        &[0, 0, s as i64 - cfg.max_position as i64, 0],
    )?;
    let e = n.add(e, tt0, "embeddings.add_token_type")?;
    let e = n.add(e, pos_s, "embeddings.add_position")?;
    let e = n.reshape(e, "embeddings.flat", &[-1, h as i64])?;
    let mut x = layer_norm(n, e, "embeddings.LayerNorm", h, cfg.eps)?;

    let m =
        n.b.node("mask.cast", Op::Cast { to: DType::F32 }, &[mask])?;
    let one = n.scalar("mask.one", 1.0)?;
    let min = n.scalar("mask.min", f32::MIN)?;
    let m = n.b.node("mask.invert", Op::Sub, &[one, m])?;
    let m = n.b.node("mask.scale", Op::Mul, &[m, min])?;
    let m = n.reshape(m, "mask.extended", &[-1, 1, 1, s as i64])?;

    for l in 0..cfg.layers {
        x = encoder_layer(n, x, m, &format!("encoder.layer.{l}"), cfg)?;
    }
    let shape = n.ints("last_hidden_state.shape", &[-1, s as i64, h as i64])?;
    let last = n.named(
        "last_hidden_state.reshape",
        Op::Reshape { allowzero: false },
        &[x, shape],
        "last_hidden_state",
    )?;
    let first_idx =
        n.b.initializer("pooler.first_token", Tensor::i64(vec![], vec![0])?)?;
    let first =
        n.b.node("pooler.first", Op::Gather { axis: 1 }, &[last, first_idx])?;
    let p = n.linear(first, "pooler.dense", h, h, Gain::Linear(1.0), None)?;
    let pooled = n.named("pooler.activation", Op::Tanh, &[p], "pooler_output")?;
    n.output(last);
    n.output(pooled);
    Ok(())
}
