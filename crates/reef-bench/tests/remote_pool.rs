//! The remote client (gRPC and HTTP) against a real server and the CPU
//! backend: its shared memory pool registers pairs before the run, at most
//! `MAX_PAIRS` of them under a burst of twice as many requests (the rest
//! wait for a pair to come back), every answer equals the in-process one
//! (through shared memory and in the messages), the regions are
//! unregistered at shutdown, and an unknown model is named.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reef_bench::remote::{Protocol, RemoteService, RtClient, MAX_PAIRS};
use reef_exec::cpu::CpuDevice;
use reef_model::Tensor;
use reef_sched::{GraphSource, InferRequest, Priority, SchedConfig, Scheduler, Service};
use reef_server::proto;
use reef_server::{Server, ServerConfig};
use std::sync::Arc;
use std::time::Instant;

const MODEL: &str = "resnet_tiny";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_pool_caps_its_pairs_and_answers_every_request() {
    the_pool_caps_its_pairs_and_answers_every_request(Protocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_pool_caps_its_pairs_and_answers_every_request() {
    the_pool_caps_its_pairs_and_answers_every_request(Protocol::Http).await;
}

/// A CPU scheduler with the model behind a real server on loopback: the
/// scheduler, the URL of `protocol`, the gRPC URL, an input and the
/// in-process answer to it.
async fn setup(protocol: Protocol) -> (Arc<Scheduler>, String, String, Tensor, Vec<Tensor>) {
    let dev = Arc::new(CpuDevice::new(Some(2)).expect("cpu device"));
    let sched = Scheduler::new(dev, SchedConfig::default()).expect("scheduler");
    let src: GraphSource = Arc::new(|b| reef_zoo::build(MODEL, b, 3).map_err(|e| e.to_string()));
    sched.load_model(MODEL, src, Priority::Rt).expect("load");
    let config = ServerConfig {
        allow_client_shm: true,
        ..ServerConfig::localhost_ephemeral()
    };
    let server = Server::bind(config).await.expect("bind");
    let grpc_url = format!("http://{}", server.grpc_addr());
    let url = match protocol {
        Protocol::Grpc => grpc_url.clone(),
        Protocol::Http => format!("http://{}", server.http_addr()),
    };
    let service: Arc<dyn Service> = sched.clone();
    tokio::spawn(server.run(service, std::future::pending::<()>()));

    let info = sched.models().into_iter().next().expect("one model");
    let shape: Vec<usize> = info.inputs[0]
        .shape
        .iter()
        .map(|&d| d.max(1) as usize)
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let data = (0..shape.iter().product::<usize>())
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let x = Tensor::f32(shape, data).expect("sizes");
    let in_process = sched.clone();
    let req = request(&x, Priority::Be);
    let want = tokio::task::spawn_blocking(move || in_process.infer_blocking(req))
        .await
        .expect("joined")
        .expect("answered in process")
        .outputs;
    (sched, url, grpc_url, x, want)
}

fn request(x: &Tensor, priority: Priority) -> InferRequest {
    InferRequest {
        model: MODEL.into(),
        inputs: vec![x.clone().into()],
        priority: Some(priority),
        arrival: Instant::now(),
    }
}

async fn the_pool_caps_its_pairs_and_answers_every_request(protocol: Protocol) {
    let (sched, url, grpc_url, x, want) = setup(protocol).await;
    let request = || request(&x, Priority::Be);

    // An unknown model fails the connection, naming it.
    let err = RemoteService::connect(&url, protocol, &["no_such_model".to_string()], None)
        .await
        .err()
        .expect("an unknown model is refused");
    assert!(err.to_string().contains("no_such_model"), "{err}");

    // Tensors in the messages.
    let plain = RemoteService::connect(&url, protocol, &[MODEL.to_string()], None)
        .await
        .expect("connect");
    for priority in [Priority::Rt, Priority::Be] {
        let got = plain
            .submit(InferRequest {
                priority: Some(priority),
                ..request()
            })
            .expect("submitted")
            .await
            .expect("ticket")
            .expect("answered");
        assert!(got.remote.is_some(), "the server's timing came back");
        assert_eq!(got.outputs.len(), want.len());
        for (g, w) in got.outputs.iter().zip(&want) {
            assert_eq!(
                g.bytes(),
                w.bytes(),
                "{protocol}: in the message as in process"
            );
        }
    }

    let client = RemoteService::connect(&url, protocol, &[MODEL.to_string()], None)
        .await
        .expect("connect")
        .with_shared_memory();
    assert_eq!(client.prepare_shared_memory(2).await.expect("prepared"), 2);
    assert_eq!(client.shared_memory_pairs(), 2);
    let tickets: Vec<_> = (0..2 * MAX_PAIRS)
        .map(|_| client.submit(request()).expect("submitted"))
        .collect();
    for t in tickets {
        let got = t.await.expect("ticket").expect("answered").outputs;
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(
                g.bytes(),
                w.bytes(),
                "{protocol}: through shared memory as in process"
            );
        }
    }
    let pairs = client.shared_memory_pairs();
    println!(
        "{pairs} region pairs for {} requests at once",
        2 * MAX_PAIRS
    );
    assert!((2..=MAX_PAIRS).contains(&pairs), "{pairs} pairs");

    // Shutdown unregisters every region with the server.
    client.shutdown();
    let mut c = reef_server::grpc_client(&grpc_url).await.expect("connect");
    let status = c
        .system_shared_memory_status(proto::SystemSharedMemoryStatusRequest {
            name: String::new(),
        })
        .await
        .expect("status")
        .into_inner();
    assert!(status.regions.is_empty(), "{:?}", status.regions.keys());
    sched.shutdown();
}

/// RT requests sent on the submitting thread (`with_direct_rt`, HTTP):
/// in the messages and through shared memory, eight at once where two
/// region pairs are free (the rest take the runtime's path, which makes
/// pairs), each answer equal to the in-process one; a malformed request's
/// error comes back named; gRPC refuses the direct client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_rt_requests_answer_as_in_process() {
    rt_requests_answer_as_in_process(RtClient::Direct).await;
}

