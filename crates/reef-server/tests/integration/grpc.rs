//! KServe v2 gRPC: every RPC, raw and typed tensors, bad input, overload,
//! malformed protobuf and the message size limit.

use crate::common::{rand_f32, rand_i64, start, start_with, TestService};
use prost::bytes::{Buf, BufMut, Bytes};
use reef_model::tensor::rel_l2;
use reef_server::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use reef_server::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use reef_server::proto::*;
use reef_server::ServerConfig;
use std::collections::HashMap;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};

pub(crate) async fn connect(url: &str) -> GrpcInferenceServiceClient<Channel> {
    GrpcInferenceServiceClient::connect(url.to_string())
        .await
        .expect("connect")
        .max_decoding_message_size(256 << 20)
}

fn le(v: &[f32]) -> Bytes {
    Bytes::from(v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
}

fn from_le(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn input(
    name: &str,
    dt: &str,
    shape: &[i64],
    contents: Option<InferTensorContents>,
) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: dt.into(),
        shape: shape.to_vec(),
        parameters: HashMap::new(),
        contents,
    }
}

pub(crate) fn add_raw(a: &[f32], b: &[f32], batch: i64) -> ModelInferRequest {
    ModelInferRequest {
        model_name: "add".into(),
        id: "g1".into(),
        inputs: vec![
            input("a", "FP32", &[batch, 4], None),
            input("b", "FP32", &[batch, 4], None),
        ],
        raw_input_contents: vec![le(a), le(b)],
        ..Default::default()
    }
}

