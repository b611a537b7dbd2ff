//! Selftest graphs for GEMMs of 128 or more rows and columns: each B operand
//! mode of the matmul kernels (a weight stored K-major, activations along N,
//! a transposed activation, and odd widths that gather) with partial tiles
//! on both axes, and weights stored [K, N] that the GPU stores transposed
//! (`REEF_K_MAJOR_WEIGHTS`). The load-time rules run them on 64 x 64 tiles; the self-test's
//! tactic sweep also runs them on the 128 x 128 tiles the tuner may pick
//! (see [`crate::cases`]).

use crate::cases::{rand_tensor, Case};
use anyhow::Result;
use rand_chacha::ChaCha8Rng;
use reef_model::{DType, GraphBuilder, Op};

fn case(name: &str, b: GraphBuilder) -> Result<Case> {
    Ok(Case {
        name: name.into(),
        graph: b.finish()?,
        tf32: true,
    })
}

/// The large-GEMM cases.
pub fn all(r: &mut ChaCha8Rng) -> Result<Vec<Case>> {
    let mut v = vec![];
    {
        // A fully connected layer with the weight K-major (Gemm transB):
        // M = 260 (two whole 128-row tiles and 4 rows), N = 144, K = 136.
        let mut b = GraphBuilder::new("gemm_large_weight_kmajor");
        let x = b.input("x", DType::F32, vec![260, 136])?;
        let w = b.initializer("w", rand_tensor(r, &[144, 136]))?;
        let bias = b.initializer("b", rand_tensor(r, &[144]))?;
        let y = b.node(
            "gemm",
            Op::Gemm {
                alpha: 1.0,
                beta: 1.0,
                trans_a: false,
                trans_b: true,
            },
            &[x, w, bias],
        )?;
        b.output(y);
        v.push(case("gemm_large_weight_kmajor", b)?);
    }
    {
        // Batched activations, B along N: 2 x 3 products of 130 x 40 by 40 x 136.
        let mut b = GraphBuilder::new("matmul_large_batched");
        let x = b.input("x", DType::F32, vec![2, 3, 130, 40])?;
        let y = b.input("y", DType::F32, vec![2, 3, 40, 136])?;
        let z = b.node("mm", Op::MatMul, &[x, y])?;
        let z = b.node("relu", Op::Relu, &[z])?;
        b.output(z);
        v.push(case("matmul_large_batched", b)?);
    }
    {
        // Attention-like scores: B is a transposed activation (K-major),
        // K = 41: rows too odd for 16-byte copies of either operand.
        let mut b = GraphBuilder::new("matmul_large_transposed");
        let q = b.input("q", DType::F32, vec![2, 130, 41])?;
        let k = b.input("k", DType::F32, vec![2, 136, 41])?;
        let kt = b.node(
            "kt",
            Op::Transpose {
                perm: Some(vec![0, 2, 1]),
            },
            &[k],
        )?;
        let s = b.node("qk", Op::MatMul, &[q, kt])?;
        b.output(s);
        v.push(case("matmul_large_transposed", b)?);
    }
    {
        // A weight stored [K, N] (ONNX MatMul(x, W)), which the GPU stores
        // K-major: M = 132, N = 136, K = 148, with a bias and GELU after.
        let mut b = GraphBuilder::new("matmul_large_weight_nmajor");
        let x = b.input("x", DType::F32, vec![132, 148])?;
        let w = b.initializer("w", rand_tensor(r, &[148, 136]))?;
        let bias = b.initializer("b", rand_tensor(r, &[136]))?;
        let y = b.node("mm", Op::MatMul, &[x, w])?;
        let y = b.node("bias", Op::Add, &[y, bias])?;
        b.output(y);
        v.push(case("matmul_large_weight_nmajor", b)?);
    }
    {
        // Odd widths of an activation: B rows of 131 elements gather.
        let mut b = GraphBuilder::new("matmul_large_odd_activation");
        let x = b.input("x", DType::F32, vec![129, 33])?;
        let y = b.input("y", DType::F32, vec![33, 131])?;
        let z = b.node("mm", Op::MatMul, &[x, y])?;
        b.output(z);
        v.push(case("matmul_large_odd_activation", b)?);
    }
    {
        // Odd widths: B rows of 131 elements cannot take 16-byte copies
        // (gathered, or stored K-major in rows of 33).
        let mut b = GraphBuilder::new("matmul_large_odd");
        let x = b.input("x", DType::F32, vec![129, 33])?;
        let w = b.initializer("w", rand_tensor(r, &[33, 131]))?;
        let y = b.node("mm", Op::MatMul, &[x, w])?;
        b.output(y);
        v.push(case("matmul_large_odd", b)?);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use reef_cuda::geometry::GemmTile;
    use reef_cuda::launch::{Addresses, Builder};
    use reef_cuda::params::Params;
    use reef_cuda::tactics::{candidates, TileLimits};
    use reef_cuda::Precision;
    use std::collections::BTreeSet;

    const ADDR: Addresses = Addresses::PROBE;

    #[test]
    fn the_cases_cover_every_b_mode_with_a_128_by_128_candidate() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let limits = TileLimits {
            precision: Precision::Tf32,
            wgmma: false,
        };
        let mut modes = BTreeSet::new();
        for c in all(&mut rng).unwrap() {
            let plan = reef_plan::compile(&c.graph).unwrap();
            let built = Builder::new(&plan, ADDR, Precision::Tf32)
                .unwrap()
                .build_all()
                .unwrap();
            let gemm = built.gemms.iter().flatten().next().expect("a GEMM");
            let cands = candidates(&gemm.problem, gemm.rule, &limits, 132);
            assert!(
                cands.iter().any(|t| t.tile == GemmTile::Large),
                "{}: no 128 x 128 candidate in {cands:?}",
                c.name
            );
            assert!(
                !gemm.problem.m.is_multiple_of(128) && !gemm.problem.n.is_multiple_of(128),
                "{}: partial tiles",
                c.name
            );
            for l in &built.launches {
                if let Params::MatMul(m) = l.params {
                    modes.insert(m.b_vec);
                }
            }
        }
        assert_eq!(modes, BTreeSet::from([0, 1, 2, 3]));
    }
}
