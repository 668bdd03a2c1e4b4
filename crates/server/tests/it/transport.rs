//! Transport protections: security headers, size limits, raw path checks, rate and
//! concurrency limits, timeouts, and the audit entries of rejected requests.

use std::time::Duration;

use keyward_server::RateLimit;
use serde_json::json;

use crate::harness::{RawResponse, TestServer};

const HSTS: &str = "max-age=63072000; includeSubDomains; preload";

fn assert_security_headers(response: &RawResponse) {
    assert_eq!(
        response.header("strict-transport-security"),
        Some(HSTS),
        "{response:?}"
    );
    assert_eq!(
        response.header("cache-control"),
        Some("no-store"),
        "{response:?}"
    );
    assert_eq!(
        response.header("x-content-type-options"),
        Some("nosniff"),
        "{response:?}"
    );
    let cors = response
        .headers
        .iter()
        .any(|(name, _)| name.to_ascii_lowercase().starts_with("access-control-"));
    assert!(!cors, "CORS header sent: {response:?}");
}

fn body_json(response: &RawResponse) -> serde_json::Value {
    serde_json::from_slice(&response.body).expect("body is JSON")
}

#[tokio::test]
async fn security_headers_on_every_status() {
    let server = TestServer::start_with(|config| config.max_body_bytes = 64).await;
    let mut connection = server
        .raw_connection(&server.cert.ca_pem)
        .await
        .expect("connects");
    let token = server.root_token.clone();
    let auth = [("X-Vault-Token", token.as_str())];

    let ok = connection.request("GET", "/v1/sys/health", &[], b"").await;
    assert_eq!(ok.status, 200);
    assert_security_headers(&ok);

    let forbidden = connection
        .request("GET", "/v1/secret/data/app/x", &[], b"")
        .await;
    assert_eq!(forbidden.status, 403);
    assert_security_headers(&forbidden);

    let not_found = connection
        .request("GET", "/v1/secret/data/app/x", &auth, b"")
        .await;
    assert_eq!(not_found.status, 404);
    assert_security_headers(&not_found);

    let unknown = connection
        .request("GET", "/v1/nonexistent/thing", &auth, b"")
        .await;
    assert_eq!(unknown.status, 404);
    assert_security_headers(&unknown);

    let too_large = connection
        .request("PUT", "/v1/secret/data/app/x", &auth, &[b' '; 65])
        .await;
    assert_eq!(too_large.status, 413);
    assert_security_headers(&too_large);

    let bad_path = connection
        .request("GET", "/v1/secret/data/a/../b", &auth, b"")
        .await;
    assert_eq!(bad_path.status, 400);
    assert_security_headers(&bad_path);

    let options = connection
        .request(
            "OPTIONS",
            "/v1/secret/data/a",
            &[("Origin", "https://evil.example")],
            b"",
        )
        .await;
    assert_security_headers(&options);
}

#[tokio::test]
async fn oversized_body_is_rejected_unwritten() {
    let server = TestServer::start_with(|config| config.max_body_bytes = 1024).await;
    let big = "x".repeat(2048);

    let (status, body) = server
        .call(
            "PUT",
            "secret/data/app/big",
            Some(json!({ "data": { "v": big } })),
        )
        .await;
    assert_eq!(status, 413);
    assert_eq!(
        body,
        json!({ "errors": ["request body larger than 1024 bytes"] })
    );

    let (status, _) = server.call("GET", "secret/data/app/big", None).await;
    assert_eq!(status, 404, "the oversized write was stored");
    assert_eq!(server.rejected_entries("body_too_large"), 1);
}

