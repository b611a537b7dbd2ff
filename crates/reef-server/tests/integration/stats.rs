//! Triton's statistics extension over HTTP and gRPC: counts per model and
//! batch size, phases that add up to no more than the requests' time,
//! failures, every-model listing and unknown models.

use crate::common::{rand_f32, start, TestService};
use crate::grpc::{add_raw, connect};
use crate::http::{add_request, err, get, post};
use reef_server::proto::{ModelStatistics, ModelStatisticsRequest, StatisticDuration};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};
use tonic::Code;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn count_ns(v: &Value) -> (u64, u64) {
    (v["count"].as_u64().unwrap(), v["ns"].as_u64().unwrap())
}

fn pair(d: &Option<StatisticDuration>) -> (u64, u64) {
    let d = d.expect("duration present");
    (d.count, d.ns)
}

/// The HTTP and gRPC forms of one model's statistics say the same.
fn assert_same(h: &Value, g: &ModelStatistics) {
    assert_eq!(h["name"], g.name.as_str());
    assert_eq!(h["version"], g.version.as_str());
    assert_eq!(h["last_inference"].as_u64().unwrap(), g.last_inference);
    assert_eq!(h["inference_count"].as_u64().unwrap(), g.inference_count);
    assert_eq!(h["execution_count"].as_u64().unwrap(), g.execution_count);
    let (hs, gs) = (&h["inference_stats"], g.inference_stats.as_ref().unwrap());
    for (k, d) in [
        ("success", &gs.success),
        ("fail", &gs.fail),
        ("queue", &gs.queue),
        ("compute_input", &gs.compute_input),
        ("compute_infer", &gs.compute_infer),
        ("compute_output", &gs.compute_output),
    ] {
        assert_eq!(count_ns(&hs[k]), pair(d), "{k}");
    }
    let hb = h["batch_stats"].as_array().unwrap();
    assert_eq!(hb.len(), g.batch_stats.len());
    for (hb, gb) in hb.iter().zip(&g.batch_stats) {
        assert_eq!(hb["batch_size"].as_u64().unwrap(), gb.batch_size);
        assert_eq!(count_ns(&hb["compute_infer"]), pair(&gb.compute_infer));
    }
}

