//! `sys/metrics?format=prometheus`: who may read it, and what it contains.
//!
//! The recorder is global to the test process and every server in it records into it, so
//! counters are compared before and after an action, never against absolute values.

use std::time::{Duration, Instant};

use keyward_server::RateLimit;
use serde_json::json;

use crate::client_auth::TestCa;
use crate::harness::TestServer;

const METRICS: &str = "sys/metrics?format=prometheus";

/// Fetches the metrics text with `token`, returning the status and the body.
async fn fetch(server: &TestServer, token: &str) -> (u16, Option<String>, String) {
    let mut request = server.client().get(server.url(METRICS));
    if !token.is_empty() {
        request = request.header("X-Vault-Token", token);
    }
    let response = request.send().await.expect("request completes");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = response.text().await.expect("body reads");
    (status, content_type, body)
}

async fn scrape(server: &TestServer) -> String {
    let (status, _, body) = fetch(server, &server.root_token).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Returns the value of the sample whose name and labels are exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// Polls the metrics until `series` reaches at least `at_least`, for counters recorded by
/// another task.
async fn wait_for_sample(server: &TestServer, series: &str, at_least: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = scrape(server).await;
        if sample(&text, series).is_some_and(|value| value >= at_least) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{series} did not reach {at_least} within 5 s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn metrics_need_a_valid_token() {
    let server = TestServer::start().await;

    let (status, _, body) = fetch(&server, "").await;
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = fetch(&server, "kwt.not-a-real-token").await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("keyward_"), "{body}");

    let (status, content_type, body) = fetch(&server, &server.root_token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        content_type.as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
}

#[tokio::test]
async fn metrics_without_prometheus_format_are_rejected() {
    let server = TestServer::start().await;

    for path in ["sys/metrics", "sys/metrics?format=json"] {
        let (status, body) = server.call("GET", path, None).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["errors"][0]
                .as_str()
                .is_some_and(|message| message.contains("format=prometheus")),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn requests_are_counted_by_route_template() {
    let server = TestServer::start().await;
    let series =
        r#"keyward_http_requests_total{route="secret/data/{path}",method="PUT",status="2xx"}"#;
    let before = sample(&scrape(&server).await, series).unwrap_or(0.0);

    let (status, body) = server
        .call(
            "PUT",
            "secret/data/app/metrics-canary-name",
            Some(json!({ "data": { "k": "metrics-canary-value" } })),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let text = wait_for_sample(&server, series, before + 1.0).await;
    assert!(
        !text.contains("metrics-canary"),
        "a path or value leaked:\n{text}"
    );
    assert!(
        text.contains(r#"keyward_http_request_duration_seconds_bucket{route="secret/data/{path}",method="PUT",le="#),
        "no latency histogram:\n{text}"
    );
}

#[tokio::test]
async fn certificate_expiry_gauge_counts_down() {
    let server = TestServer::start().await;

    let text = scrape(&server).await;
    let seconds = sample(&text, "keyward_tls_certificate_expiry_seconds")
        .unwrap_or_else(|| panic!("no expiry gauge:\n{text}"));
    // Every server in this process serves a 90-day development certificate.
    let day = 86_400.0;
    assert!(
        (89.0 * day..=90.0 * day).contains(&seconds),
        "expiry {seconds} s is not about 90 days"
    );
}

#[tokio::test]
async fn token_rate_limit_is_counted() {
    let server = TestServer::start_with(|config| {
        config.per_token_rate = Some(RateLimit::new(1, 1));
    })
    .await;
    // Scrapes go to a second server, so they do not use up the first one's token rate; both
    // record into the same process-wide recorder.
    let observer = TestServer::start().await;
    let limited = r#"keyward_rate_limited_requests_total{limit="token"}"#;
    let rejected = r#"keyward_rejected_requests_total{reason="rate_limited_token"}"#;
    let text = scrape(&observer).await;
    let limited_before = sample(&text, limited).unwrap_or(0.0);
    let rejected_before = sample(&text, rejected).unwrap_or(0.0);

    let first = server
        .call_as(
            "kwt.rate-limit-probe",
            "GET",
            "auth/token/lookup-self",
            None,
        )
        .await;
    assert_eq!(first.0, 403);
    let second = server
        .call_as(
            "kwt.rate-limit-probe",
            "GET",
            "auth/token/lookup-self",
            None,
        )
        .await;
    assert_eq!(second.0, 429);

    let text = wait_for_sample(&observer, limited, limited_before + 1.0).await;
    assert!(
        sample(&text, rejected).is_some_and(|value| value >= rejected_before + 1.0),
        "{text}"
    );
}

#[tokio::test]
async fn auth_failures_are_counted() {
    let server = TestServer::start().await;
    let series = r#"keyward_auth_failures_total{reason="denied"}"#;
    let before = sample(&scrape(&server).await, series).unwrap_or(0.0);

    let (status, _) = server
        .call_as("kwt.wrong", "GET", "secret/data/app/x", None)
        .await;
    assert_eq!(status, 403);

    wait_for_sample(&server, series, before + 1.0).await;
}

#[tokio::test]
async fn gauges_from_other_crates_are_rendered() {
    let server = TestServer::start().await;

    // The manager records its gauges through the same facade; any recorded gauge shows.
    ::metrics::gauge!("keyward_test_facade_gauge").set(7.0);

    let text = scrape(&server).await;
    assert_eq!(
        sample(&text, "keyward_test_facade_gauge"),
        Some(7.0),
        "{text}"
    );
}

#[tokio::test]
async fn untrusted_client_certificate_is_counted() {
    let ca = TestCa::new("clients");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_path = ca.write(dir.path(), "clients.pem");
    let server = TestServer::start_with(|config| {
        config.client_auth = keyward_server::ClientAuth::Optional { ca_path };
    })
    .await;
    let series = r#"keyward_tls_handshake_failures_total{reason="invalid_client_certificate"}"#;
    let before = sample(&scrape(&server).await, series).unwrap_or(0.0);

    let stranger = TestCa::new("strangers").issue("mallory");
    let result = crate::client_auth::try_get(&server, Some(&stranger), "sys/health", None).await;
    assert!(result.is_err(), "{result:?}");

    wait_for_sample(&server, series, before + 1.0).await;
}