#[tokio::test]
async fn grpc_endpoints_and_infer() {
    let s = start(TestService::new()).await;
    let mut c = connect(&s.grpc).await;
    assert!(
        c.server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert!(
        c.server_ready(ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let meta = c
        .server_metadata(ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.name, "reef");
    assert!(meta.extensions.contains(&"binary_tensor_data".to_string()));
    let m = c
        .model_metadata(ModelMetadataRequest {
            name: "add".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.inputs[1].name, "b");
    assert_eq!(m.inputs[1].shape, vec![-1, 4]);
    assert_eq!(m.outputs[0].datatype, "FP32");
    let ready = |name: &str, version: &str| ModelReadyRequest {
        name: name.into(),
        version: version.into(),
    };
    assert!(
        c.model_ready(ready("add", "1"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        !c.model_ready(ready("loading", ""))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert_eq!(
        c.model_ready(ready("nope", "")).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        c.model_ready(ready("add", "3")).await.unwrap_err().code(),
        Code::NotFound
    );

    // Raw contents.
    let (a, b) = (rand_f32(41, 12), rand_f32(42, 12));
    let r = c
        .model_infer(add_raw(&a, &b, 3))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.id, "g1");
    assert_eq!(r.model_name, "add");
    assert_eq!(r.outputs.len(), 2);
    assert_eq!(r.outputs[0].shape, vec![3, 4]);
    let sum: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    let diff: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
    assert!(rel_l2(&from_le(&r.raw_output_contents[0]), &sum) < 1e-7);
    assert!(rel_l2(&from_le(&r.raw_output_contents[1]), &diff) < 1e-7);

    // Typed contents, one requested output, priority parameter.
    let x = rand_i64(43, 6);
    let k = vec![3, -4, 5, 1 << 20, -9, 0];
    let m = vec![false, true, true, false, true, false];
    let req = ModelInferRequest {
        model_name: "mixed".into(),
        inputs: vec![
            input(
                "k",
                "INT32",
                &[2, 3],
                Some(InferTensorContents {
                    int_contents: k.clone(),
                    ..Default::default()
                }),
            ),
            input(
                "x",
                "INT64",
                &[2, 3],
                Some(InferTensorContents {
                    int64_contents: x.clone(),
                    ..Default::default()
                }),
            ),
            input(
                "m",
                "BOOL",
                &[2, 3],
                Some(InferTensorContents {
                    bool_contents: m.clone(),
                    ..Default::default()
                }),
            ),
        ],
        outputs: vec![
            InferRequestedOutputTensor {
                name: "k2".into(),
                parameters: HashMap::new(),
            },
            InferRequestedOutputTensor {
                name: "y".into(),
                parameters: HashMap::new(),
            },
        ],
        parameters: HashMap::from([(
            "priority".to_string(),
            InferParameter {
                parameter_choice: Some(infer_parameter::ParameterChoice::StringParam("rt".into())),
            },
        )]),
        ..Default::default()
    };
    let r = c.model_infer(req).await.unwrap().into_inner();
    assert_eq!(r.outputs[0].name, "k2");
    assert_eq!(r.outputs[0].datatype, "INT32");
    let k2: Vec<i32> = r.raw_output_contents[0]
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(k2, k.iter().map(|v| 2 * v).collect::<Vec<_>>());
    let y: Vec<i64> = r.raw_output_contents[1]
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(y, x.iter().map(|v| -v).collect::<Vec<_>>());
    s.stop().await.unwrap();
}

#[tokio::test]
async fn grpc_errors() {
    let config = ServerConfig {
        max_body_bytes: 8192,
        ..ServerConfig::localhost_ephemeral()
    };
    let s = start_with(TestService::new(), config).await;
    let mut c = connect(&s.grpc).await;
    let (a, b) = (rand_f32(51, 8), rand_f32(52, 8));
    let check = |r: Result<tonic::Response<ModelInferResponse>, Status>, code: Code, want: &str| {
        let e = r.expect_err("should fail");
        assert_eq!(e.code(), code, "{e:?}");
        assert!(
            e.message().contains(want),
            "expected '{want}' in '{}'",
            e.message()
        );
    };

    let mut req = add_raw(&a, &b, 2);
    req.inputs[0].shape = vec![2, 5];
    check(
        c.model_infer(req).await,
        Code::InvalidArgument,
        "needs 40 bytes",
    );
    let mut req = add_raw(&a, &b, 2);
    req.inputs[0].shape = vec![4, 2];
    check(
        c.model_infer(req).await,
        Code::InvalidArgument,
        "input 'a': shape [4, 2]",
    );
    let mut req = add_raw(&a, &b, 2);
    req.inputs[1].datatype = "INT32".into();
    check(
        c.model_infer(req).await,
        Code::InvalidArgument,
        "input 'b': datatype INT32",
    );
    let mut req = add_raw(&a, &b, 2);
    req.parameters.insert(
        "reef_timing".into(),
        InferParameter {
            parameter_choice: Some(infer_parameter::ParameterChoice::Int64Param(1)),
        },
    );
    check(
        c.model_infer(req).await,
        Code::InvalidArgument,
        "parameter 'reef_timing': expected a bool",
    );
    let mut req = add_raw(&a, &b, 2);
    req.inputs[1].name = "bb".into();
    check(
        c.model_infer(req).await,
        Code::InvalidArgument,
        "no input 'bb'",
    );
    let mut req = add_raw(&a, &b, 2);
    req.raw_input_contents.pop();
    check(
        c.model_infer(req).await,
        Code::InvalidArgument,
        "raw_input_contents has 1 entries for 2 inputs",
    );
    let mut req = add_raw(&a, &b, 2);
    req.raw_input_contents.clear();
    req.inputs[0].contents = Some(InferTensorContents {
        fp32_contents: a.clone(),
        ..Default::default()
    });
    req.inputs[1].contents = Some(InferTensorContents {
        int_contents: vec![1; 8],
        ..Default::default()
    });
    check(
        c.model_infer(req).await,
        Code::InvalidArgument,
        "tensor 'b': a FP32 tensor takes its elements in `fp32_contents` only",
    );
    let mut req = add_raw(&a, &b, 2);
    req.model_name = "nope".into();
    check(
        c.model_infer(req).await,
        Code::NotFound,
        "unknown model 'nope'",
    );
    let mut req = add_raw(&a, &b, 2);
    req.model_name = "busy".into();
    req.inputs.truncate(1);
    req.inputs[0].name = "x".into();
    req.raw_input_contents.truncate(1);
    check(
        c.model_infer(req.clone()).await,
        Code::Unavailable,
        "overloaded",
    );
    req.model_name = "loading".into();
    check(
        c.model_infer(req.clone()).await,
        Code::Unavailable,
        "not ready",
    );
    req.model_name = "broken".into();
    check(
        c.model_infer(req).await,
        Code::Internal,
        "produced 0 outputs",
    );

    // Message over the 8 KiB limit.
    let big = rand_f32(53, 4096);
    let req = ModelInferRequest {
        model_name: "add".into(),
        inputs: vec![
            input("a", "FP32", &[1024, 4], None),
            input("b", "FP32", &[1024, 4], None),
        ],
        raw_input_contents: vec![le(&big), le(&big)],
        ..Default::default()
    };
    let e = c.model_infer(req).await.expect_err("over the limit");
    assert!(
        matches!(e.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{e:?}"
    );

    // Malformed protobuf through a raw codec.
    let (mut raw, path) = raw_client(&s.grpc, "ModelInfer").await;
    let garbage = vec![0x0a, 0xff, 0xff, 0xff, 0x0f, 1, 2];
    let e = raw
        .unary(tonic::Request::new(garbage), path, RawCodec)
        .await
        .expect_err("garbage accepted");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("malformed protobuf"), "{e:?}");
    s.stop().await.unwrap();
}

/// A ready client of raw messages ([`RawCodec`]) and the path of `method`.
pub(crate) async fn raw_client(
    url: &str,
    method: &str,
) -> (
    tonic::client::Grpc<Channel>,
    tonic::codegen::http::uri::PathAndQuery,
) {
    let channel = Channel::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut raw = tonic::client::Grpc::new(channel);
    raw.ready().await.unwrap();
    let path = format!("/inference.GRPCInferenceService/{method}")
        .parse()
        .expect("a path");
    (raw, path)
}

/// Sends and receives raw bytes, to put a malformed message on the wire.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawCodec;

pub(crate) struct RawEncoder;
pub(crate) struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let v = src.chunk().to_vec();
        src.advance(v.len());
        Ok(Some(v))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// A model without its own repository config reports the server's default
/// batch limit (the scheduler's, as `reef serve` sets it), or 0 without one.
#[tokio::test]
async fn model_config_reports_the_default_batch_limit() {
    for (default, want) in [(Some(5usize), 5i32), (None, 0)] {
        let config = ServerConfig {
            default_max_batch: default,
            ..ServerConfig::localhost_ephemeral()
        };
        let s = start_with(TestService::new(), config).await;
        let mut c = connect(&s.grpc).await;
        let r = c
            .model_config(ModelConfigRequest {
                name: "add".into(),
                version: String::new(),
            })
            .await
            .expect("model config")
            .into_inner();
        let cfg = r.config.expect("config present");
        assert_eq!(cfg.name, "add");
        assert_eq!(cfg.max_batch_size, want, "default {default:?}");
        s.stop().await.unwrap();
    }
}

/// One random change to a request, of the kinds a faulty client makes.
fn mutate(req: &mut ModelInferRequest, rng: &mut rand_chacha::ChaCha8Rng) {
    use rand::Rng;
    let pick =
        |rng: &mut rand_chacha::ChaCha8Rng, v: &[&str]| v[rng.random_range(0..v.len())].to_string();
    let param = |rng: &mut rand_chacha::ChaCha8Rng| {
        use infer_parameter::ParameterChoice::*;
        let choice = match rng.random_range(0..5) {
            0 => BoolParam(rng.random()),
            1 => Int64Param(rng.random_range(-3..4)),
            2 => Uint64Param(rng.random_range(0..4)),
            3 => DoubleParam(0.5),
            _ => StringParam(["rt", "be", "true", "", "x"][rng.random_range(0..5)].into()),
        };
        InferParameter {
            parameter_choice: Some(choice),
        }
    };
    let keys = crate::support::PARAM_KEYS;
    let n_in = req.inputs.len().max(1);
    let i = rng.random_range(0..n_in);
    match rng.random_range(0..11) {
        0 => req.model_name = pick(rng, &["add", "mixed", "nope", "", "broken", "loading"]),
        1 => {
            if let Some(t) = req.inputs.get_mut(i) {
                let dims = rng.random_range(0..4);
                t.shape = (0..dims)
                    .map(|_| [-1, 0, 1, 2, 4, 1 << 40, i64::MAX][rng.random_range(0..7)])
                    .collect();
            }
        }
        2 => {
            if let Some(t) = req.inputs.get_mut(i) {
                t.datatype = pick(
                    rng,
                    &["FP32", "INT64", "INT32", "BOOL", "BYTES", "FP16", "x"],
                );
            }
        }
        3 => {
            if let Some(t) = req.inputs.get_mut(i) {
                t.name = pick(rng, &["a", "b", "x", "k", ""]);
            }
        }
        4 => {
            if rng.random() {
                req.raw_input_contents.pop();
            } else {
                req.raw_input_contents
                    .push(Bytes::from(vec![0u8; rng.random_range(0..40)]));
            }
        }
        5 => {
            if let Some(b) = req.raw_input_contents.get_mut(i) {
                let keep = rng.random_range(0..=b.len() + 8);
                let mut v = b.to_vec();
                v.resize(keep, 7);
                *b = Bytes::from(v);
            }
        }
        6 => {
            let k = pick(rng, &keys);
            req.parameters.insert(k, param(rng));
        }
        7 => {
            if let Some(t) = req.inputs.get_mut(i) {
                let k = pick(rng, &keys);
                t.parameters.insert(k, param(rng));
            }
        }
        8 => {
            if let Some(t) = req.inputs.get_mut(i) {
                let n = rng.random_range(0..10);
                t.contents = Some(InferTensorContents {
                    fp32_contents: vec![1.5; n],
                    int64_contents: vec![2; rng.random_range(0..3)],
                    ..Default::default()
                });
            }
        }
        9 => {
            let mut o = InferRequestedOutputTensor {
                name: pick(rng, &["sum", "diff", "y", "", "nope"]),
                parameters: HashMap::new(),
            };
            if rng.random() {
                o.parameters.insert(pick(rng, &keys), param(rng));
            }
            req.outputs.push(o);
        }
        _ => {
            if req.inputs.len() > 1 && rng.random() {
                req.inputs.remove(i);
            } else {
                req.inputs.push(input("a", "FP32", &[1, 4], None));
            }
        }
    }
}

/// A faulty client's requests (a valid one with one to three random
/// changes) get an answer or a client-side error status, never an internal
/// error or a dropped connection, and the server still answers a valid
/// request correctly afterwards.
#[tokio::test]
async fn random_requests_get_answers_or_clear_errors() {
    use rand::{Rng, SeedableRng};
    let s = start(TestService::new()).await;
    let mut c = connect(&s.grpc).await;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x0f2a);
    let (a, b) = (rand_f32(71, 8), rand_f32(72, 8));
    let mut answered = 0;
    for round in 0..600 {
        let mut req = add_raw(&a, &b, 2);
        for _ in 0..rng.random_range(1..4) {
            mutate(&mut req, &mut rng);
        }
        match c.model_infer(req.clone()).await {
            Ok(_) => answered += 1,
            Err(e) => {
                assert!(
                    matches!(
                        e.code(),
                        Code::InvalidArgument | Code::NotFound | Code::Unavailable
                    ),
                    "round {round}: {:?} '{}' for {req:?}",
                    e.code(),
                    e.message()
                );
                assert!(!e.message().is_empty(), "round {round}: no message");
            }
        }
    }
    assert!(
        answered > 0,
        "no random request was valid: the changes are too harsh"
    );
    let r = c
        .model_infer(add_raw(&a, &b, 2))
        .await
        .unwrap()
        .into_inner();
    let sum: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    assert!(rel_l2(&from_le(&r.raw_output_contents[0]), &sum) < 1e-7);
    s.stop().await.unwrap();
}
