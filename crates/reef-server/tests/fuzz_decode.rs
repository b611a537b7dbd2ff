//! Property tests of the request decoders on arbitrary input: whatever a
//! client sends (random bytes, or inference requests with random names,
//! datatypes, shapes, data and parameters), decoding answers `Ok` or a
//! `RequestError` and never panics or allocates what the request only
//! claims; every tensor it accepts holds exactly its shape's bytes. The
//! same for gRPC's raw and typed tensor contents.

use axum::http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use reef_model::tensor::numel;
use reef_sched::{HostPool, NoPin};
use reef_server::http::infer::{decode, HEADER_LENGTH};
use reef_server::proto::InferTensorContents;
use reef_server::shm::ShmRegistry;
use reef_server::tensor_codec::{
    parse_datatype, parse_shape, tensor_from_contents, tensor_from_raw, tensor_from_raw_in,
};
use serde_json::{json, Value};

mod support;

/// Dimensions as a client might send them: small, zero, negative or huge.
fn dim() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 0i64..6,
        1 => -3i64..0,
        1 => Just(i64::MAX),
        1 => Just(1i64 << 40),
        1 => Just(u32::MAX as i64),
    ]
}

fn datatype() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "FP32", "INT64", "INT32", "BOOL", "BYTES", "FP16", "UINT8", "fp32", "", "NOPE",
    ])
    .prop_map(str::to_string)
}

/// A JSON value of any kind, shallow.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<f32>().prop_map(|f| json!(f)),
        any::<i64>().prop_map(|i| json!(i)),
        any::<bool>().prop_map(|b| json!(b)),
        "[a-z]{0,4}".prop_map(|s| json!(s)),
        Just(Value::Null),
    ]
}

fn data() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::collection::vec(scalar(), 0..12).prop_map(Value::Array),
        prop::collection::vec(
            prop::collection::vec(scalar(), 0..4).prop_map(Value::Array),
            0..4
        )
        .prop_map(Value::Array),
        scalar(),
    ]
}

fn parameters() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(support::PARAM_KEYS.to_vec());
    prop::collection::btree_map(key.prop_map(str::to_string), scalar(), 0..3)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn input() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["a", "b", "x", ""]),
        datatype(),
        prop::collection::vec(dim(), 0..4),
        prop::option::of(data()),
        prop::option::of(parameters()),
    )
        .prop_map(|(name, dt, shape, data, params)| {
            let mut o = json!({ "name": name, "datatype": dt, "shape": shape });
            if let Some(d) = data {
                o["data"] = d;
            }
            if let Some(p) = params {
                o["parameters"] = p;
            }
            o
        })
}

fn request() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(input(), 0..4),
        prop::option::of(parameters()),
        prop::option::of(prop::collection::vec(
            ("[a-z]{0,2}", prop::option::of(parameters())),
            0..3,
        )),
    )
        .prop_map(|(inputs, params, outputs)| {
            let mut r = json!({ "inputs": inputs });
            if let Some(p) = params {
                r["parameters"] = p;
            }
            if let Some(o) = outputs {
                r["outputs"] = Value::Array(
                    o.into_iter()
                        .map(|(name, p)| match p {
                            Some(p) => json!({ "name": name, "parameters": p }),
                            None => json!({ "name": name }),
                        })
                        .collect(),
                );
            }
            r
        })
}

fn headers(json_len: Option<String>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(v) = json_len.and_then(|v| HeaderValue::from_str(&v).ok()) {
        h.insert(HEADER_LENGTH, v);
    }
    h
}

/// A pool of input buffers (not pinned: no GPU here) that takes tensors of
/// every size, reused from case to case.
fn pool() -> &'static HostPool {
    static POOL: std::sync::OnceLock<HostPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| HostPool::new(Box::new(NoPin), 64 << 20, 0))
}

