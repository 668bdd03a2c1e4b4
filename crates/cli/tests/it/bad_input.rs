//! Malformed and hostile requests sent with `curl` exactly as written (`--path-as-is`): each
//! gets a 4xx with Vault's `{"errors":[...]}` body, changes nothing, and leaves the server
//! serving. Also checks that no CORS grant is sent.

use serde_json::{Value, json};

use crate::harness::{CurlResponse, Http, Server, curl, temp_dir};

/// Starts a dev server with one secret, `secret/a`.
fn server_with_secret() -> Server {
    let server = Server::dev();
    let version = server
        .http()
        .write_secret("a", &server.root_token, &json!({ "k": "original" }));
    assert_eq!(version, 1);
    server
}

/// Reads what a client can see of the store: the root list and `a`'s metadata and data.
fn visible_state(server: &Server) -> (Value, Value, Value) {
    let http = server.http();
    let root = server.root_token.clone();
    let list = http
        .request("LIST", "secret/metadata/", Some(&root), None)
        .json()["data"]
        .clone();
    let mut metadata = http.get("secret/metadata/a", &root).json()["data"].clone();
    // Reading does not change metadata, but keep the comparison to fields a write changes.
    if let Some(object) = metadata.as_object_mut() {
        object.retain(|key, _| {
            [
                "current_version",
                "versions",
                "updated_time",
                "oldest_version",
            ]
            .contains(&key.as_str())
        });
    }
    let data = http.get("secret/data/a", &root).json()["data"]["data"].clone();
    (list, metadata, data)
}

fn assert_vault_error(response: &CurlResponse, case: &str) {
    assert!(
        (400..500).contains(&response.status),
        "{case}: expected a 4xx, got {response:?}"
    );
    let body = response.json();
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{case}: body has no errors array: {response:?}"));
    assert!(errors.iter().all(Value::is_string), "{case}: {response:?}");
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(1),
        "{case}: extra fields: {response:?}"
    );
}

/// Sends each case, checks its status and body, then checks that nothing changed.
fn check_cases(server: &Server, cases: &[(&str, u16, Vec<String>)]) {
    let before = visible_state(server);
    for (case, status, args) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let response = curl(server, &args);
        assert_vault_error(&response, case);
        assert_eq!(response.status, *status, "{case}: {response:?}");
    }
    let after = visible_state(server);
    assert_eq!(before, after, "a rejected request changed the store");

    let read = server.http().get("secret/data/a", &server.root_token);
    assert_eq!(
        read.status, 200,
        "the server stopped serving reads: {read:?}"
    );
    assert_eq!(read.json()["data"]["data"]["k"], "original");
}

fn token_header(server: &Server) -> String {
    format!("X-Vault-Token: {}", server.root_token)
}

fn url(server: &Server, path: &str) -> String {
    format!("{}/v1/{path}", server.url)
}

#[test]
fn traversal_paths_are_rejected() {
    let server = server_with_secret();
    let token = token_header(&server);
    let write = |path: &str| -> Vec<String> {
        vec![
            "-X".into(),
            "PUT".into(),
            "-H".into(),
            token.clone(),
            "--data".into(),
            r#"{"data":{"k":"changed"}}"#.into(),
            url(&server, path),
        ]
    };
    let read = |path: &str| -> Vec<String> { vec!["-H".into(), token.clone(), url(&server, path)] };

    check_cases(
        &server,
        &[
            ("read a/../b", 400, read("secret/data/a/../b")),
            ("read %2e%2e", 400, read("secret/data/%2e%2e/x")),
            ("read a//b", 400, read("secret/data/a//b")),
            ("write a/../a", 400, write("secret/data/b/../a")),
            ("write %2e%2e", 400, write("secret/data/%2e%2e/a")),
            ("write a//b", 400, write("secret/data/a//b")),
            ("write %2f", 400, write("secret/data/x%2fa")),
        ],
    );
}

