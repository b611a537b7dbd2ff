//! Triton's streaming inference (`ModelStreamInfer`): answers matched by id,
//! errors on the stream without ending it, requests running concurrently, a
//! client that leaves cancelling its BE work, and a malformed message.

use crate::common::{eventually, rand_f32, start, TestService};
use crate::grpc::{add_raw, connect, raw_client, RawCodec};
use prost::Message;
use reef_model::tensor::rel_l2;
use reef_server::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use reef_server::proto::model_infer_request::InferInputTensor;
use reef_server::proto::*;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

fn from_le(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn with_id(mut r: ModelInferRequest, id: &str) -> ModelInferRequest {
    r.id = id.into();
    r
}

fn slow_request(id: &str) -> ModelInferRequest {
    ModelInferRequest {
        model_name: "slow".into(),
        id: id.into(),
        inputs: vec![InferInputTensor {
            name: "x".into(),
            datatype: "FP32".into(),
            shape: vec![1, 2],
            parameters: HashMap::new(),
            contents: Some(InferTensorContents {
                fp32_contents: vec![0.5, -1.5],
                ..Default::default()
            }),
        }],
        ..Default::default()
    }
}

/// A client with an open inference stream: its request sender and answers.
async fn open_stream(
    url: &str,
) -> (
    GrpcInferenceServiceClient<Channel>,
    mpsc::Sender<ModelInferRequest>,
    tonic::Streaming<ModelStreamInferResponse>,
) {
    let mut c = connect(url).await;
    let (tx, rx) = mpsc::channel(4);
    let answers = c
        .model_stream_infer(ReceiverStream::new(rx))
        .await
        .expect("stream opened")
        .into_inner();
    (c, tx, answers)
}

#[tokio::test]
async fn stream_answers_every_request_by_id() {
    let s = start(TestService::new()).await;
    let mut c = connect(&s.grpc).await;
    let (a1, b1) = (rand_f32(1, 8), rand_f32(2, 8));
    let (a2, b2) = (rand_f32(3, 4), rand_f32(4, 4));
    let mut bad = add_raw(&a2, &b2, 1);
    bad.inputs[1].shape = vec![1, 5];
    let mut unknown = add_raw(&a2, &b2, 1);
    unknown.model_name = "nope".into();
    let requests = vec![
        with_id(add_raw(&a1, &b1, 2), "s1"),
        with_id(bad, "s2"),
        with_id(add_raw(&a2, &b2, 1), "s3"),
        with_id(unknown, "s4"),
    ];
    let mut answers = c
        .model_stream_infer(tokio_stream::iter(requests))
        .await
        .expect("stream opened")
        .into_inner();
    let mut by_id = HashMap::new();
    while let Some(a) = answers.next().await {
        let a = a.expect("stream answer");
        let r = a.infer_response.clone().expect("a response with the id");
        by_id.insert(r.id.clone(), a);
    }
    assert_eq!(by_id.len(), 4, "{:?}", by_id.keys());
    for (id, a, b) in [("s1", &a1, &b1), ("s3", &a2, &b2)] {
        let ans = &by_id[id];
        assert_eq!(ans.error_message, "", "{id}");
        let r = ans.infer_response.as_ref().unwrap();
        assert_eq!(r.model_name, "add");
        let sum: Vec<f32> = a.iter().zip(b.iter()).map(|(x, y)| x + y).collect();
        assert!(
            rel_l2(&from_le(&r.raw_output_contents[0]), &sum) < 1e-6,
            "{id}"
        );
    }
    assert!(
        by_id["s2"].error_message.contains("'b'"),
        "{:?}",
        by_id["s2"]
    );
    assert_eq!(
        by_id["s2"].infer_response.as_ref().unwrap().model_name,
        "add"
    );
    assert!(
        by_id["s4"].error_message.contains("nope"),
        "{:?}",
        by_id["s4"]
    );

    // The stream's requests count in the model's statistics.
    let st = c
        .model_statistics(ModelStatisticsRequest {
            name: "add".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let m = &st.model_stats[0];
    assert_eq!((m.execution_count, m.inference_count), (2, 3));
    let fails = m.inference_stats.as_ref().unwrap().fail.unwrap().count;
    assert_eq!(fails, 1);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn stream_requests_run_concurrently_and_a_leaving_client_cancels_them() {
    let svc = TestService::new();
    let s = start(svc.clone()).await;
    let (c, tx, mut answers) = open_stream(&s.grpc).await;
    // A request that never finishes does not hold up the one after it.
    tx.send(slow_request("never")).await.unwrap();
    let (a, b) = (rand_f32(5, 4), rand_f32(6, 4));
    tx.send(with_id(add_raw(&a, &b, 1), "quick")).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), answers.next())
        .await
        .expect("an answer behind a running request")
        .expect("stream open")
        .expect("answer");
    assert_eq!(first.infer_response.unwrap().id, "quick");
    assert_eq!(svc.cancelled.load(Ordering::SeqCst), 0);
    // The client leaves: the slow BE request's ticket is dropped.
    drop(answers);
    drop(tx);
    drop(c);
    assert!(
        eventually(|| svc.cancelled.load(Ordering::SeqCst) == 1).await,
        "the stream's running request was not cancelled"
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_message_ends_the_stream_after_earlier_answers() {
    let s = start(TestService::new()).await;
    let (mut raw, path) = raw_client(&s.grpc, "ModelStreamInfer").await;
    let (a, b) = (rand_f32(7, 4), rand_f32(8, 4));
    let good = with_id(add_raw(&a, &b, 1), "ok").encode_to_vec();
    let garbage = vec![0x0a, 0xff, 0xff, 0xff, 0x0f, 1, 2];
    let mut answers = raw
        .streaming(
            tonic::Request::new(tokio_stream::iter(vec![good, garbage])),
            path,
            RawCodec,
        )
        .await
        .expect("stream opened")
        .into_inner();
    let first = answers.next().await.expect("an answer").expect("ok");
    let first = ModelStreamInferResponse::decode(first.as_slice()).unwrap();
    assert_eq!(first.error_message, "");
    assert_eq!(first.infer_response.unwrap().id, "ok");
    let e = answers
        .next()
        .await
        .expect("the stream's end")
        .expect_err("garbage accepted");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("malformed protobuf"), "{e:?}");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_answers_and_ends_an_open_stream() {
    let svc = TestService::new();
    let mut s = start(svc.clone()).await;
    let (_c, tx, mut answers) = open_stream(&s.grpc).await;
    tx.send(slow_request("pending")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The client keeps its side of the stream open throughout.
    let began = std::time::Instant::now();
    s.trigger_stop();
    let limit = Duration::from_secs(10);
    let first = tokio::time::timeout(limit, answers.next())
        .await
        .expect("the running request is answered at shutdown")
        .expect("stream open")
        .expect("an answer");
    assert_eq!(first.infer_response.unwrap().id, "pending");
    assert!(
        first.error_message.contains("shutdown"),
        "{}",
        first.error_message
    );
    let end = tokio::time::timeout(limit, answers.next())
        .await
        .expect("the stream ends at shutdown")
        .expect("a final status")
        .expect_err("an error status");
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    tokio::time::timeout(limit, s.join())
        .await
        .expect("the server stops without waiting out its grace period")
        .unwrap();
    assert!(began.elapsed() < limit);
    drop(tx);
}