#[tokio::test]
async fn default_body_limit_is_one_mebibyte() {
    let server = TestServer::start().await;
    let just_over = "x".repeat(1024 * 1024);

    let (status, _) = server
        .call(
            "PUT",
            "secret/data/app/big",
            Some(json!({ "data": { "v": just_over } })),
        )
        .await;
    assert_eq!(status, 413);

    let fits = "x".repeat(1000 * 1000);
    let (status, _) = server
        .call(
            "PUT",
            "secret/data/app/big",
            Some(json!({ "data": { "v": fits } })),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn traversal_paths_are_rejected_unwritten() {
    let server = TestServer::start().await;
    let mut connection = server
        .raw_connection(&server.cert.ca_pem)
        .await
        .expect("connects");
    let token = server.root_token.clone();
    let headers = [
        ("X-Vault-Token", token.as_str()),
        ("Content-Type", "application/json"),
    ];
    let body = br#"{"data":{"a":"b"}}"#;

    for path in [
        "/v1/secret/data/app/../x",
        "/v1/secret/data/app/%2e%2e/x",
        "/v1/secret/data/app/%2E%2E/x",
        "/v1/secret/data/app//x",
        "/v1/secret/data/./x",
        "/v1/secret/data/app%2fx",
        "/v1/secret/../secret/data/x",
    ] {
        let response = connection.request("PUT", path, &headers, body).await;
        assert_eq!(response.status, 400, "{path}: {response:?}");
        let errors = body_json(&response)["errors"].clone();
        assert!(
            errors[0]
                .as_str()
                .is_some_and(|e| e.starts_with("invalid secret path")),
            "{path}: {errors}"
        );
    }

    let (status, body) = server.call("LIST", "secret/metadata", None).await;
    assert_eq!(status, 404, "something was written: {body}");
    assert_eq!(server.rejected_entries("invalid_path"), 7);
}

#[tokio::test]
async fn patch_without_merge_patch_is_415() {
    let server = TestServer::start().await;
    server
        .call(
            "PUT",
            "secret/data/app/x",
            Some(json!({ "data": { "a": "b" } })),
        )
        .await;

    let response = server
        .client()
        .patch(server.url("secret/data/app/x"))
        .header("X-Vault-Token", &server.root_token)
        .header("Content-Type", "application/json")
        .body(r#"{"data":{"c":"d"}}"#)
        .send()
        .await
        .expect("request completes");
    assert_eq!(response.status(), 415);
    let body: serde_json::Value = response.json().await.expect("JSON body");
    assert_eq!(
        body,
        json!({ "errors": ["PATCH requires Content-Type of application/merge-patch+json, provided application/json"] })
    );

    let (_, read) = server.call("GET", "secret/data/app/x", None).await;
    assert_eq!(read["data"]["data"], json!({ "a": "b" }));
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let server = TestServer::start().await;
    let mut connection = server
        .raw_connection(&server.cert.ca_pem)
        .await
        .expect("connects");
    let padding = "a".repeat(20 * 1024);

    let response = connection
        .request("GET", "/v1/sys/health", &[("X-Padding", &padding)], b"")
        .await;
    assert_eq!(response.status, 431);
    assert_security_headers(&response);
    assert_eq!(server.rejected_entries("headers_too_large"), 1);
}

#[tokio::test]
async fn address_rate_limit_ignores_forwarded_for() {
    let server = TestServer::start_with(|config| {
        config.per_address_rate = Some(RateLimit::new(1, 3));
    })
    .await;
    let client = server.client();

    let mut statuses = Vec::new();
    for index in 0..6 {
        let response = client
            .get(server.url("sys/health"))
            .header("X-Forwarded-For", format!("10.0.0.{index}"))
            .send()
            .await
            .expect("request completes");
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"));
            assert_eq!(
                response
                    .headers()
                    .get("strict-transport-security")
                    .map(|v| v.as_bytes()),
                Some(HSTS.as_bytes())
            );
        }
    }
    assert_eq!(&statuses[..3], &[200, 200, 200]);
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    assert!(server.rejected_entries("rate_limited_address") >= 1);
}

#[tokio::test]
async fn token_rate_limit_applies_per_token() {
    let server = TestServer::start_with(|config| {
        config.per_address_rate = None;
        config.per_token_rate = Some(RateLimit::new(1, 2));
    })
    .await;

    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (status, _) = server
            .call_as("kwt.unknown", "GET", "secret/data/x", None)
            .await;
        statuses.push(status);
    }
    assert_eq!(&statuses[..2], &[403, 403]);
    assert!(statuses[2..].contains(&429), "{statuses:?}");

    let (status, _) = server.call("GET", "sys/health", None).await;
    assert_eq!(status, 200, "another token was limited too");
}

#[tokio::test]
async fn concurrency_limit_sheds_load() {
    let server = TestServer::start_with(|config| config.max_concurrent_requests = 1).await;
    let mut slow = server
        .raw_connection(&server.cert.ca_pem)
        .await
        .expect("connects");
    let head = format!(
        "PUT /v1/secret/data/app/x HTTP/1.1\r\nHost: localhost\r\nX-Vault-Token: {}\r\nContent-Length: 100\r\n\r\n{{",
        server.root_token
    );
    slow.send(head.as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (status, body) = server.call("GET", "sys/health", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(server.rejected_entries("too_many_concurrent_requests"), 1);
}

#[tokio::test]
async fn slow_body_times_out_with_408() {
    let server = TestServer::start_with(|config| {
        config.request_timeout = Duration::from_millis(500);
    })
    .await;
    let mut slow = server
        .raw_connection(&server.cert.ca_pem)
        .await
        .expect("connects");
    let head = format!(
        "PUT /v1/secret/data/app/x HTTP/1.1\r\nHost: localhost\r\nX-Vault-Token: {}\r\nContent-Length: 100\r\n\r\n{{",
        server.root_token
    );
    slow.send(head.as_bytes()).await;

    let response = slow.read_response().await;
    assert_eq!(response.status, 408);
    assert_security_headers(&response);
    assert_eq!(server.rejected_entries("request_timeout"), 1);
}

#[tokio::test]
async fn method_override_header_is_ignored() {
    let server = TestServer::start().await;
    server
        .call(
            "PUT",
            "secret/data/app/x",
            Some(json!({ "data": { "a": "b" } })),
        )
        .await;

    let response = server
        .client()
        .post(server.url("secret/data/app/x"))
        .header("X-Vault-Token", &server.root_token)
        .header("X-HTTP-Method-Override", "DELETE")
        .json(&json!({ "data": { "a": "c" } }))
        .send()
        .await
        .expect("request completes");
    assert_eq!(response.status(), 200);

    let (status, read) = server.call("GET", "secret/data/app/x", None).await;
    assert_eq!(status, 200);
    assert_eq!(read["data"]["data"], json!({ "a": "c" }));
}

#[tokio::test]
async fn unknown_route_needs_token_first() {
    let server = TestServer::start().await;

    let (status, body) = server.call_as("", "GET", "nonexistent/thing", None).await;
    assert_eq!(
        (status, body),
        (403, json!({ "errors": ["permission denied"] }))
    );

    let (status, body) = server.call("GET", "nonexistent/thing", None).await;
    assert_eq!(
        (status, body),
        (404, json!({ "errors": ["unsupported path"] }))
    );
    assert_eq!(server.rejected_entries("unsupported_path"), 1);

    let (status, _) = server.call("GET", "secret/delete/app/x", None).await;
    assert_eq!(status, 405);
    let (status, body) = server.call_as("", "POST", "sys/health", None).await;
    assert_eq!((status, body), (405, json!({ "errors": [] })));
}

#[tokio::test]
async fn bad_json_is_rejected_and_audited() {
    let server = TestServer::start().await;
    let response = server
        .client()
        .put(server.url("secret/data/app/x"))
        .header("X-Vault-Token", &server.root_token)
        .body(r#"{"data":{"password":"hunter2""#)
        .send()
        .await
        .expect("request completes");
    assert_eq!(response.status(), 400);
    let text = response.text().await.expect("body");
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(server.rejected_entries("invalid_json"), 1);
}