#[test]
fn malformed_bodies_are_rejected() {
    let server = server_with_secret();
    let token = token_header(&server);
    let scratch = temp_dir();
    let big = scratch.path().join("big.json");
    let mut body = br#"{"data":{"k":""#.to_vec();
    body.resize(10 * 1024 * 1024, b'x');
    body.extend_from_slice(br#""}}"#);
    std::fs::write(&big, body).expect("write a 10 MiB body");
    let put = |data_args: [&str; 2], path: &str| -> Vec<String> {
        vec![
            "-X".into(),
            "PUT".into(),
            "-H".into(),
            token.clone(),
            "-H".into(),
            "Content-Type: application/json".into(),
            data_args[0].into(),
            data_args[1].into(),
            url(&server, path),
        ]
    };
    let big_arg = format!("@{}", big.display());

    check_cases(
        &server,
        &[
            (
                "invalid JSON",
                400,
                put(["--data", r#"{"data": {"k": "#], "secret/data/a"),
            ),
            ("JSON array", 400, put(["--data", "[1,2]"], "secret/data/a")),
            (
                "non-string value",
                400,
                put(["--data", r#"{"data":"x"}"#], "secret/data/a"),
            ),
            (
                "10 MiB body",
                413,
                put(["--data-binary", &big_arg], "secret/data/a"),
            ),
            (
                "10 MiB body, new path",
                413,
                put(["--data-binary", &big_arg], "secret/data/big"),
            ),
        ],
    );
}

#[test]
fn bad_tokens_are_rejected() {
    let server = server_with_secret();
    let write = |header: Option<String>| -> Vec<String> {
        let mut args: Vec<String> = vec!["-X".into(), "PUT".into()];
        if let Some(header) = header {
            args.extend(["-H".into(), header]);
        }
        args.extend([
            "--data".into(),
            r#"{"data":{"k":"changed"}}"#.into(),
            url(&server, "secret/data/a"),
        ]);
        args
    };
    let long_token = format!("X-Vault-Token: {}", "A".repeat(8000));

    check_cases(
        &server,
        &[
            ("missing token", 403, write(None)),
            ("empty token", 403, write(Some("X-Vault-Token;".into()))),
            (
                "malformed token",
                403,
                write(Some("X-Vault-Token: ../../etc/passwd".into())),
            ),
            ("oversized token", 403, write(Some(long_token))),
            (
                "bearer garbage",
                403,
                write(Some("Authorization: Bearer %00%ff".into())),
            ),
        ],
    );
}

#[test]
fn unknown_methods_are_rejected() {
    let server = server_with_secret();
    let token = token_header(&server);
    let method = |method: &str, extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = vec!["-X".into(), method.into(), "-H".into(), token.clone()];
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        args.push(url(&server, "secret/data/a"));
        args
    };

    check_cases(
        &server,
        &[
            ("method FOO", 405, method("FOO", &[])),
            ("method TRACE", 405, method("TRACE", &[])),
            ("method PROPFIND", 405, method("PROPFIND", &[])),
        ],
    );
}

#[test]
fn method_override_header_is_ignored() {
    let server = server_with_secret();
    let token = token_header(&server);
    let target = url(&server, "secret/data/a");

    // Like OpenBao, the server does not honour method override headers: the request stays a
    // read and deletes nothing.
    let before = visible_state(&server);
    for header in [
        "X-HTTP-Method-Override: DELETE",
        "X-HTTP-Method: DELETE",
        "X-Method-Override: DELETE",
    ] {
        let response = curl(&server, &["-H", &token, "-H", header, &target]);
        assert_eq!(response.status, 200, "{header}: {response:?}");
        assert_eq!(
            response.json()["data"]["data"]["k"],
            "original",
            "{header}: {response:?}"
        );
    }
    let after = visible_state(&server);
    assert_eq!(before, after, "an override header changed the store");
}

#[test]
fn oversized_body_over_http2_gets_413() {
    let server = server_with_secret();
    let http = Http::new_http2(&server.url, &server.ca_file);
    let before = visible_state(&server);

    let body = json!({ "data": { "k": "x".repeat(10 * 1024 * 1024) } });
    let response = http.put("secret/data/a", &server.root_token, &body);

    assert_eq!(response.status, 413, "{response:?}");
    let hsts = response.headers.get("strict-transport-security");
    assert!(
        hsts.is_some(),
        "HSTS missing on the HTTP/2 413: {:?}",
        response.headers
    );
    assert_eq!(
        response.json(),
        json!({ "errors": ["request body larger than 1048576 bytes"] })
    );
    assert_eq!(
        before,
        visible_state(&server),
        "the oversized write changed the store"
    );
    let read = http.get("secret/data/a", &server.root_token);
    assert_eq!(read.status, 200, "the connection is still usable: {read:?}");
}

#[test]
fn cors_preflight_gets_no_grant() {
    let server = server_with_secret();
    let token = token_header(&server);
    let target = url(&server, "secret/data/a");

    let preflight = curl(
        &server,
        &[
            "-X",
            "OPTIONS",
            "-H",
            "Origin: https://attacker.example",
            "-H",
            "Access-Control-Request-Method: GET",
            "-H",
            "Access-Control-Request-Headers: X-Vault-Token",
            &target,
        ],
    );
    let simple = curl(
        &server,
        &[
            "-H",
            &token,
            "-H",
            "Origin: https://attacker.example",
            &target,
        ],
    );

    for (case, response) in [("preflight", &preflight), ("GET with Origin", &simple)] {
        for header in [
            "access-control-allow-origin",
            "access-control-allow-credentials",
            "access-control-allow-headers",
            "access-control-allow-methods",
        ] {
            assert_eq!(
                response.header(header),
                None,
                "{case} got {header}: {response:?}"
            );
        }
    }
    assert!((400..500).contains(&preflight.status), "{preflight:?}");
    assert_eq!(simple.status, 200, "{simple:?}");
}