/// Every accepted input holds exactly the bytes its shape and type need,
/// and decoding into the pool's buffers accepts and rejects the same
/// requests with the same tensors.
fn check_accepted(body: &[u8], h: &HeaderMap, shm: &ShmRegistry) {
    let plain = decode(h, body, shm, None);
    let pooled = decode(h, body, shm, Some(pool()));
    assert_eq!(
        plain.is_ok(),
        pooled.is_ok(),
        "the pool changed the verdict"
    );
    if let (Ok(req), Ok(in_pool)) = (plain, pooled) {
        // Bytes, not values: random bytes make NaNs, which equal nothing.
        let host = |v: &[(String, reef_sched::Input)]| -> Vec<(String, reef_model::Tensor)> {
            v.iter()
                .map(|(n, i)| (n.clone(), i.host().expect("decoded to host memory").clone()))
                .collect()
        };
        let (req_inputs, pool_inputs) = (host(&req.inputs), host(&in_pool.inputs));
        let view = |v: &[(String, reef_model::Tensor)]| -> Vec<_> {
            v.iter()
                .map(|(n, t)| (n.clone(), t.dtype(), t.shape.clone(), t.bytes().to_vec()))
                .collect()
        };
        assert_eq!(
            view(&req_inputs),
            view(&pool_inputs),
            "the pool changed a tensor"
        );
        for (name, t) in &req_inputs {
            assert_eq!(
                t.bytes().len(),
                numel(&t.shape) * t.dtype().size(),
                "input '{name}' accepted with a shape its data does not fill"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..256),
        len in prop::option::of(prop_oneof![
            (0usize..300).prop_map(|n| n.to_string()),
            "[ -~]{0,6}",
        ]),
    ) {
        check_accepted(&body, &headers(len), &ShmRegistry::new(true));
    }

    #[test]
    fn random_requests_decode_or_fail_cleanly(
        req in request(),
        tail in prop::collection::vec(any::<u8>(), 0..64),
        binary in any::<bool>(),
        shm_allowed in any::<bool>(),
    ) {
        let json = serde_json::to_vec(&req).unwrap();
        let mut body = json.clone();
        let len = if binary {
            body.extend_from_slice(&tail);
            Some(json.len().to_string())
        } else {
            None
        };
        check_accepted(&body, &headers(len), &ShmRegistry::new(shm_allowed));
    }

    #[test]
    fn raw_tensors_are_accepted_exactly_when_the_bytes_fit(
        dt in datatype(),
        shape in prop::collection::vec(dim(), 0..4),
        buf in prop::collection::vec(any::<u8>(), 0..64),
        shift in 0usize..4,
    ) {
        let (Ok(dtype), Ok(shape)) = (parse_datatype("t", &dt), parse_shape("t", &shape)) else {
            return Ok(());
        };
        // Shifted, so that the bytes are misaligned for their type too.
        let bytes = &buf[shift.min(buf.len())..];
        let fits = numel(&shape).checked_mul(dtype.size()) == Some(bytes.len());
        let pooled = tensor_from_raw_in(Some(pool()), "t", dtype, shape.clone(), bytes);
        match tensor_from_raw("t", dtype, shape, bytes) {
            Ok(t) => {
                prop_assert!(fits);
                prop_assert_eq!(t.bytes().len(), bytes.len());
                // The pool's buffer holds the same tensor.
                let p = pooled.map_err(|e| TestCaseError::fail(e.message))?;
                prop_assert_eq!((p.dtype(), &p.shape), (t.dtype(), &t.shape));
                prop_assert_eq!(p.bytes(), t.bytes());
            }
            Err(e) => {
                prop_assert!(!fits || dtype.size() == 0, "{}", e.message);
                prop_assert!(pooled.is_err(), "the pool accepted what the plain decode refused");
            }
        }
    }

    #[test]
    fn typed_contents_are_accepted_exactly_when_one_field_fills_the_shape(
        dt in datatype(),
        shape in prop::collection::vec(dim(), 0..4),
        lens in prop::collection::vec(0usize..7, 8),
    ) {
        let (Ok(dtype), Ok(shape)) = (parse_datatype("t", &dt), parse_shape("t", &shape)) else {
            return Ok(());
        };
        let c = InferTensorContents {
            bool_contents: vec![true; lens[0]],
            int_contents: vec![7; lens[1]],
            int64_contents: vec![-7; lens[2]],
            uint_contents: vec![7; lens[3]],
            uint64_contents: vec![7; lens[4]],
            fp32_contents: vec![0.5; lens[5]],
            fp64_contents: vec![0.25; lens[6]],
            bytes_contents: vec![vec![1u8]; lens[7]],
        };
        let n = numel(&shape);
        match tensor_from_contents("t", dtype, shape, &c) {
            Ok(t) => {
                prop_assert_eq!(lens.iter().sum::<usize>(), n, "one field, exactly the shape");
                prop_assert_eq!(t.bytes().len(), n * dtype.size());
            }
            Err(e) => prop_assert!(!e.message.is_empty()),
        }
    }
}
