//! Transport protections: security headers, size limits, raw path checks, rate and
//! concurrency limits, timeouts, and the audit entries of rejected requests.

use std::net::IpAddr;
use std::time::Duration;

use keyward_server::RateLimit;
use serde_json::json;

use crate::harness::{RawConnection, RawResponse, TestServer};

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

/// Starts a request whose body never arrives in full, so it keeps its request slot.
async fn start_slow_body(connection: &mut RawConnection, token: &str) {
    let head = format!(
        "PUT /v1/secret/data/app/x HTTP/1.1\r\nHost: localhost\r\nX-Vault-Token: {token}\r\nContent-Length: 100\r\n\r\n{{",
    );
    connection.send(head.as_bytes()).await;
}

#[tokio::test]
async fn one_address_cannot_take_every_slot() {
    let server = TestServer::start_with(|config| {
        config.max_concurrent_requests = 3;
        config.max_concurrent_requests_per_address = 2;
    })
    .await;
    let busy: IpAddr = "127.0.0.1".parse().expect("valid address");
    let other: IpAddr = "127.0.0.2".parse().expect("valid address");

    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut connection = server.raw_connection_from(busy).await.expect("connects");
        start_slow_body(&mut connection, &server.root_token).await;
        slow.push(connection);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let rejected = server
        .client_from(busy)
        .get(server.url("sys/health"))
        .send()
        .await
        .expect("request completes");
    assert_eq!(rejected.status(), 503);
    assert_eq!(
        rejected.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(b"1".as_slice())
    );
    assert_eq!(
        server.rejected_entries("too_many_concurrent_requests_address"),
        1
    );

    let served = server
        .client_from(other)
        .get(server.url("sys/health"))
        .send()
        .await
        .expect("request completes");
    assert_eq!(served.status(), 200, "another address was refused");
    drop(slow);
}

#[tokio::test]
async fn slow_body_gets_408_before_request_timeout() {
    let server = TestServer::start_with(|config| {
        config.body_read_timeout = Duration::from_millis(500);
    })
    .await;
    let mut slow = server
        .raw_connection(&server.cert.ca_pem)
        .await
        .expect("connects");
    let started = std::time::Instant::now();
    start_slow_body(&mut slow, &server.root_token).await;

    let response = slow.read_response().await;
    assert_eq!(response.status, 408);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "408 came after {:?}",
        started.elapsed()
    );
    assert_security_headers(&response);
    assert_eq!(
        body_json(&response),
        json!({ "errors": ["request body not received in time"] })
    );
    assert_eq!(server.rejected_entries("body_read_timeout"), 1);

    let (status, _) = server.call("GET", "secret/data/app/x", None).await;
    assert_eq!(status, 404, "the partial write was stored");
}

#[tokio::test]
async fn response_wrapping_is_rejected() {
    let server = TestServer::start().await;
    server
        .call(
            "PUT",
            "secret/data/app/x",
            Some(json!({ "data": { "password": "wrapped-secret" } })),
        )
        .await;
    let client = server.client();

    let requests = [
        ("GET", "secret/data/app/x", "X-Vault-Wrap-TTL", "60s"),
        ("POST", "auth/token/create", "X-Vault-Wrap-TTL", "5m"),
        ("GET", "secret/data/app/x", "X-Vault-Wrap-Format", "jwt"),
        ("GET", "sys/health", "X-Vault-Wrap-TTL", "60"),
    ];
    for (method, path, header, value) in requests {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("valid method");
        let response = client
            .request(method, server.url(path))
            .header("X-Vault-Token", &server.root_token)
            .header(header, value)
            .json(&json!({}))
            .send()
            .await
            .expect("request completes");
        assert_eq!(response.status(), 400, "{path} with {header}");
        let body: serde_json::Value = response.json().await.expect("JSON body");
        assert_eq!(
            body,
            json!({ "errors": ["response wrapping is not supported"] }),
            "{path} with {header}"
        );
    }
    assert_eq!(server.rejected_entries("response_wrapping_unsupported"), 4);

    let audit = std::fs::read_to_string(&server.audit_path).expect("audit log");
    assert!(
        !audit.contains("\"token.create\""),
        "a token was created for a wrapped request"
    );
}

#[tokio::test]
async fn lockout_retry_after_is_time_left() {
    let server = TestServer::start().await;
    let client = server.client();
    // The default lockout: 20 failures within a minute lock the address for 300 s.
    for _ in 0..20 {
        let (status, _) = server
            .call_as("kwt.wrong-guess", "GET", "secret/data/app/x", None)
            .await;
        assert_eq!(status, 403);
    }

    let response = client
        .get(server.url("secret/data/app/x"))
        .header("X-Vault-Token", &server.root_token)
        .send()
        .await
        .expect("request completes");
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("numeric Retry-After");
    assert!((290..=300).contains(&retry_after), "{retry_after}");
}

#[tokio::test]
async fn version_lists_are_deduplicated_and_capped() {
    let server = TestServer::start().await;
    for value in ["one", "two"] {
        server
            .call(
                "PUT",
                "secret/data/app/x",
                Some(json!({ "data": { "v": value } })),
            )
            .await;
    }

    let too_many: Vec<u64> = (1..=1001).collect();
    let (status, body) = server
        .call(
            "POST",
            "secret/delete/app/x",
            Some(json!({ "versions": too_many })),
        )
        .await;
    assert_eq!(status, 400);
    let message = body["errors"][0].as_str().unwrap_or_default();
    assert!(message.starts_with("too many versions"), "{message}");
    let (status, _) = server
        .call("GET", "secret/data/app/x?version=1", None)
        .await;
    assert_eq!(status, 200, "a rejected request deleted a version");

    let repeated = vec!["1"; 50_000];
    let (status, body) = server
        .call(
            "POST",
            "secret/delete/app/x",
            Some(json!({ "versions": repeated })),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = server
        .call("GET", "secret/data/app/x?version=1", None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = server
        .call("GET", "secret/data/app/x?version=2", None)
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn sub_second_ttl_is_rejected() {
    let server = TestServer::start().await;
    for ttl in ["0.5s", "1ns", "999ms"] {
        let (status, body) = server
            .call("POST", "auth/token/create", Some(json!({ "ttl": ttl })))
            .await;
        assert_eq!(status, 400, "{ttl}: {body}");
        let message = body["errors"][0].as_str().unwrap_or_default();
        assert!(message.contains("at least 1s"), "{ttl}: {message}");
    }

    let (status, body) = server
        .call("POST", "auth/token/create", Some(json!({ "ttl": "1s" })))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["auth"]["lease_duration"], 1);
}

#[tokio::test]
async fn huge_renew_increment_is_clamped() {
    let server = TestServer::start().await;
    let (status, created) = server
        .call("POST", "auth/token/create", Some(json!({ "ttl": "1h" })))
        .await;
    assert_eq!(status, 200);
    let token = created["auth"]["client_token"]
        .as_str()
        .expect("client token")
        .to_owned();

    let (status, body) = server
        .call_as(
            &token,
            "POST",
            "auth/token/renew-self",
            Some(json!({ "increment": "300000000000s" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let lease = body["auth"]["lease_duration"].as_u64().expect("lease");
    assert!(lease <= 768 * 3600, "{lease}");
}