#[tokio::test]
async fn model_statistics_over_http_and_grpc() {
    let s = start(TestService::new()).await;
    let (st, meta) = get(&format!("{}/v2", s.http)).await;
    assert_eq!(st, 200);
    assert!(meta["extensions"]
        .as_array()
        .unwrap()
        .contains(&json!("statistics")));

    // Before any request: zeros, no batch sizes.
    let (st, r) = get(&format!("{}/v2/models/add/stats", s.http)).await;
    assert_eq!(st, 200, "{r}");
    let m = &r["model_stats"][0];
    assert_eq!(m["name"], "add");
    assert_eq!(m["version"], "1");
    assert_eq!(m["execution_count"], 0);
    assert_eq!(m["last_inference"], 0);
    assert_eq!(m["batch_stats"], json!([]));

    // Three HTTP requests (batches 3, 3, 1), one gRPC request (batch 2), one
    // rejected request and one for a model that does not exist.
    let before = now_ms();
    for (seed, batch) in [(1, 3), (2, 3), (3, 1)] {
        let (a, b) = (rand_f32(seed, batch * 4), rand_f32(seed + 10, batch * 4));
        let (st, r) = post(
            &format!("{}/v2/models/add/infer", s.http),
            &add_request(&a, &b, batch),
        )
        .await;
        assert_eq!(st, 200, "{r}");
    }
    let mut client = connect(&s.grpc).await;
    let (a, b) = (rand_f32(4, 8), rand_f32(5, 8));
    client
        .model_infer(add_raw(&a, &b, 2))
        .await
        .expect("gRPC infer");
    let (a, b) = (rand_f32(6, 4), rand_f32(7, 5));
    let (st, _) = post(
        &format!("{}/v2/models/add/infer", s.http),
        &add_request(&a, &b, 1),
    )
    .await;
    assert_eq!(st, 400);
    let (st, _) = post(
        &format!("{}/v2/models/nope/infer", s.http),
        &add_request(&a, &a, 1),
    )
    .await;
    assert_eq!(st, 404);
    let after = now_ms();

    let (st, r) = get(&format!("{}/v2/models/add/versions/1/stats", s.http)).await;
    assert_eq!(st, 200, "{r}");
    let m = &r["model_stats"][0];
    assert_eq!(m["inference_count"], 9, "{m}");
    assert_eq!(m["execution_count"], 4, "{m}");
    let last = m["last_inference"].as_u64().unwrap();
    assert!(
        (before..=after).contains(&last),
        "{before} <= {last} <= {after}"
    );
    let is = &m["inference_stats"];
    let (n, total) = count_ns(&is["success"]);
    assert_eq!(n, 4);
    assert_eq!(count_ns(&is["fail"]).0, 1, "the rejected request");
    let mut parts = 0;
    for k in ["queue", "compute_input", "compute_infer", "compute_output"] {
        let (c, ns) = count_ns(&is[k]);
        assert_eq!(c, 4, "{k}");
        parts += ns;
    }
    assert!(parts <= total, "phases {parts} ns > requests {total} ns");
    // Decoding a request always takes time.
    assert!(count_ns(&is["compute_input"]).1 > 0);
    let sizes: Vec<(u64, u64)> = m["batch_stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["batch_size"].as_u64().unwrap(),
                count_ns(&b["compute_infer"]).0,
            )
        })
        .collect();
    assert_eq!(sizes, vec![(1, 1), (2, 1), (3, 2)]);

    // /metrics exports the same counters per model.
    let text = reqwest::get(format!("{}/metrics", s.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let metric = |line: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(line))
            .unwrap_or_else(|| panic!("no {line} in\n{text}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(metric(r#"reef_model_executions_total{model="add"}"#), 4.0);
    assert_eq!(metric(r#"reef_model_inferences_total{model="add"}"#), 9.0);
    for k in ["queue", "compute_input", "compute_infer", "compute_output"] {
        let secs = metric(&format!(
            r#"reef_model_phase_seconds_total{{model="add",phase="{k}"}}"#
        ));
        let ns = count_ns(&is[k]).1 as f64;
        assert!(
            (secs - ns * 1e-9).abs() <= 1e-9 * ns.max(1.0),
            "{k}: {secs} s, {ns} ns"
        );
    }

    // gRPC answers the same figures.
    let g = client
        .model_statistics(ModelStatisticsRequest {
            name: "add".into(),
            version: String::new(),
        })
        .await
        .expect("ModelStatistics")
        .into_inner();
    assert_eq!(g.model_stats.len(), 1);
    assert_same(m, &g.model_stats[0]);

    // Every model: one entry each, sorted, the same for both protocols.
    let (st, all) = get(&format!("{}/v2/models/stats", s.http)).await;
    assert_eq!(st, 200, "{all}");
    let all = all["model_stats"].as_array().unwrap().clone();
    let names: Vec<&str> = all.iter().map(|m| m["name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(names.contains(&"mixed") && names.contains(&"add"));
    let g_all = client
        .model_statistics(ModelStatisticsRequest::default())
        .await
        .expect("ModelStatistics for every model")
        .into_inner();
    assert_eq!(g_all.model_stats.len(), all.len());
    for (h, g) in all.iter().zip(&g_all.model_stats) {
        assert_same(h, g);
    }

    // Unknown model or version: 404 / NOT_FOUND naming it.
    let (st, r) = get(&format!("{}/v2/models/nope/stats", s.http)).await;
    assert_eq!(st, 404);
    assert!(err(&r).contains("nope"), "{r}");
    let (st, r) = get(&format!("{}/v2/models/add/versions/7/stats", s.http)).await;
    assert_eq!(st, 404);
    assert!(err(&r).contains('7'), "{r}");
    let e = client
        .model_statistics(ModelStatisticsRequest {
            name: "nope".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("nope"));
    let e = client
        .model_statistics(ModelStatisticsRequest {
            name: String::new(),
            version: "1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    s.stop().await.unwrap();
}
