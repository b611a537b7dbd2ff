//! `Tensor::bytes` borrows the element buffer where it can and always gives
//! the bytes `Tensor::from_bytes` decodes back to the same tensor.

use rand::{Rng, SeedableRng};
use reef_model::{DType, Tensor, TensorData};
use std::borrow::Cow;

#[test]
fn bytes_borrow_numeric_buffers_and_round_trip_every_dtype() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(rand::rng().random());
    let n = rng.random_range(1..200);
    let shape = vec![n];
    let f: Vec<f32> = (0..n).map(|_| rng.random_range(-1e3f32..1e3)).collect();
    let tensors = [
        Tensor::f32(shape.clone(), f).unwrap(),
        Tensor::i64(shape.clone(), (0..n).map(|_| rng.random()).collect()).unwrap(),
        Tensor::i32(shape.clone(), (0..n).map(|_| rng.random()).collect()).unwrap(),
        Tensor::bool(shape.clone(), (0..n).map(|_| rng.random()).collect()).unwrap(),
    ];
    for t in &tensors {
        let b = t.bytes();
        assert_eq!(b.len(), n * t.dtype().size(), "{t:?}");
        match (t.dtype(), &b) {
            (DType::Bool, Cow::Owned(_)) => {}
            (DType::Bool, Cow::Borrowed(_)) => panic!("bool bytes cannot be borrowed"),
            (_, Cow::Borrowed(s)) => {
                // The very buffer of the tensor: no copy was made.
                let start = match &t.data {
                    TensorData::F32(v) => v.as_ptr() as *const u8,
                    TensorData::I64(v) => v.as_ptr() as *const u8,
                    TensorData::I32(v) => v.as_ptr() as *const u8,
                    TensorData::Bool(_) => unreachable!("matched above"),
                };
                assert_eq!(s.as_ptr(), start, "{t:?}");
            }
            (_, Cow::Owned(_)) => panic!("{t:?}: numeric bytes were copied"),
        }
        assert_eq!(&*b, t.to_bytes().as_slice());
        let back = Tensor::from_bytes(t.dtype(), shape.clone(), &b).unwrap();
        assert_eq!(&back, t);
    }
}