/// RT requests written and polled for by runtime tasks
/// (`with_polling_rt`, HTTP): the same checks; eight at once over two
/// prepared pairs make more pairs on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polled_rt_requests_answer_as_in_process() {
    rt_requests_answer_as_in_process(RtClient::Poll).await;
}

async fn rt_requests_answer_as_in_process(how: RtClient) {
    let (sched, url, grpc_url, x, want) = setup(Protocol::Http).await;
    let plain = RemoteService::connect(&url, Protocol::Http, &[MODEL.to_string()], None)
        .await
        .expect("connect")
        .with_rt_client(how)
        .expect("HTTP takes every RT client");
    let shm = RemoteService::connect(&url, Protocol::Http, &[MODEL.to_string()], None)
        .await
        .expect("connect")
        .with_shared_memory()
        .with_rt_client(how)
        .expect("HTTP takes every RT client");
    assert_eq!(shm.prepare_shared_memory(2).await.expect("prepared"), 2);
    for (way, client) in [("in the messages", &plain), ("through shared memory", &shm)] {
        let tickets: Vec<_> = (0..8)
            .map(|_| client.submit(request(&x, Priority::Rt)).expect("submitted"))
            .collect();
        for t in tickets {
            let got = t.await.expect("ticket").expect("answered");
            let remote = got.remote.expect("the server's timing came back");
            assert!(remote.replied >= remote.sent);
            assert_eq!(got.outputs.len(), want.len());
            for (g, w) in got.outputs.iter().zip(&want) {
                assert_eq!(g.bytes(), w.bytes(), "{how} RT {way}: as in process");
            }
        }
    }
    // A wrong input shape: the server's 400 comes back as invalid input.
    let bad = Tensor::f32(vec![1, 2], vec![0.5, -0.5]).expect("sizes");
    let err = plain
        .submit(request(&bad, Priority::Rt))
        .expect("submitted")
        .await
        .expect("ticket")
        .expect_err("a wrong shape is refused");
    assert!(
        matches!(err, reef_sched::SchedError::InvalidInput(_)),
        "{err}"
    );
    shm.shutdown();
    let grpc = RemoteService::connect(&grpc_url, Protocol::Grpc, &[MODEL.to_string()], None)
        .await
        .expect("connect");
    let err = grpc
        .with_rt_client(how)
        .err()
        .expect("gRPC has no direct or polling client");
    assert!(err.to_string().contains("HTTP only"), "{err}");
    sched.shutdown();
}
